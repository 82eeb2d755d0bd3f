"""A finished run's own figures, as its result records them: what it trained on, the timed steps'
throughput, and what the steps are worth against the machine's limits.

The limits are the roofline `harness roofline` stored for the mode, machine and thread count: MFU
is model FLOP/s over its large-matmul peak, and the speed of light the census step's GEMMs at that
peak plus LAMB's least bytes at its stream bandwidth (harness.results.time_split). A run whose
store lacks them still records every figure it measured, without these. The Trainer measures;
this module only derives, so that the training loop does not carry the result's arithmetic.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING

import torch

from harness.machine import contention
from harness.precision.roofline import lookup as roofline_lookup
from harness.results.time_split import speed_of_light

if TYPE_CHECKING:  # the Trainer calls this module with itself
    from harness.train.trainer import Trainer


def run_figures(trainer: Trainer) -> dict:
    """The figures of `trainer`'s run at its end, by RunRecord's field names."""
    cfg = trainer.cfg
    # Steps just after a resume are as cold as the first ones: leave them out too.
    summary = trainer.metrics.summary(
        cfg.timing_warmup,
        trainer.global_batch,
        resumed_at=trainer.start_step,
        also_cold=(trainer.census.step,),
    )
    peak = roofline_lookup(trainer.mode.name, trainer.context.machine_key, torch.get_num_threads())
    if peak and "model_tflops_per_s" in summary:
        # MFU: model FLOP/s over the large-matmul peak of this mode on this machine, one
        # peak per rank (each measured at this rank's thread count).
        summary["roofline_gflops"] = peak["gflops"] * trainer.ranks.world_size
        summary["mfu"] = summary["model_tflops_per_s"] * 1e3 / summary["roofline_gflops"]
        summary.update(_speed_of_light(trainer, peak, summary["step_time_median_s"]))
    cores = (
        contention.judge(
            trainer.cores_at_start,
            contention.Snapshot.take(trainer.context.cores),
            len(trainer.context.cores),
            cfg.contention_threshold,
        )
        if trainer.cores_at_start is not None
        else {}
    )
    return {
        "model_config": asdict(trainer.model_cfg),
        "seq_len": trainer.data.shape.seq_len,
        "max_predictions": trainer.data.shape.max_predictions,
        "train_files": [s.path for s in trainer.data.train],
        "eval_source": trainer.data.eval_source,
        "data_fingerprint": trainer.data_fingerprint,
        **summary,
        "parameters": sum(p.numel() for p in trainer.model.parameters()),
        **cores,
        **trainer.backend,
    }


def _speed_of_light(trainer: Trainer, peak: dict, step_time_s: float) -> dict:
    """The census step's speed of light (harness.results.time_split) and the timed steps'
    median against it; nothing where the store has no stream bandwidth beside the peak."""
    census = next((s for s in trainer.metrics.steps if s.step == trainer.census.step), None)
    if census is None or "stream_gbytes_per_s" not in peak:
        return {}
    streamed = trainer.optimizer.streamed_bytes()
    # each rank computes its share of the FLOPs at its own peak, and the whole optimizer step
    flops = census.model_flops / trainer.ranks.world_size
    seconds = speed_of_light(flops, peak["gflops"], streamed, peak["stream_gbytes_per_s"])
    return {
        "optimizer_bytes": streamed,
        "stream_gbytes_per_s": peak["stream_gbytes_per_s"],
        "speed_of_light_s": seconds,
        "speed_of_light_share": seconds / step_time_s,
    }
