"""Precision modes and their admission, decided in the parent: the registry, refusals, the
worker's environment and job file, without starting a process."""

import json
import signal
import threading

import pytest
import torch
from platforms import SKYLAKE_X, ZEN3, ZEN5

from harness import cli
from harness.errors import HarnessError
from harness.launch import worker
from harness.launch.admission import context_for
from harness.launch.environment import RETAINED_MALLOC, restart_with_retained_malloc, worker_environment
from harness.launch.job import Job, WorkerContext, read_job, write_job
from harness.precision.modes import BUILTIN, get_precision, load_modes
from harness.train.trainer import run_job

TINY = ["--model", "bert-tiny", "--steps", 2, "--batch-size", 4, "--eval-examples", 4]


def test_builtin_modes_and_their_caps():
    modes = {m.name: m for m in BUILTIN}
    assert list(modes) == ["fp32", "avx-fp32", "bf16", "bf32", "avx-bf16", "bf16-pure"]
    # avx-fp32 sets a cap below AMX (unsetting the variable would leave AMX on since oneDNN 2.5)
    assert modes["avx-fp32"].environment() == {
        "ONEDNN_MAX_CPU_ISA": "AVX512_CORE_BF16",
        "DNNL_MAX_CPU_ISA": "AVX512_CORE_BF16",
        "MKL_ENABLE_INSTRUCTIONS": "AVX512",
    }
    assert modes["fp32"].environment()["ONEDNN_MAX_CPU_ISA"] == "AVX512_CORE_AMX"
    assert (modes["bf16"].autocast, modes["bf16"].requires, modes["bf16"].gemm_unit) == (
        "bfloat16",
        ("bf16",),
        "bf16",
    )
    assert modes["bf32"].fp32_math == "bf16" and modes["bf32"].autocast is None
    assert modes["bf32"].requires == ("amx",) and not modes["bf32"].emulable
    assert modes["avx-bf16"].isa_cap == "AVX512_CORE_BF16" and not modes["avx-bf16"].admits_amx
    assert modes["avx-fp32"].requires == () and not modes["avx-fp32"].admits_amx and modes["fp32"].admits_amx
    assert (modes["bf16-pure"].weights, modes["bf16-pure"].autocast) == ("bfloat16", None)
    assert modes["bf16"].weights is None


def test_modes_from_a_toml_file(tmp_path, monkeypatch):
    path = tmp_path / "modes.toml"
    path.write_text(
        '[modes.avx2-fp32]\ndescription = "fp32 on AVX2 only"\nisa_cap = "AVX2"\nmkl_instructions = "AVX2"\n'
    )
    monkeypatch.setenv("HARNESS_PRECISION_FILE", str(path))
    mode = get_precision("avx2-fp32")
    assert mode.environment()["ONEDNN_MAX_CPU_ISA"] == "AVX2" and not mode.admits_amx
    path.write_text('[modes.x]\ndescription = "d"\nisa = "AVX2"\n')
    with pytest.raises(HarnessError, match=r"\[modes.x\] needs a description and takes only .*\(got isa\)"):
        load_modes()
    path.write_text('[modes.x]\ndescription = "d"\nrequires = ["warp_drive"]\n')
    with pytest.raises(HarnessError, match="requires 'warp_drive', expected some of"):
        load_modes()
    # a mode's name names files: a / in it would break a compare after its run had started
    path.write_text('[modes."a/b"]\ndescription = "d"\n')
    with pytest.raises(HarnessError, match="a name is letters, digits and -_"):
        load_modes()


def _context(**changes) -> WorkerContext:
    base = dict(
        emulated=False,
        missing_features=(),
        gemm_isa=None,
        amx_usable=False,
        cpu_model="AMD EPYC",
        machine_key="k",
        cores=(0, 1, 2, 3),
    )
    return WorkerContext(**{**base, **changes})


