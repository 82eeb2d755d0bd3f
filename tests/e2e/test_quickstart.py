"""The quickstart scripts keep Intel's environment interface and chain phase 1 into phase 2."""

import json
import os
import subprocess
import sys
from pathlib import Path

from harness_cli import result

from harness.models import NAMED_CONFIGS

SCRIPTS = Path(__file__).resolve().parents[2] / "quickstart"


def script(name: str, env: dict) -> subprocess.CompletedProcess:
    base = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PRECISION", "OUTPUT_DIR", "DATASET_DIR", "CONFIG_FILE", "CHECKPOINT_DIR")
    }
    return subprocess.run(
        ["bash", str(SCRIPTS / name)],
        capture_output=True,
        text=True,
        env={**base, "PYTHON": sys.executable, **env},
        timeout=600,
    )


def test_missing_variables_are_listed():
    proc = script("run_bert_pretrain_phase1.sh", {"PRECISION": "fp32"})
    assert proc.returncode == 2
    assert proc.stderr.startswith("run_bert_pretrain_phase1.sh: OUTPUT_DIR DATASET_DIR CONFIG_FILE not set")
    proc = script("run_bert_pretrain_phase2.sh", {})
    assert proc.returncode == 2
    assert "PRECISION OUTPUT_DIR DATASET_DIR CHECKPOINT_DIR not set" in proc.stderr


def test_phase1_then_phase2_through_intels_variables(kernels_home, synth_dir, tmp_path):
    config = tmp_path / "bert_config.json"
    config.write_text(json.dumps(NAMED_CONFIGS["bert-tiny"].to_hf_dict()))
    common = {
        "PRECISION": "fp32",
        "DATASET_DIR": str(synth_dir),
        "TRAIN_STEPS": "4",
        "BATCH_SIZE": "4",
        "HARNESS_ARGS": "--eval-examples 8 --log-every 2",
    }
    p1 = tmp_path / "phase1"
    proc = script(
        "run_bert_pretrain_phase1.sh", {**common, "OUTPUT_DIR": str(p1), "CONFIG_FILE": str(config)}
    )
    assert proc.returncode == 0, proc.stderr
    assert (p1 / "model_save" / "pytorch_model.bin").is_file()

    # phase 2 on the fused backend (BACKEND), from stock's phase-1 model_save
    p2 = tmp_path / "phase2"
    proc = script(
        "run_bert_pretrain_phase2.sh",
        {
            **common,
            "OUTPUT_DIR": str(p2),
            "CHECKPOINT_DIR": str(p1 / "model_save"),
            "BACKEND": "fused",
        },
    )
    assert proc.returncode == 0, proc.stderr
    r1, r2 = result(p1), result(p2)
    assert (r1.status, r1.seq_len, r2.status, r2.seq_len) == ("ok", 128, "ok", 512)
    assert (r1.backend, r2.backend) == ("stock", "fused")
    assert r2.config["checkpoint"] == str(p1 / "model_save")
    assert r2.model_config["hidden_size"] == 128  # the architecture came from the checkpoint
