"""Precision modes in real workers: the ISA environment reaching the worker only, the census
stopping a run that contradicts its mode, native and emulated bf16."""

import dataclasses
import json
import os

import pytest
from harness_cli import launch, result, run

from harness import cli
from harness.launch.environment import RETAINED_MALLOC
from harness.machine.platform import detect
from harness.precision.modes import BUILTIN

TINY = ["--model", "bert-tiny", "--steps", 2, "--batch-size", 4, "--eval-examples", 4]


def test_the_mode_environment_reaches_the_worker_and_not_the_parent(synth_dir, tmp_path, monkeypatch):
    for var in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS", *RETAINED_MALLOC):
        monkeypatch.delenv(var, raising=False)
    before = dict(os.environ)
    out = tmp_path / "run"
    # in this process: the parent starts the worker as a child and waits for it
    code = cli.main(
        [
            "train",
            "--phase",
            "1",
            "--precision",
            "avx-fp32",
            *map(str, TINY),
            "--timing-warmup",
            "1",
            "--dataset",
            str(synth_dir),
            "--output",
            str(out),
        ]
    )
    assert code == 0
    assert dict(os.environ) == before
    r = result(out)
    assert r.emulated is False  # fp32 has its instructions on every CPU; the cap only keeps AMX out
    assert r.isa_env["ONEDNN_MAX_CPU_ISA"] == r.isa_env["DNNL_MAX_CPU_ISA"] == "AVX512_CORE_BF16"
    assert r.isa_env["MKL_ENABLE_INSTRUCTIONS"] == "AVX512"
    assert r.pid != os.getpid()
    assert r.isa_cap == "AVX512_CORE_BF16" and r.isa_verified  # oneDNN reported its ISA
    assert r.amx_used is False and r.valid is True and r.status == "ok"
    # the census of a real step: its GEMMs ran somewhere the libraries report (stock PyTorch sends
    # fp32 GEMMs to MKL), and it is a step the throughput statistics leave out
    assert r.kernel_census and r.gemm_isa == max(r.gemm_isa_share, key=r.gemm_isa_share.get)
    assert abs(sum(r.gemm_isa_share.values()) - 1) < 1e-9 and r.amx_gemm_share == 0
    assert r.census_step == 1 and r.cold_steps == [1]
    assert r.threads == len(r.cores) == int(r.isa_env["OMP_NUM_THREADS"])
    assert RETAINED_MALLOC.items() <= r.malloc_env.items()


def test_inherited_onednn_and_mkl_settings_do_not_reach_the_worker(capfd, monkeypatch, synth_dir, tmp_path):
    out = tmp_path / "run"
    inherited = {
        "ONEDNN_DEFAULT_FPMATH_MODE": "BF16",
        "MKL_ENABLE_INSTRUCTIONS": "SSE4_2",
        "ONEDNN_VERBOSE": "1",
    }
    for name, value in inherited.items():
        monkeypatch.setenv(name, value)  # in the parent's environment, which the worker's comes from
    proc = launch(
        capfd,
        "train",
        "--phase",
        1,
        "--precision",
        "fp32",
        *TINY,
        "--dataset",
        synth_dir,
        "--output",
        out,
    )
    assert proc.returncode == 0, proc.stderr
    env = result(out).isa_env
    assert env["ONEDNN_DEFAULT_FPMATH_MODE"] is None and env["MKL_ENABLE_INSTRUCTIONS"] is None
    assert env["ONEDNN_MAX_CPU_ISA"] == "AVX512_CORE_AMX"


def test_a_census_that_shows_amx_in_an_avx_mode_stops_the_run_as_invalid(
    capfd, monkeypatch, synth_dir, tmp_path
):
    out = tmp_path / "run"
    monkeypatch.setenv("HARNESS_FAULT", "amx@1")
    proc = launch(
        capfd,
        "train",
        "--phase",
        1,
        "--precision",
        "avx-fp32",
        *TINY,
        "--steps",
        4,
        "--timing-warmup",
        2,
        "--dataset",
        synth_dir,
        "--output",
        out,
    )
    assert proc.returncode == 4, proc.stderr[-2000:]
    r = result(out)
    assert r.status == "invalid" and r.valid is False and r.census_step == 2
    assert r.invalid_reason == (
        "avx-fp32 must stay off AMX but the step ran matmul/brg_matmul:avx10_1_512_amx"
    )
    assert r.amx_used is True and r.amx_gemm_share > 0
    assert "INVALID RUN: avx-fp32 must stay off AMX" in proc.stderr
    assert r.steps_completed == 2 and not (out / "model_save").exists()  # it stopped there


