"""`harness convert-checkpoint`: a TensorFlow BERT checkpoint written out as a model_save.

The model_save is the one `harness train` writes, less training_state.pt (the optimizer starts
afresh in phase 2 either way): config.json and pytorch_model.bin, which Hugging Face's
BertForPreTraining loads, and converted.json, which says where the weights came from and lets
phase 2's --checkpoint take the folder as a finished phase 1.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from harness.errors import HarnessError
from harness.files import check_folder, write_error
from harness.models import BertConfig, BertForPreTraining, load_config
from harness.models.hf_format import to_hf_state_dict
from harness.tf_checkpoint.bert import Imported, load_into, prefix_of
from harness.train import checkpoint


def convert(tf_prefix: Path, config: Path, output: Path) -> Imported:
    """Read and check the whole checkpoint, then write `output` (new or empty): a bad checkpoint
    or config leaves nothing written."""
    check_folder(output, "--output")
    if output.exists() and any(output.iterdir()):
        raise HarnessError(f"--output {output}: exists and is not an empty directory")
    prefix = prefix_of(tf_prefix)
    if prefix is None:
        raise HarnessError(
            f"{tf_prefix}: no {tf_prefix.name}.index beside it; not the prefix of a TensorFlow "
            "checkpoint (such as tf1_ckpt/model.ckpt-28252)"
        )
    if not config.is_file():
        raise HarnessError(f"--config {config}: no such file; expected the checkpoint's bert_config.json")
    cfg = load_config(str(config))
    model = BertForPreTraining(cfg)
    imported = load_into(prefix, model)
    source = {"tf_checkpoint": str(prefix.resolve()), "global_step": imported.global_step}
    _write(output, to_hf_state_dict(model.state_dict()), cfg, source)
    return imported


def _write(output: Path, weights: dict, cfg: BertConfig, source: dict) -> None:
    """Staged in a folder beside `output` and renamed onto it: an interrupted or failed write
    leaves no half model_save."""
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{output.name}.", dir=output.parent))
    except OSError as exc:
        raise write_error(output, exc) from None
    try:
        tmp.chmod(0o755)  # mkdtemp makes it private; a model_save is meant to be shared
        checkpoint.write_model(tmp, weights, cfg)
        (tmp / checkpoint.CONVERTED).write_text(json.dumps(source, indent=2) + "\n")
        if output.exists():
            output.rmdir()
        tmp.rename(output)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise write_error(output, exc, sum(t.nbytes for t in weights.values())) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
