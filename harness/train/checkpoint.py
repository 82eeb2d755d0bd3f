"""model_save: the weights in Hugging Face's format, plus what a run needs to continue.

    model_save/config.json          the BERT config (MLCommons keys + model_type for HF)
    model_save/pytorch_model.bin    state dict with HF BertForPreTraining names and shapes
    model_save/training_state.pt    optimizer state, step, RNG states, phase, precision
    model_save/converted.json       instead of training_state.pt in one `harness convert-checkpoint`
                                    wrote from a TensorFlow checkpoint: where it came from

Phase 2's --checkpoint also takes a TensorFlow checkpoint's prefix (harness.tf_checkpoint).

The directory is written under a temporary name and renamed, so a crash while saving leaves the
previous checkpoint intact.
"""

from __future__ import annotations

import json
import pickle
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

from harness.errors import HarnessError
from harness.files import write_error
from harness.models.config import BertConfig
from harness.models.hf_format import from_hf_state_dict, to_hf_state_dict
from harness.tf_checkpoint import bert as tf_bert

CONFIG, WEIGHTS, STATE, CONVERTED = "config.json", "pytorch_model.bin", "training_state.pt", "converted.json"


@dataclass
class TrainingState:
    """What resuming restores besides the weights."""

    step: int
    phase: int
    precision: str
    optimizer: dict
    rng: torch.Tensor
    complete: bool
    """True when written at the end of the run (a usable phase-1 result for phase 2)."""
    config: dict
    """The run's settings that decide its trajectory; resuming with other values is refused."""


def save(directory: Path, model: torch.nn.Module, cfg: BertConfig, state: TrainingState) -> None:
    """A failed write (a full disk) removes the part written and keeps the previous checkpoint."""
    tmp = directory.with_name(directory.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    weights = to_hf_state_dict(model.state_dict())
    try:
        tmp.mkdir(parents=True)
        write_model(tmp, weights, cfg)
        _save_tensors(state.__dict__, tmp / STATE)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise write_error(directory, exc, _tensor_bytes(weights) + _tensor_bytes(state.optimizer)) from None
    old = directory.with_name(directory.name + ".old")
    shutil.rmtree(old, ignore_errors=True)  # left by a crash during an earlier save
    if directory.exists():
        directory.rename(old)
    tmp.rename(directory)
    shutil.rmtree(old, ignore_errors=True)


def write_model(folder: Path, weights: dict[str, torch.Tensor], cfg: BertConfig) -> None:
    """What Hugging Face loads: config.json and the weights (to_hf_state_dict's) into `folder`."""
    (folder / CONFIG).write_text(json.dumps(cfg.to_hf_dict(), indent=2) + "\n")
    _save_tensors(weights, folder / WEIGHTS)


def _save_tensors(obj: object, path: Path) -> None:
    try:
        with path.open("wb") as f:  # a file of ours: torch then keeps the OSError of a failed write
            torch.save(obj, f)
    except RuntimeError as exc:
        # torch's zip writer reports a failed write as a RuntimeError whose context is the OSError
        if isinstance(exc.__context__, OSError):
            raise exc.__context__ from None
        raise


def _tensor_bytes(tree: object) -> int:
    """The bytes of the tensors in a nest of dicts and lists: about what saving it takes."""
    if isinstance(tree, torch.Tensor):
        return tree.numel() * tree.element_size()
    if isinstance(tree, dict):
        return sum(_tensor_bytes(v) for v in tree.values())
    if isinstance(tree, list | tuple):
        return sum(_tensor_bytes(v) for v in tree)
    return 0


def recover(directory: Path) -> None:
    """Finish a save that a crash cut between its two renames: the previous checkpoint is whole
    in model_save.old."""
    old = directory.with_name(directory.name + ".old")
    if not directory.exists() and old.is_dir():
        old.rename(directory)


def load_config(directory: Path) -> BertConfig:
    _require(directory)
    try:
        data = json.loads((directory / CONFIG).read_text())
    except json.JSONDecodeError as exc:
        raise HarnessError(f"{directory / CONFIG}: not valid JSON ({exc})") from None
    return BertConfig.from_dict(data, str(directory / CONFIG))


def _load_tensors(path: Path) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, EOFError, OSError) as exc:
        # torch's reader reports a truncated zip as a RuntimeError, a foreign file as unpickling
        first = str(exc).split(". ")[0].splitlines()[0] if str(exc) else type(exc).__name__
        raise HarnessError(
            f"{path}: not readable as a checkpoint file, truncated or corrupt ({first})"
        ) from None


def load_weights(directory: Path, model: torch.nn.Module) -> None:
    """From a model_save, or from a TensorFlow checkpoint's prefix."""
    prefix = tf_bert.prefix_of(directory)
    if prefix is not None:
        tf_bert.load_into(prefix, model)
        return
    _require(directory)
    state = _load_tensors(directory / WEIGHTS)
    try:
        missing, unexpected = model.load_state_dict(from_hf_state_dict(state), strict=False)
    except RuntimeError as exc:  # shapes that differ from config.json's
        detail = next((line.strip() for line in str(exc).splitlines() if "size mismatch" in line), str(exc))
        raise HarnessError(f"{directory / WEIGHTS}: does not match {directory / CONFIG} ({detail})") from None
    if missing or unexpected:
        raise HarnessError(
            f"{directory / WEIGHTS}: does not match the model "
            f"(missing {missing[:3]}, unexpected {unexpected[:3]})"
        )


def load_state(directory: Path) -> TrainingState:
    _require(directory)
    path = directory / STATE
    if not path.is_file():
        raise HarnessError(f"{directory}: no {STATE}; not a model_save written by `harness train`")
    data = _load_tensors(path)
    try:
        return TrainingState(**data)
    except TypeError:
        raise HarnessError(f"{path}: not the training state of a `harness train` run") from None


def require_phase1_result(directory: Path) -> None:
    """Phase 2 starts only from the final model_save of a phase-1 run, or from a converted
    TensorFlow checkpoint (MLCommons' phase-1 result)."""
    if (directory / CONVERTED).is_file():
        _require(directory)
        return
    state = load_state(directory)
    if state.phase != 1 or not state.complete:
        what = (
            f"phase {state.phase}" if state.phase != 1 else f"an unfinished phase-1 run (step {state.step})"
        )
        raise HarnessError(
            f"--checkpoint {directory}: holds {what}; phase 2 needs the model_save of a completed phase-1 run"
        )


def _require(directory: Path) -> None:
    if not directory.is_dir():
        raise HarnessError(f"{directory}: checkpoint directory does not exist")
    for name in (CONFIG, WEIGHTS):
        if not (directory / name).is_file():
            raise HarnessError(f"{directory}: no {name}; not a model_save directory")
