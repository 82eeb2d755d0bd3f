"""What `harness train` and `harness compare` refuse before any worker starts: one line naming the
flag, exit 2, nothing written. In process: the refusal comes before any child."""

import re

from harness_cli import call

TINY = ["--phase", 1, "--precision", "fp32", "--model", "bert-tiny"]


def test_bad_plans_exit_2_with_one_line(capsys, tmp_path):
    proc = call(capsys, "compare", "--phases", "2", "--output", tmp_path / "x")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "harness: --phases 2 needs phase 1 in the same plan: phase 2 starts from its model_save"
    ]
    proc = call(capsys, "compare", "--preset", "huge", "--output", tmp_path / "x")
    assert (
        proc.returncode == 2 and "--preset huge: unknown (known: default, smoke, convergence)" in proc.stderr
    )
    proc = call(capsys, "compare", "--precisions", "fp32,fp32", "--output", tmp_path / "x")
    assert proc.returncode == 2 and "expected distinct mode names" in proc.stderr
    # what would otherwise plan runs that all fail is refused before the first one
    for flags, message in (
        (["--steps", 0], "--steps must be >= 1, got 0"),
        (["--precisions", "fp32,fp99"], "--precisions fp99: unknown mode (known: fp32, "),
        (["--dataset", tmp_path / "none"], f"--dataset {tmp_path / 'none'}: no such directory"),
    ):
        proc = call(capsys, "compare", *flags, "--output", tmp_path / "x")
        assert proc.returncode == 2 and proc.stderr.startswith(f"harness: {message}"), proc.stderr
    assert not (tmp_path / "x").exists()


def test_bad_layouts_exit_2_with_one_line(capsys, synth_dir, tmp_path):
    proc = call(
        capsys, "train", *TINY, "--dataset", synth_dir, "--output", tmp_path / "a", "--nproc-per-node", 64
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "--nproc-per-node 64: more ranks" in lines[0]
    proc = call(capsys, "train", *TINY, "--dataset", synth_dir, "--output", tmp_path / "b", "--nnodes", 2)
    assert proc.returncode == 2 and "--nnodes 2: give --rdzv-endpoint HOST:PORT" in proc.stderr
    proc = call(capsys, "train", *TINY, "--dataset", synth_dir, "--output", tmp_path / "c", "--instances", 9)
    assert proc.returncode == 2 and "--instances 9: expected 1 .." in proc.stderr
    assert not any((tmp_path / d).exists() for d in "abc")


def test_a_missing_ipex_is_one_clear_line(capsys, synth_dir, tmp_path):
    proc = call(
        capsys, "train", *TINY, "--dataset", synth_dir, "--output", tmp_path / "run", "--backend", "ipex"
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "--backend ipex: intel-extension-for-pytorch is not installed" in lines[0]
    assert "torch==2.8.*" in lines[0]
    assert not (tmp_path / "run").exists()


def test_bad_numbers_name_their_flag(capsys, synth_dir, tmp_path):
    for flag, value, message in (
        ("--steps", 0, "--steps must be >= 1, got 0"),
        ("--warmup-steps", 500, "--warmup-steps 500 exceeds --steps 100"),
        ("--contention-threshold", 2, "--contention-threshold must be in (0, 1], got 2.0"),
        ("--fp32-gemm", "blas", "--fp32-gemm must be auto, mkl or onednn, got blas"),
    ):
        proc = call(capsys, "train", *TINY, "--dataset", synth_dir, "--output", tmp_path / "run", flag, value)
        assert (proc.returncode, proc.stderr.strip()) == (2, f"harness: {message}")


def test_bench_peer_refuses_an_unrunnable_mode_before_measuring_any(monkeypatch, synth_dir):
    import pytest
    from platforms import ZEN3

    from harness.bench import peer
    from harness.errors import HarnessError
    from harness.launch import launchers
    from harness.machine import platform

    started = []
    monkeypatch.setattr(platform, "detect", lambda: ZEN3)
    monkeypatch.setattr(launchers, "run_task", lambda *a, **k: started.append(a))
    spec = peer.PeerSpec(model="bert-tiny", dataset=str(synth_dir))
    with pytest.raises(HarnessError, match="--precisions bf16: needs bf16"):
        peer.run_peer(spec, ["fp32", "bf16"], False, False, None)
    assert started == []  # fp32 came first, and was not measured for nothing


def test_a_backend_with_fp32_masters_refuses_a_mode_with_bf16_weights_before_a_worker(
    capsys, monkeypatch, synth_dir, tmp_path
):
    import pytest
    from platforms import ZEN5

    from harness.bench import peer
    from harness.errors import HarnessError
    from harness.launch import launchers
    from harness.machine import platform

    refusal = (
        "--backend fused: it keeps fp32 master weights, so mode bf16-pure (bfloat16 weights) "
        "runs on the stock backend only"
    )
    flags = ["--phase", 1, "--precision", "bf16-pure", "--model", "bert-tiny", "--backend", "fused"]
    proc = call(capsys, "train", *flags, "--dataset", synth_dir, "--output", tmp_path / "run")
    assert (proc.returncode, proc.stderr.strip()) == (2, f"harness: {refusal}")
    assert not (tmp_path / "run").exists()
    started = []
    monkeypatch.setattr(platform, "detect", lambda: ZEN5)
    monkeypatch.setattr(launchers, "run_task", lambda *a, **k: started.append(a))
    spec = peer.PeerSpec(model="bert-tiny", dataset=str(synth_dir), backend="fused")
    with pytest.raises(HarnessError, match=re.escape(refusal)):
        peer.run_peer(spec, ["fp32", "bf16-pure"], False, False, None)
    assert started == []
