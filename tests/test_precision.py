"""Precision modes: the registry, the ISA environment reaching the worker only, refusal, validity."""

import dataclasses
import json
import os

import pytest
from harness_cli import result, run

from harness import cli
from harness.errors import HarnessError
from harness.isa_probe import IsaVerdict
from harness.launch import RETAINED_MALLOC, parent_context, worker_environment
from harness.onednn_verbose import VerboseReport
from harness.platform import detect
from harness.precision import BUILTIN, get_precision, load_modes

TINY = ["--model", "bert-tiny", "--steps", 2, "--batch-size", 4, "--eval-examples", 4]


def test_builtin_modes_and_their_caps():
    modes = {m.name: m for m in BUILTIN}
    assert list(modes) == ["fp32", "avx-fp32", "bf16", "bf32", "avx-bf16"]
    # avx-fp32 sets a cap below AMX (unsetting the variable would leave AMX on since oneDNN 2.5)
    assert modes["avx-fp32"].environment() == {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_BF16",
                                               "DNNL_MAX_CPU_ISA": "AVX512_CORE_BF16",
                                               "MKL_ENABLE_INSTRUCTIONS": "AVX512"}
    assert modes["fp32"].environment()["ONEDNN_MAX_CPU_ISA"] == "AVX512_CORE_AMX"
    assert (modes["bf16"].autocast, modes["bf16"].requires, modes["bf16"].expects_amx) == \
        ("bfloat16", ("amx_usable",), True)
    assert modes["bf32"].fp32_math == "bf16" and modes["bf32"].autocast is None
    assert modes["avx-bf16"].isa_cap == "AVX512_CORE_BF16" and modes["avx-bf16"].expects_amx is False


def test_modes_from_a_toml_file(tmp_path, monkeypatch):
    path = tmp_path / "modes.toml"
    path.write_text('[modes.avx2-fp32]\ndescription = "fp32 on AVX2 only"\nisa_cap = "AVX2"\n'
                    'mkl_instructions = "AVX2"\nexpects_amx = false\n')
    monkeypatch.setenv("HARNESS_PRECISION_FILE", str(path))
    mode = get_precision("avx2-fp32")
    assert mode.environment()["ONEDNN_MAX_CPU_ISA"] == "AVX2" and mode.expects_amx is False
    path.write_text('[modes.x]\ndescription = "d"\nisa = "AVX2"\n')
    with pytest.raises(HarnessError, match=r"\[modes.x\] needs a description and takes only .*\(got isa\)"):
        load_modes()
    path.write_text('[modes.x]\ndescription = "d"\nrequires = ["warp_drive"]\n')
    with pytest.raises(HarnessError, match="requires 'warp_drive', expected some of"):
        load_modes()


def test_the_mode_environment_reaches_the_worker_and_not_the_parent(synth_dir, tmp_path, monkeypatch):
    for var in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS", *RETAINED_MALLOC):
        monkeypatch.delenv(var, raising=False)
    before = dict(os.environ)
    out = tmp_path / "run"
    # in this process: the parent starts the worker as a child and waits for it
    code = cli.main(["train", "--phase", "1", "--precision", "avx-fp32", "--allow-emulation", *map(str, TINY),
                     "--dataset", str(synth_dir), "--output", str(out)])
    assert code == 0
    assert dict(os.environ) == before
    r = result(out)
    assert r["emulated"] is not detect().avx512  # avx-fp32 names AVX-512
    assert r["isa_env"]["ONEDNN_MAX_CPU_ISA"] == r["isa_env"]["DNNL_MAX_CPU_ISA"] == "AVX512_CORE_BF16"
    assert r["isa_env"]["MKL_ENABLE_INSTRUCTIONS"] == "AVX512"
    assert r["pid"] != os.getpid()
    assert r["isa_cap"] == "AVX512_CORE_BF16" and r["isa_verified"]  # oneDNN reported its ISA
    assert r["amx_used"] is False and r["valid"] is True and r["status"] == "ok"
    assert r["threads"] == len(r["cores"]) == int(r["isa_env"]["OMP_NUM_THREADS"])
    assert RETAINED_MALLOC.items() <= r["malloc_env"].items()


def test_inherited_onednn_and_mkl_settings_do_not_reach_the_worker(synth_dir, tmp_path):
    out = tmp_path / "run"
    proc = run("train", "--phase", 1, "--precision", "fp32", *TINY, "--dataset", synth_dir, "--output", out,
               env={"ONEDNN_DEFAULT_FPMATH_MODE": "BF16", "MKL_ENABLE_INSTRUCTIONS": "SSE4_2",
                    "ONEDNN_VERBOSE": "1"})
    assert proc.returncode == 0, proc.stderr
    env = result(out)["isa_env"]
    assert env["ONEDNN_DEFAULT_FPMATH_MODE"] is None and env["MKL_ENABLE_INSTRUCTIONS"] is None
    assert env["ONEDNN_MAX_CPU_ISA"] == "AVX512_CORE_AMX"


def test_a_worker_started_without_the_mode_environment_refuses(synth_dir, tmp_path):
    proc = run("train", "--phase", 1, "--precision", "avx-fp32", *TINY, "--dataset", synth_dir,
               "--output", tmp_path / "run", "--worker")
    assert proc.returncode == 2
    assert "did not start with the environment of mode avx-fp32" in proc.stderr


