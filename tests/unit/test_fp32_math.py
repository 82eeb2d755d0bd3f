"""The fp32 matmul switch on a torch without `torch.backends.mkldnn.matmul` (torch < 2.9, IPEX's
2.8): LAMB, the modes and the GEMM route must all run, as IEEE fp32."""

from __future__ import annotations

import math
import types

import pytest
import torch

from harness.errors import HarnessError
from harness.models.lamb import Lamb
from harness.precision import fp32_math, gemm_route
from harness.precision.modes import load_modes


@pytest.fixture
def old_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    """torch.backends.mkldnn as torch 2.8 has it: no `matmul` switch."""
    mkldnn = types.SimpleNamespace(is_available=torch.backends.mkldnn.is_available)
    monkeypatch.setattr(torch.backends, "mkldnn", mkldnn)


@pytest.mark.parametrize("step", ["step", "step_if_finite"])  # the trainer calls step_if_finite
def test_lamb_steps_without_the_switch(old_torch: None, step: str) -> None:
    torch.manual_seed(0)
    weight = torch.nn.Parameter(torch.randn(8, 4))
    weight.grad = torch.randn(8, 4)
    before = weight.detach().clone()
    norm = getattr(Lamb([weight], lr=0.1), step)()
    assert norm is not None and math.isfinite(norm)
    assert not torch.equal(weight.detach(), before)
    assert fp32_math.current() == "ieee"


def test_ieee_restores_what_was_set() -> None:
    before = fp32_math.current()
    fp32_math.set_precision("bf16")
    try:
        with fp32_math.ieee():
            assert fp32_math.current() == "ieee"
        assert fp32_math.current() == "bf16"
    finally:
        fp32_math.set_precision(before)


def test_modes_apply_ieee_and_refuse_bf16_math_without_the_switch(old_torch: None) -> None:
    modes = load_modes()
    modes["fp32"].apply_math_mode()
    bf32 = [m for m in modes.values() if m.fp32_math != "ieee"]
    assert bf32, "a built-in mode with bf16 fp32 math"
    with pytest.raises(HarnessError, match=r"needs torch\.backends\.mkldnn\.matmul"):
        bf32[0].apply_math_mode()


def test_the_onednn_route_falls_back_to_mkl_without_the_switch(old_torch: None) -> None:
    route = gemm_route.settle(gemm_route.Route("onednn", "faster here"), load_modes()["fp32"])
    assert route.library == "mkl"
    assert "no torch.backends.mkldnn.matmul" in route.reason