def test_a_job_file_round_trips_and_a_foreign_one_is_refused(tmp_path):
    job = Job(run_job, get_precision("avx-fp32"), _context(missing_features=("bf16",)), {"steps": 3})
    assert read_job(write_job(tmp_path / "job.json", job)) == job
    (tmp_path / "other.json").write_text(json.dumps({"format": "harness.result", "version": 1}))
    with pytest.raises(HarnessError, match=r"other.json: expected a harness.job file of version 1"):
        read_job(tmp_path / "other.json")
    data = json.loads((tmp_path / "job.json").read_text())
    assert data["task"] == "harness.train.trainer:run_job"
    # the task is the harness's own function, named by its import path: nothing else is run
    for task in ("mine bitcoin", "os:system", "harness.train.trainer:no_such_task"):
        (tmp_path / "bad.json").write_text(json.dumps({**data, "task": task}))
        with pytest.raises(HarnessError, match=rf"bad.json: task '{task}': not a function of the harness"):
            read_job(tmp_path / "bad.json")


def test_each_rank_takes_an_equal_disjoint_share_of_the_cores():
    node = _context(cores=(0, 1, 2, 3, 4))
    shares = [node.for_rank(r, 2) for r in range(2)]
    assert [s.cores for s in shares] == [(0, 1), (2, 3)] and shares[0].node_cores == (0, 1, 2, 3, 4)
    with pytest.raises(HarnessError, match="--nproc-per-node 6 exceeds the 5 cores"):
        node.for_rank(0, 6)


def test_a_worker_started_without_the_mode_environment_refuses(tmp_path, monkeypatch, capsys):
    for var in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS"):
        monkeypatch.delenv(var, raising=False)
    job = write_job(tmp_path / "job.json", Job(run_job, get_precision("avx-fp32"), _context(), {}))
    assert worker.main([str(job)]) == 2
    assert "did not start with the environment of mode avx-fp32" in capsys.readouterr().err


def test_a_sigint_while_the_worker_starts_waits_for_its_imports_then_ends_it(
    tmp_path, monkeypatch, capsys, request
):
    """The Ctrl-C the parent passes on while the worker imports torch: a KeyboardInterrupt raised
    inside numpy's import can be swallowed there, leaving a half-made numpy that breaks later."""
    job = write_job(tmp_path / "job.json", Job(run_job, get_precision("fp32"), _context(), {}))
    started = []

    def read_job_interrupted(path):
        # as if it came in the middle of an import; to this thread: the worker's other threads start
        # later and inherit the block, this test process's (torch's pool) do not
        signal.pthread_kill(threading.get_ident(), signal.SIGINT)
        started.append(path)  # not reached if the SIGINT raised here
        return read_job(path)

    # Python's own handler, as a fresh worker has it: an in-process run earlier in the session
    # leaves its stop flag's handler installed
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    request.addfinalizer(lambda: signal.signal(signal.SIGINT, previous))
    monkeypatch.setattr("harness.launch.job.read_job", read_job_interrupted)
    monkeypatch.setattr("harness.launch.environment.environment_problem", lambda mode: None)
    # the job names its task by import path: the worker finds this stub there
    monkeypatch.setattr("harness.train.trainer.run_job", lambda *a: pytest.fail("the task ran"))
    assert worker.main([str(job)]) == 130
    assert started == [job]
    assert "harness: interrupted; nothing was written" in capsys.readouterr().err
    assert signal.SIGINT not in signal.pthread_sigmask(signal.SIG_BLOCK, [])


