"""One benchmark kernel served from a process that started with a precision mode's environment.

oneDNN reads its ISA cap once, at its first kernel, so a mode cannot be switched inside the
pytest process. The suite starts this script per (kernel, mode) with the mode's environment
(harness.launch.environment): its variables, thread settings and core binding are in place before
torch loads. pytest-benchmark then times round trips: it writes a line, this process runs the
kernel once and answers.

    kernel_server.py KERNEL PRECISION MODEL BATCH SEQ EMULATED
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable

import torch

from harness import kernels
from harness.kernels.lamb import FusedLamb
from harness.kernels.layers import fuse
from harness.launch.environment import environment_problem
from harness.machine.platform import detect
from harness.models import BertForPreTraining, Lamb, load_config
from harness.models.bert import Layer
from harness.models.lamb import parameter_groups
from harness.precision import gemm_route
from harness.precision.modes import get_precision


def encoder_layer_step(
    model: str, batch: int, seq: int, autocast: Callable, fused: bool = False
) -> Callable[[], None]:
    """Forward and backward of one BERT encoder layer on (batch, seq, hidden) activations;
    `fused`: its layers on the fused backend's kernels (harness.kernels.layers)."""
    cfg = load_config(model)
    layer = Layer(cfg).train()
    if fused:
        fuse(layer, _kernels())
    x = torch.randn(batch, seq, cfg.hidden_size, requires_grad=True)

    def step() -> None:
        layer.zero_grad(set_to_none=True)
        with autocast():
            out = layer(x, None)
        out.float().mean().backward()

    return step


def fused_encoder_layer_step(model: str, batch: int, seq: int, autocast: Callable) -> Callable[[], None]:
    return encoder_layer_step(model, batch, seq, autocast, fused=True)


def lamb_step(model: str, batch: int, seq: int, autocast: Callable) -> Callable[[], None]:
    """One LAMB update over every parameter of the model, gradients already in place."""
    net = BertForPreTraining(load_config(model))
    for p in net.parameters():
        p.grad = torch.randn_like(p) * 1e-3
    optimizer = Lamb(parameter_groups(net, 0.01), lr=1e-4)
    return optimizer.step_if_finite  # type: ignore[return-value]


def fused_lamb_step(model: str, batch: int, seq: int, autocast: Callable) -> Callable[[], None]:
    """lamb_step on the fused backend's kernels (built for this machine, or loaded from the cache)."""
    net = BertForPreTraining(load_config(model))
    for p in net.parameters():
        p.grad = torch.randn_like(p) * 1e-3
    optimizer = FusedLamb(parameter_groups(net, 0.01), _kernels(), lr=1e-4)
    return optimizer.step_if_finite  # type: ignore[return-value]


def _kernels():
    """The fused backend's kernels, built for this machine or loaded from the cache."""
    return kernels.load(detect().key())


KERNELS = {
    "encoder-layer": encoder_layer_step,
    "fused-encoder-layer": fused_encoder_layer_step,
    "lamb": lamb_step,
    "fused-lamb": fused_lamb_step,
}


def main() -> None:
    kernel, precision, model, batch, seq, emulated = sys.argv[1:7]
    mode = get_precision(precision)
    if wrong := environment_problem(mode):
        raise SystemExit(f"kernel_server: not started with the environment of mode {precision}: {wrong}")
    mode.apply_math_mode()
    platform = detect()
    # the route `harness train` takes (--fp32-gemm): it decides where LAMB's dot products run too
    route = gemm_route.in_worker(
        os.environ.get("BENCH_FP32_GEMM", "auto"),
        mode,
        platform.amx_usable,
        platform.key(),
    )
    run = KERNELS[kernel](model, int(batch), int(seq), mode.autocast_context)
    run()  # first touch: allocations and oneDNN's JIT happen here, outside every timed round
    info = {
        "threads": torch.get_num_threads(),
        "emulated": emulated == "1",
        "env": mode.environment(),
        "fp32_gemm": route.library,
        "torch": torch.__version__,
    }
    print("ready " + json.dumps(info), flush=True)
    for line in sys.stdin:
        if line.strip() == "ping":
            print("pong", flush=True)
            continue
        start = time.perf_counter()
        run()
        print(f"done {time.perf_counter() - start:.6f}", flush=True)


if __name__ == "__main__":
    main()
