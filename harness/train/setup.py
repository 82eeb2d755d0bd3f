"""Before the first step: the output folder, the architecture and data, a checkpoint to resume."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from harness.datasets.mlcommons import PhaseData, eval_batches, resolve_phase_data
from harness.errors import HarnessError
from harness.files import folder_lock
from harness.models import BertConfig, BertForPreTraining, Lamb, load_config
from harness.results.files import read_result
from harness.results.records import Status
from harness.tf_checkpoint import bert as tf_bert
from harness.train import checkpoint
from harness.train.config import TrainConfig

TRAJECTORY_FIELDS = (
    "model",
    "steps",
    "batch_size",
    "learning_rate",
    "warmup_steps",
    "weight_decay",
    "seed",
    "data_workers",
    "dataset",
    "phase_fraction",
    "checkpoint",
    "eval_examples",
    "shuffle_buffer",
    "world_size",
)
"""Settings that decide the data order and the updates: a resumed run must keep them."""


def trajectory(cfg: TrainConfig, world_size: int) -> dict:
    settings = {**cfg.to_dict(), "world_size": world_size}
    return {k: settings[k] for k in TRAJECTORY_FIELDS}


def already_complete(cfg: TrainConfig, world_size: int) -> bool:
    """--resume on a run that ended ok with these settings: there is nothing left to do (training
    on would append a second final evaluation and restart the run's clock)."""
    result = read_result(cfg.output)
    if result is None or result.status is not Status.OK or result.steps_completed != cfg.steps:
        return False
    before = {**result.config, "world_size": result.world_size}
    return {k: before.get(k) for k in TRAJECTORY_FIELDS} == trajectory(cfg, world_size)


@contextlib.contextmanager
def output_folder(cfg: TrainConfig) -> Iterator[None]:
    """The run folder, empty or (--resume) with a whole checkpoint, held by this process while the
    block runs: a second run into it (a --resume started while a killed parent's worker is still
    stopping) is refused."""
    cfg.refuse_previous_run()
    if cfg.resume and not cfg.output.is_dir():
        raise HarnessError(f"--resume: {cfg.output} does not exist; nothing to resume")
    with folder_lock(cfg.output, "--output"):
        if cfg.resume:
            checkpoint.recover(cfg.output / "model_save")
            if not (cfg.output / "model_save" / checkpoint.STATE).is_file():
                raise HarnessError(f"--resume: {cfg.output}/model_save holds no checkpoint to resume from")
        yield


def model_and_data(cfg: TrainConfig) -> tuple[BertConfig, PhaseData]:
    """The architecture (phase 2: the checkpoint's; a TensorFlow checkpoint, which holds none,
    takes --model's or its bert_config.json) and the phase's data, checked to fit it. The
    evaluation set is read once here: a corrupt record in it stops the run before its first
    step, not after its last."""
    if cfg.phase == 2 and (prefix := tf_bert.prefix_of(cfg.checkpoint)):
        model_cfg = tf_bert.architecture(prefix, cfg.model)
    elif cfg.phase == 2:
        checkpoint.require_phase1_result(cfg.checkpoint)
        model_cfg = checkpoint.load_config(cfg.checkpoint)
        if cfg.model is not None and load_config(cfg.model) != model_cfg:
            raise HarnessError(
                f"--model {cfg.model}: differs from the architecture in "
                f"{cfg.checkpoint}/config.json; phase 2 continues the phase-1 model"
            )
    else:
        model_cfg = load_config(cfg.model or "bert-large")
    data = resolve_phase_data(cfg.dataset, cfg.phase, cfg.phase_fraction, cfg.eval_examples)
    longest = max(data.shape.seq_len, data.eval_shape.seq_len)
    if longest > model_cfg.max_position_embeddings:
        raise HarnessError(
            f"--dataset {cfg.dataset}: sequences of {longest} tokens, longer than the "
            f"model's max_position_embeddings {model_cfg.max_position_embeddings}"
        )
    for _ in eval_batches(data, cfg.batch_size, cfg.eval_examples, model_cfg.vocab_size):
        pass
    return model_cfg, data


def resume(
    cfg: TrainConfig, world_size: int, data: PhaseData, model: BertForPreTraining, optimizer: Lamb
) -> int:
    """Load the checkpoint in cfg.output into model and optimizer; returns its step. Refuses a
    checkpoint of another phase or precision, one trained with settings that decide the data
    order and the updates other than these, or on other data at the same path."""
    save_dir = cfg.output / "model_save"
    state = checkpoint.load_state(save_dir)
    if (state.phase, state.precision) != (cfg.phase, cfg.precision):
        raise HarnessError(
            f"--resume: {save_dir} is phase {state.phase} {state.precision}, "
            f"not phase {cfg.phase} {cfg.precision}"
        )
    now = trajectory(cfg, world_size)
    changed = [k for k in TRAJECTORY_FIELDS if state.config.get(k) != now[k]]
    if changed:
        k = changed[0]
        raise HarnessError(
            f"--resume: --{k.replace('_', '-')} is {now[k]} but the run in "
            f"{cfg.output} used {state.config.get(k)}; resume with the same settings"
        )
    before = state.config.get("data_fingerprint")  # None in checkpoints written before it was
    if before is not None and before != data.fingerprint():
        raise HarnessError(
            f"--resume: --dataset {cfg.dataset} holds other data than the run in {cfg.output} "
            "trained on (its files' names, sizes or first records differ); resume on the same data"
        )
    checkpoint.load_weights(save_dir, model)
    optimizer.load_state_dict(state.optimizer)
    torch.set_rng_state(state.rng)
    return state.step