def test_a_mode_the_cpu_lacks_is_refused_before_any_work(synth_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("harness.machine.platform.detect", lambda: SKYLAKE_X)
    out = tmp_path / "run"
    lacks = (
        f"which this machine lacks ({SKYLAKE_X.cpu_model}); --allow-emulation runs it anyway, marked emulated"
    )
    for mode, feature, then in (
        ("bf16", "bf16 (native bf16 GEMMs: usable AMX-BF16 or AVX512_BF16)", lacks),
        ("avx-bf16", "avx512_bf16 (AVX512_BF16 instructions)", lacks),
        # without AMX, oneDNN ignores the bf16 fpmath: bf32 would be fp32 through oneDNN, so no flag runs it
        (
            "bf32",
            "amx (AMX-BF16 usable by this process (CPUID, OS tile state, XTILEDATA permission))",
            f"and without it would compute something else ({SKYLAKE_X.cpu_model})",
        ),
    ):
        for extra in ([], ["--allow-emulation"]) if mode == "bf32" else ([],):
            code = cli.main(
                [
                    "train",
                    "--phase",
                    "1",
                    "--precision",
                    mode,
                    *map(str, TINY),
                    *extra,
                    "--dataset",
                    str(synth_dir),
                    "--output",
                    str(out),
                ]
            )
            assert code == 2
            err = capsys.readouterr().err.strip().splitlines()
            assert err == [f"harness: --precision {mode}: needs {feature}, {then}"]
            assert not out.exists()


def test_emulated_bf16_without_avx512_is_marked_and_warned_of(capsys):
    context = context_for(get_precision("bf16"), ZEN3, [0])
    assert context.emulated is True and context.missing_features == ("bf16",)
    assert context.gemm_isa is None  # nothing to hold its kernels to
    assert "bf16 is emulated on a CPU without AVX-512" in capsys.readouterr().err
    # fp32 needs nothing; bf16 on AVX-512 without BF16 is emulated at a usable speed, not warned of;
    # bf16 on AVX512_BF16 is native and its GEMMs are held to that unit
    assert context_for(get_precision("fp32"), ZEN3, [0]).emulated is False
    assert context_for(get_precision("bf16"), SKYLAKE_X, [0]).emulated
    native = context_for(get_precision("bf16"), ZEN5, [0])
    assert native.emulated is False and native.gemm_isa == "avx512_core_bf16"
    assert capsys.readouterr().err == ""


def test_workers_keep_freed_memory_unless_told_otherwise(monkeypatch):
    for var in RETAINED_MALLOC:
        monkeypatch.delenv(var, raising=False)
    fp32 = get_precision("fp32")
    assert RETAINED_MALLOC.items() <= worker_environment(fp32, 1).items()
    assert not RETAINED_MALLOC.keys() & worker_environment(fp32, 1, system_malloc=True).keys()
    # a setting of the caller's own wins over the harness's
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "12345")
    env = worker_environment(fp32, 1)
    assert env["MALLOC_TRIM_THRESHOLD_"] == "12345"
    assert env["MALLOC_MMAP_THRESHOLD_"] == RETAINED_MALLOC["MALLOC_MMAP_THRESHOLD_"]


def test_a_benchmark_script_restarts_itself_with_the_retained_malloc_only_where_missing(monkeypatch):
    starts = []
    monkeypatch.setattr("os.execve", lambda path, argv, env: starts.append(env))
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "12345")  # another value: not the worker's
    restart_with_retained_malloc()
    assert len(starts) == 1 and RETAINED_MALLOC.items() <= starts[0].items()
    for var, value in RETAINED_MALLOC.items():
        monkeypatch.setenv(var, value)
    restart_with_retained_malloc()
    assert len(starts) == 1


def test_each_modes_gemms_and_its_roofline_compute_in_the_dtype_it_trains_in():
    from harness.precision.matmul_peak import _paths

    modes = {m.name: m for m in BUILTIN}
    dtypes = {name: mode.gemm_dtype for name, mode in modes.items()}
    assert dtypes == {
        "fp32": "float32",
        "avx-fp32": "float32",
        "bf16": "bfloat16",
        "bf32": "float32",
        "avx-bf16": "bfloat16",
        "bf16-pure": "bfloat16",
    }
    assert [name for name, mode in modes.items() if mode.computes_fp32] == ["fp32", "avx-fp32"]
    # bf16-pure's weights are bf16 with no autocast: its peak is a bf16 matmul's, not fp32's
    for call in _paths(modes["bf16-pure"], 16).values():
        try:
            assert call().dtype == torch.bfloat16
        except RuntimeError as exc:  # measure() records the path unavailable
            assert "bf16 path needs the cpu support" in str(exc)  # oneDNN's linear, AVX2-only CPUs