def test_a_mode_the_cpu_lacks_is_refused_before_any_work(synth_dir, tmp_path, monkeypatch, capsys):
    no_amx = dataclasses.replace(detect(), amx_tile=False, amx_bf16=False, amx_os_enabled=False,
                                 amx_permission=False, amx_usable=False, avx512_bf16=False)
    monkeypatch.setattr("harness.platform.detect", lambda: no_amx)
    out = tmp_path / "run"
    for mode, feature in (("bf16", "amx_usable"), ("bf32", "amx_usable"), ("avx-bf16", "avx512_bf16")):
        code = cli.main(["train", "--phase", "1", "--precision", mode, *map(str, TINY),
                         "--dataset", str(synth_dir), "--output", str(out)])
        assert code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err == [f"harness: --precision {mode}: needs {feature}, which this machine "
                       f"({no_amx.cpu_model}) lacks; --allow-emulation runs it anyway, marked emulated"]
        assert not out.exists()


def test_emulated_bf16_without_avx512_is_marked_and_warned_of(capsys):
    avx2_only = dataclasses.replace(detect(), avx512=False, avx512_bf16=False, amx_tile=False, amx_bf16=False,
                                    amx_usable=False)
    context = parent_context(get_precision("bf16"), avx2_only)
    assert context["emulated"] is True and context["missing_features"] == ["amx_usable"]
    assert "bf16 is emulated on a CPU without AVX-512" in capsys.readouterr().err
    # fp32 needs nothing; bf16 on an AVX-512 CPU without AMX is emulated at a usable speed
    assert parent_context(get_precision("fp32"), avx2_only)["emulated"] is False
    assert parent_context(get_precision("bf16"), dataclasses.replace(avx2_only, avx512=True))["emulated"]
    assert capsys.readouterr().err == ""


def test_allow_emulation_runs_and_marks_the_result(synth_dir, tmp_path, monkeypatch):
    no_amx = dataclasses.replace(detect(), amx_usable=False)
    monkeypatch.setattr("harness.platform.detect", lambda: no_amx)
    out = tmp_path / "run"
    code = cli.main(["train", "--phase", "1", "--precision", "bf16", "--allow-emulation",
                     *map(str, TINY), "--dataset", str(synth_dir), "--output", str(out)])
    assert code == 0
    r = result(out)
    assert r["emulated"] is True and r["status"] == "ok" and r["precision_mode"]["autocast"] == "bfloat16"


AVX512_BF16_ISA = "Intel AVX-512 with Intel DL Boost and bfloat16 support"
AMX_ISA = f"{AVX512_BF16_ISA} and Intel AMX with bfloat16 and 8-bit integer support"


@pytest.mark.parametrize(("name", "isa", "kernels", "amx_usable", "valid"), [
    ("avx-fp32", AMX_ISA, ["matmul/brg_matmul:avx10_1_512_amx"], True, False),  # the cap did not hold
    ("avx-fp32", AVX512_BF16_ISA, ["matmul/brg_matmul:avx512_core_bf16"], True, True),
    ("bf16", AMX_ISA, ["matmul/gemm:jit:bf16"], True, False),  # AMX usable, yet no AMX kernel ran
    ("bf16", AMX_ISA, ["matmul/brg_matmul:avx512_core_amx"], True, True),
    ("bf16", AVX512_BF16_ISA, ["matmul/gemm:jit:bf16"], False, True),  # emulated: no AMX to expect
    ("fp32", AMX_ISA, ["matmul/brg_matmul:avx512_core_amx"], True, True),  # fp32 makes no AMX claim
    # Without AVX-512 the workload runs no oneDNN kernel; oneDNN's own header still proves the cap.
    ("fp32", "Intel AVX2", [], False, True),
    ("avx-fp32", "Intel AVX2", [], False, True),
    ("avx-fp32", AMX_ISA, [], True, False),  # no kernel ran, but the cap would have let AMX in
    ("fp32", None, [], False, False),  # oneDNN said nothing at all: nothing is verified
])
def test_isa_verdict(name, isa, kernels, amx_usable, valid):
    verdict = IsaVerdict.judge(get_precision(name), VerboseReport(isa, kernels), amx_usable,
                               emulated=not amx_usable and name == "bf16")
    assert verdict.valid is valid
    assert (verdict.invalid_reason is None) is valid
    assert verdict.amx_used == any("amx" in k for k in kernels)


def test_detect_json_reports_the_capability_keys():
    proc = run("detect", "--json")
    assert proc.returncode == 0
    info = json.loads(proc.stdout)
    for key in ("cpu_model", "flags", "avx512", "avx512_bf16", "amx_bf16", "amx_os_enabled", "amx_usable",
                "physical_cores", "sockets", "numa_nodes", "memory_gib", "torch_cpu_capability"):
        assert key in info, key
    assert info["amx_usable"] == (info["amx_bf16"] and info["amx_os_enabled"] and info["amx_permission"])
    assert info["avx512"] == ("avx512f" in info["flags"])
    assert info["versions"]["onednn"]


def test_workers_keep_freed_memory_unless_told_otherwise(monkeypatch):
    for var in RETAINED_MALLOC:
        monkeypatch.delenv(var, raising=False)
    fp32 = get_precision("fp32")
    assert RETAINED_MALLOC.items() <= worker_environment(fp32, [0], {}).items()
    assert not RETAINED_MALLOC.keys() & worker_environment(fp32, [0], {}, system_malloc=True).keys()
    # a setting of the caller's own wins over the harness's
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "12345")
    env = worker_environment(fp32, [0], {})
    assert env["MALLOC_TRIM_THRESHOLD_"] == "12345"
    assert env["MALLOC_MMAP_THRESHOLD_"] == RETAINED_MALLOC["MALLOC_MMAP_THRESHOLD_"]
