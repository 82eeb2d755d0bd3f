"""run.sh against a stand-in `docker` (no engine runs here), and the Dockerfile's steps."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from harness_cli import result
from mlcommons_writer import mlcommons_download

from harness.models import NAMED_CONFIGS

REPO = Path(__file__).resolve().parents[2]

# Records its arguments, then does what `docker run` would with them: the -e variables make the
# environment, every -v names a host path that exists (mounted at the same path), and the command
# runs in the image's working directory (the repository here) with the image's python.
STAND_IN = textwrap.dedent(f"""\
    #!{sys.executable}
    import json, os, subprocess, sys
    args = sys.argv[1:]
    with open(os.environ["DOCKER_LOG"], "a") as log:
        log.write(json.dumps(args) + "\\n")
    assert args[0] == "run", args
    env = {{"PATH": os.environ["PATH"], "PYTHON": {sys.executable!r}}}
    i = 1
    while args[i].startswith("-"):
        flag = args[i]
        if flag in ("-e", "-v", "--shm-size"):
            value = args[i + 1]
            if flag == "-e":
                key, _, val = value.partition("=")
                env[key] = val
            if flag == "-v":
                host, inside = value.split(":")[:2]
                assert host == inside and os.path.exists(host), value
            i += 2
        else:
            i += 1
    image, command = args[i], args[i + 1:]
    sys.exit(subprocess.run(command, cwd={str(REPO)!r}, env=env).returncode)
    """)


@pytest.fixture
def docker(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "docker").write_text(STAND_IN)
    (bin_dir / "docker").chmod(0o755)
    return bin_dir, tmp_path / "docker.log"


def run_sh(docker, env: dict) -> subprocess.CompletedProcess:
    bin_dir, log = docker
    base = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PRECISION", "OUTPUT_DIR", "DATASET_DIR", "CONFIG_FILE", "CHECKPOINT_DIR", "SCRIPT")
    }
    return subprocess.run(
        ["bash", str(REPO / "run.sh")],
        capture_output=True,
        text=True,
        timeout=600,
        env={**base, "PATH": f"{bin_dir}:{os.environ['PATH']}", "DOCKER_LOG": str(log), **env},
    )


def docker_calls(docker) -> list[list[str]]:
    log = docker[1]
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def test_each_missing_variable_gets_its_own_line(docker):
    proc = run_sh(docker, {"PRECISION": "bf16"})
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        "run.sh: OUTPUT_DIR is not set: a host folder for logs, results and model_save (empty or new)",
        "run.sh: DATASET_DIR is not set: the host folder holding seq_128/ and seq_512/ TFRecords",
        "run.sh: CONFIG_FILE is not set: a bert_config.json on the host, or a named config such as bert-large",
    ]
    proc = run_sh(
        docker,
        {"SCRIPT": "run_bert_pretrain_phase2.sh", "PRECISION": "bf16", "OUTPUT_DIR": "o", "DATASET_DIR": "d"},
    )
    assert proc.returncode == 2 and proc.stderr.startswith("run.sh: CHECKPOINT_DIR is not set")
    proc = run_sh(docker, {"SCRIPT": "train.sh"})
    assert (
        proc.returncode == 2
        and "expected run_bert_pretrain_phase1.sh or run_bert_pretrain_phase2.sh" in proc.stderr
    )
    assert docker_calls(docker) == []  # nothing started


def test_phase1_then_phase2_through_the_container_command(docker, synth_dir, tmp_path):
    config = tmp_path / "cfg" / "bert_config.json"
    config.parent.mkdir()
    config.write_text(json.dumps(NAMED_CONFIGS["bert-tiny"].to_hf_dict()))
    p1, p2 = tmp_path / "out1", tmp_path / "out2"
    common = {
        "PRECISION": "fp32",
        "DATASET_DIR": str(synth_dir),
        "TRAIN_STEPS": "3",
        "BATCH_SIZE": "4",
        "HARNESS_ARGS": "--eval-examples 8 --log-every 1",
        "IMAGE": "harness:test",
    }
    proc = run_sh(docker, {**common, "OUTPUT_DIR": str(p1), "CONFIG_FILE": str(config)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    proc = run_sh(
        docker,
        {
            **common,
            "OUTPUT_DIR": str(p2),
            "CHECKPOINT_DIR": str(p1 / "model_save"),
            "SCRIPT": "run_bert_pretrain_phase2.sh",
        },
    )
    assert proc.returncode == 0, proc.stderr[-2000:]

    first, second = docker_calls(docker)
    data = str(Path(synth_dir).resolve())
    assert first == [
        "run",
        "--rm",
        "--init",
        "--shm-size",
        "1g",
        "-v",
        f"{data}:{data}:ro",
        "-v",
        f"{p1}:{p1}",
        "-e",
        "PRECISION=fp32",
        "-e",
        f"OUTPUT_DIR={p1}",
        "-e",
        f"DATASET_DIR={data}",
        "-v",
        f"{config}:{config}:ro",
        "-e",
        f"CONFIG_FILE={config}",
        "-e",
        "TRAIN_STEPS=3",
        "-e",
        "BATCH_SIZE=4",
        "-e",
        "HARNESS_ARGS=--eval-examples 8 --log-every 1",
        "harness:test",
        "bash",
        "quickstart/run_bert_pretrain_phase1.sh",
    ]
    save = p1 / "model_save"
    assert second[second.index("harness:test") :] == [
        "harness:test",
        "bash",
        "quickstart/run_bert_pretrain_phase2.sh",
    ]
    assert ["-v", f"{save}:{save}:ro"] == second[second.index(f"{save}:{save}:ro") - 1 :][:2]
    assert f"CHECKPOINT_DIR={save}" in second and f"OUTPUT_DIR={p2}" in second
    r1, r2 = result(p1), result(p2)
    assert (r1.status, r1.seq_len, r2.status, r2.seq_len) == ("ok", 128, "ok", 512)


def test_phase2_from_a_tensorflow_checkpoint_prefix(docker, tmp_path):
    prefix, data = mlcommons_download(tmp_path / "wiki")
    out = tmp_path / "p2"
    proc = run_sh(
        docker,
        {
            "PRECISION": "fp32",
            "DATASET_DIR": str(data),
            "OUTPUT_DIR": str(out),
            "CHECKPOINT_DIR": str(prefix),
            "SCRIPT": "run_bert_pretrain_phase2.sh",
            "TRAIN_STEPS": "2",
            "BATCH_SIZE": "4",
            "HARNESS_ARGS": "--eval-examples 8",
        },
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    (call,) = docker_calls(docker)
    # the prefix's folder, and the bert_config.json in the folder above, where MLCommons has it
    folder, config = prefix.parent, tmp_path / "wiki" / "bert_config.json"
    assert f"{folder}:{folder}:ro" in call and f"{config}:{config}:ro" in call
    assert f"CHECKPOINT_DIR={prefix}" in call
    assert result(out).status == "ok"


def test_dockerfile_steps_name_files_that_exist_and_pin_cpu_torch():
    proc = subprocess.run(
        [sys.executable, str(REPO / "tests" / "dockerfile_steps.py"), "--dry-run"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    runs = [line for line in proc.stdout.splitlines() if line.startswith("RUN ")]
    assert any("torch==2.13.0" in r for r in runs) and "RUN pip install ." in runs
    assert any("install -y --no-install-recommends g++" in r for r in runs)  # --backend fused builds
    assert [line.split()[1] for line in proc.stdout.splitlines() if line.startswith("COPY ")] == [
        "pyproject.toml",
        "README.md",
        "harness",
        "quickstart",
    ]