HOST = detect()
HOST_BF16 = HOST.bf16_isa is not None


@pytest.mark.skipif(
    not HOST_BF16,
    reason=f"needs a CPU with AMX or AVX512_BF16; this one "
    f"({HOST.cpu_model}, family {HOST.family} model {HOST.model}) has neither",
)
def test_native_bf16_runs_its_gemms_on_the_cpus_bf16_unit(capfd, synth_dir, tmp_path):
    out = tmp_path / "run"
    proc = launch(
        capfd,
        "train",
        "--phase",
        1,
        "--precision",
        "bf16",
        *TINY,
        "--steps",
        3,
        "--timing-warmup",
        1,
        "--dataset",
        synth_dir,
        "--output",
        out,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    r = result(out)
    assert r.emulated is False and r.valid is True and r.gemm_isa_expected == HOST.bf16_isa
    assert r.gemm_isa is not None and ("amx" in r.gemm_isa) == (HOST.bf16_isa == "amx")


@pytest.mark.skipif(HOST_BF16, reason=f"this CPU ({HOST.cpu_model}) has bf16 instructions: bf16 is native")
def test_bf16_without_bf16_instructions_is_refused_as_emulated(capfd, synth_dir, tmp_path):
    out = tmp_path / "run"
    proc = launch(
        capfd, "train", "--phase", 1, "--precision", "bf16", *TINY, "--dataset", synth_dir, "--output", out
    )
    assert proc.returncode == 2 and not out.exists()
    assert proc.stderr.strip() == (
        "harness: --precision bf16: needs bf16 (native bf16 GEMMs: usable AMX-BF16 or AVX512_BF16), which "
        f"this machine lacks ({HOST.cpu_model}); --allow-emulation runs it anyway, marked emulated"
    )


def test_allow_emulation_runs_and_marks_the_result(synth_dir, tmp_path, monkeypatch):
    no_bf16 = dataclasses.replace(HOST, amx_usable=False, avx512_bf16=False)
    monkeypatch.setattr("harness.machine.platform.detect", lambda: no_bf16)
    out = tmp_path / "run"
    code = cli.main(
        [
            "train",
            "--phase",
            "1",
            "--precision",
            "bf16",
            "--allow-emulation",
            *map(str, TINY),
            "--dataset",
            str(synth_dir),
            "--output",
            str(out),
        ]
    )
    assert code == 0
    r = result(out)
    assert r.emulated is True and r.status == "ok" and r.precision_mode["autocast"] == "bfloat16"


def test_detect_json_reports_the_capability_keys():
    proc = run("detect", "--json")
    assert proc.returncode == 0
    info = json.loads(proc.stdout)
    for key in (
        "cpu_model",
        "flags",
        "avx512",
        "avx512_bf16",
        "amx_bf16",
        "amx_os_enabled",
        "amx_usable",
        "physical_cores",
        "sockets",
        "numa_nodes",
        "memory_gib",
        "torch_cpu_capability",
    ):
        assert key in info, key
    assert info["amx_usable"] == (info["amx_bf16"] and info["amx_os_enabled"] and info["amx_permission"])
    assert info["avx512"] == ("avx512f" in info["flags"])
    assert info["versions"]["onednn"]
    # every mode, with how it runs here
    assert set(info["modes"]) == {m.name for m in BUILTIN}
    bf16 = info["modes"]["bf16"]
    assert bf16["status"] == ("native" if info["amx_usable"] or info["avx512_bf16"] else "emulated")
    assert info["modes"]["fp32"]["status"] == "native"
    table = run("detect").stdout
    assert "bf16       " + bf16["status"] in table
