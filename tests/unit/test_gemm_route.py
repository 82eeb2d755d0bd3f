"""Where fp32 GEMMs go (harness.precision.gemm_route): the choice on platform fixtures and stored
rooflines, and the proof in this process, whose outcome follows from the host's own CPU."""

import pytest
import torch
from platforms import SAPPHIRE_RAPIDS, ZEN3, ZEN5

from harness.machine.platform import detect
from harness.precision import gemm_route
from harness.precision.gemm_route import Route, choose, settle
from harness.precision.modes import get_precision

FP32, BF16, BF32 = (get_precision(n) for n in ("fp32", "bf16", "bf32"))


def roofline(mkl: float, onednn: float) -> dict:
    """A stored fp32 roofline (harness.precision.matmul_peak.measure's shape) with both paths."""
    paths = [
        {"path": "torch.mm", "library": "mkl", "gflops": mkl},
        {"path": "oneDNN linear", "library": "onednn", "gflops": onednn},
    ]
    return {**max(paths, key=lambda p: p["gflops"]), "paths": paths}


def test_auto_takes_onednn_only_where_the_roofline_says_it_is_clearly_faster():
    zen4 = roofline(mkl=179.8, onednn=219.1)  # this machine's class (docs/results.md#zen-4-roofline)
    route = choose("auto", FP32, ZEN5.amx_usable, zen4)
    assert route.library == "onednn"
    assert route.reason == "faster here: oneDNN 219 GFLOP/s against MKL's 180 (harness roofline)"
    # a near tie (the AVX2 class: 146.7 against 145.5) keeps MKL, and says by how much it missed
    tie = choose("auto", FP32, ZEN3.amx_usable, roofline(mkl=145.5, onednn=146.7))
    assert tie.library == "mkl" and tie.reason.startswith("oneDNN is not 10% faster here: oneDNN 147")
    assert choose("auto", FP32, False, roofline(mkl=200, onednn=150)).library == "mkl"
    # no roofline of both libraries: MKL, and the command that would measure them
    for peak in (None, {"paths": [{"library": "mkl", "gflops": 180.0}]}):
        route = choose("auto", FP32, False, peak)
        assert route.library == "mkl" and "`harness roofline --precisions fp32`" in route.reason


def test_where_amx_is_usable_fp32_gemms_never_take_the_bf32_switch():
    faster = roofline(mkl=100, onednn=300)
    for requested in ("auto", "onednn"):
        route = choose(requested, FP32, SAPPHIRE_RAPIDS.amx_usable, faster)
        assert route.library == "mkl" and "compute fp32 GEMMs in bf16" in route.reason


def test_explicit_choices_and_modes_that_set_their_own_math():
    slower = roofline(mkl=200, onednn=100)
    assert choose("mkl", FP32, False, roofline(mkl=100, onednn=300)) == Route("mkl", "--fp32-gemm mkl")
    assert choose("onednn", FP32, False, slower) == Route("onednn", "--fp32-gemm onednn")
    # bf32 sends fp32 GEMMs to oneDNN itself: no switch of ours can move them
    route = choose("mkl", BF32, SAPPHIRE_RAPIDS.amx_usable, None)
    assert route.library == "onednn" and route.reason.startswith("bf32 sets its own fp32 math (bf16)")
    # bf16's GEMMs are bf16: its few fp32 ones stay where stock PyTorch puts them
    route = choose("onednn", BF16, False, roofline(mkl=180, onednn=219))
    assert route == Route("mkl", "bf16's GEMMs are bfloat16: its fp32 remainder stays in MKL")


@pytest.fixture
def ieee_afterwards():
    yield
    torch.backends.mkldnn.matmul.fp32_precision = "ieee"  # the switch is process-wide


def test_the_onednn_route_holds_here_exactly_where_the_host_allows_fp32_math_in_onednn(ieee_afterwards):
    host = detect()
    route = settle(Route("onednn", "test"), FP32)
    if host.amx_usable:  # the switch would compute in bf16 (bf32): the proof refuses it
        assert route.library == "mkl" and "not fp32 math" in route.reason
    elif not host.avx512:  # PyTorch's bf16 device check keeps MKL without AVX-512
        assert route.library == "mkl" and "not oneDNN on f32 data" in route.reason
        assert "mkl:SGEMM f32" in route.reason
    else:
        assert route == Route("onednn", "test")
        assert torch.backends.mkldnn.matmul.fp32_precision == "bf16"
        # and it is fp32 math: a BERT-sized GEMM against float64, to fp32 rounding
        a, b = torch.randn(512, 1024), torch.randn(1024, 1024)
        exact = a.double() @ b.double()
        assert ((a @ b).double() - exact).abs().max() / exact.abs().max() < gemm_route.EXACT
    if route.library == "mkl":
        assert torch.backends.mkldnn.matmul.fp32_precision == "ieee"
