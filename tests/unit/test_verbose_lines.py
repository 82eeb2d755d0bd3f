"""MKL's and oneDNN's verbose lines read one at a time: headers and their ISA labels, times in
milliseconds, which calls are GEMMs, their FLOPs, dtypes and kernels."""

from __future__ import annotations

import math

import pytest
from verbose_headers import (
    ISA_AVX512_BF16,
    ISA_SPR,
    MKL_AMD,
    MKL_AMX,
    MKL_AMX_ISA,
    MKL_AVX2,
    MKL_AVX2_ISA,
    MKL_AVX512_ISA,
    MKL_PREFIX,
    MKL_TAIL,
)

from harness.precision import mkl_verbose, onednn_verbose
from harness.precision.census import Census, census_problem
from harness.precision.modes import BUILTIN, PrecisionMode

MODES: dict[str, PrecisionMode] = {m.name: m for m in BUILTIN}


def onednn_exec(*fields: str) -> str:
    """A oneDNN 3.12 exec line from the fields after `exec,cpu` (kept short here to fit the line length)."""
    return ",".join(("onednn_verbose", "v1", "primitive", "exec", "cpu", *fields))


# ------------------------------------------------------------------------------------------ mkl_verbose


@pytest.mark.parametrize(
    ("line", "isa", "label"),
    [
        (MKL_AMD, "Intel(R) Architecture processors", "generic"),
        (MKL_AVX2, MKL_AVX2_ISA, "avx2"),
        (MKL_AMX, MKL_AMX_ISA, "avx512_amx"),
        (MKL_PREFIX + MKL_AVX512_ISA + ", Lnx 2.00GHz lp64 gnu_thread", MKL_AVX512_ISA, "avx512"),
    ],
    ids=["amd", "avx2", "amx", "avx512"],
)
def test_mkl_header_and_isa_label(line, isa, label):
    header, calls = mkl_verbose.parse(line + "\n")
    assert header == isa and calls == []
    assert mkl_verbose.isa_label(header) == label


def test_mkl_labels_a_float_call_by_its_vector_isa_alone():
    # AMX, BF16 and VNNI have no fp32 arithmetic: an SGEMM under the AMX header ran on AVX-512
    assert mkl_verbose.isa_label(MKL_AMX_ISA, "f32") == "avx512"
    assert mkl_verbose.isa_label(MKL_AMX_ISA, "bf16") == "avx512_amx"
    assert mkl_verbose.isa_label(MKL_AVX2_ISA, "f32") == "avx2"


def test_mkl_isa_label_without_a_header():
    assert mkl_verbose.isa_label(None) == "generic"
    assert mkl_verbose.parse("no verbose output\n") == (None, [])


def test_mkl_times_are_converted_to_milliseconds():
    text = "\n".join(
        f"MKL_VERBOSE SDOT(128,0x55d3c1a04000,1,0x55d3c1a04000,1) {t}{MKL_TAIL}"
        for t in ("250ns", "1.5us", "2.25ms", "1.5s")
    )
    _, calls = mkl_verbose.parse(text)
    assert [c.time_ms for c in calls] == pytest.approx([250e-6, 1.5e-3, 2.25, 1500.0])


def test_mkl_calls_gemm_or_not_and_their_flops():
    pointers = ",".join(f"0x7ffcff4557{i:02x}" for i in range(13))
    batch = f"MKL_VERBOSE SGEMM_BATCH(N,N,{pointers}) 442.74us{MKL_TAIL}"
    sgemm = (
        "MKL_VERBOSE SGEMM(T,N,384,512,128,0x7ffcff454e80,0x564dfe104f80,128,0x564dffe55280,128,"
        "0x7ffcff454ea0,0x564dffe95300,384) 1.20ms" + MKL_TAIL
    )
    sdot = "MKL_VERBOSE SDOT(3906816,0x564e02dec440,1,0x564e02dec440,1) 1.06ms" + MKL_TAIL
    _, (b, g, d) = mkl_verbose.parse("\n".join([batch, sgemm, sdot]))
    assert (b.function, b.is_gemm, b.dtype, b.flops) == ("SGEMM_BATCH", True, "f32", None)
    assert b.time_ms == pytest.approx(0.44274)
    assert (g.function, g.is_gemm, g.flops, g.time_ms) == ("SGEMM", True, 2.0 * 384 * 512 * 128, 1.2)
    assert (d.function, d.is_gemm, d.dtype, d.flops) == ("SDOT", False, "f32", None)


# ---------------------------------------------------------------------------------------- onednn_verbose


def one_execution(line: str) -> onednn_verbose.Execution:
    (execution,) = onednn_verbose.parse(line + "\n").executions
    return execution


# a weight reorder to bf16: no GEMM, no FLOPs, and no weights to take the dtype from
REORDER = onednn_exec(
    "reorder",
    "jit:uni",
    "undef",
    "src:f32::blocked:ab::f0 dst:bf16::blocked:ab::f0",
    "",
    "",
    "4096x1024",
    "0.2",
)
BF16_MM = "src:bf16::blocked:abc::f0 wei:bf16::blocked:abc::f0 dst:bf16::blocked:abc::f0"


@pytest.mark.parametrize(
    ("line", "flops"),
    [
        (
            onednn_exec(
                "matmul",
                "brg_matmul:avx10_1_512_amx",
                "undef",
                "src:bf16::blocked:ab::f0 wei:bf16:a:blocked:ab::f0 dst:bf16::blocked:ab::f0",
                "attr-scratchpad:user",
                "",
                "8x1024:1024x4096",
                "0.3",
            ),
            2 * 8 * 1024 * 4096,
        ),
        (
            onednn_exec(
                "matmul",
                "brg_matmul:avx512_core_bf16",
                "undef",
                BF16_MM,
                "attr-scratchpad:user",
                "",
                "12x128x64:12x64x128",
                "0.05",
            ),
            2 * 12 * 128 * 64 * 128,
        ),
        (
            onednn_exec(
                "inner_product",
                "brgemm:avx10_1_512_amx",
                "forward_training",
                "src:bf16::blocked:ab::f0 wei:bf16:a:blocked:AB16b64a2b::f0 dst:bf16::blocked:ab::f0",
                "attr-scratchpad:user",
                "",
                "mb8ic1024oc4096",
                "0.1",
            ),
            2 * 8 * 1024 * 4096,
        ),
        (
            "dnnl_verbose,exec,cpu,inner_product,brgemm:avx512_core,forward_training,src_f32::blocked:ab:f0 "
            "wei_f32::blocked:AB16b64a:f0 dst_f32::blocked:ab:f0,,,mb8ic1024oc4096,0.86084",
            2 * 8 * 1024 * 4096,
        ),
        (
            REORDER,
            None,
        ),
    ],
    ids=["matmul", "batched-matmul", "inner-product", "inner-product-2.x", "reorder"],
)
def test_onednn_execution_flops(line, flops):
    e = one_execution(line)
    assert e.flops == flops
    assert e.is_gemm == (flops is not None)
    assert isinstance(e.time_ms, float) and e.time_ms > 0
    assert math.isclose(e.time_ms, float(line.rsplit(",", 1)[1]))


@pytest.mark.parametrize(
    ("line", "dtype"),
    [
        # 3.4+: `name:dtype:...`, the weights' data type
        (
            onednn_exec(
                "inner_product",
                "brgemm:avx10_1_512_amx",
                "forward_training",
                "src:bf16::blocked:ab::f0 wei:bf16:a:blocked:AB16b64a2b::f0 bia:f32::blocked:a::f0 "
                "dst:f32::blocked:ab::f0",
                "",
                "",
                "mb8ic1024oc4096",
                "0.1",
            ),
            "bf16",
        ),
        # the inputs', not the output's: a bf16 GEMM that writes f32 weight gradients computes in bf16
        (
            onednn_exec(
                "inner_product",
                "brgemm:avx512_core_bf16",
                "backward_weights",
                "src:bf16::blocked:ab::f0 diff_wei:f32::blocked:ab::f0 diff_bia:f32::blocked:a::f0 "
                "diff_dst:bf16::blocked:ab::f0",
                "",
                "",
                "mb8ic1024oc4096",
                "0.2",
            ),
            "bf16",
        ),
        (
            onednn_exec(
                "matmul",
                "brg_matmul:avx512_core",
                "undef",
                "src:f32::blocked:ab::f0 wei:s8:a:blocked:ab::f0 dst:f32::blocked:ab::f0",
                "",
                "",
                "8x1024:1024x4096",
                "0.2",
            ),
            "s8",
        ),
        # 2.x-3.3: `name_dtype::...`
        (
            "dnnl_verbose,exec,cpu,inner_product,brgemm:avx512_core_bf16,backward_weights,"
            "src_bf16::blocked:ab:f0 diff_wei_f32::blocked:ab:f0 diff_bia_f32::blocked:a:f0 "
            "diff_dst_bf16::blocked:ab:f0,,,mb8ic1024oc4096,0.5",
            "bf16",
        ),
        (
            "onednn_verbose,exec,cpu,matmul,brg:avx512_core_amx,undef,"
            "src_bf16::blocked:ab:f0 wei_bf16::blocked:ab:f0 dst_f32::blocked:ab:f0,,,8x1024:1024x4096,0.3",
            "bf16",
        ),
        # no weights: the first memory's
        (
            REORDER,
            "f32",
        ),
        (
            "dnnl_verbose,exec,cpu,eltwise,jit:avx512_core,forward_training,data_bf16::blocked:abc:f0 "
            "diff_undef::undef::f0,,alg:eltwise_gelu_erf alpha:0 beta:0,4x128x512,0.01",
            "bf16",
        ),
    ],
    ids=["3.x-wei", "3.x-diff-wei", "3.x-s8-wei", "2.x-diff-wei", "3.0-wei", "3.x-first", "2.x-first"],
)
def test_onednn_execution_dtype(line, dtype):
    assert one_execution(line).dtype == dtype


def test_onednn_execution_isa_and_attributes():
    mds = "src:f32::blocked:abc::f0 wei:f32::blocked:acb::f0 dst:f32::blocked:abc::f0"
    attrs = "attr-fpmath:bf16 attr-scratchpad:user"
    e = one_execution(
        onednn_exec(
            "matmul", "brg_matmul:avx10_1_512_amx", "undef", mds, attrs, "", "8x128x128:8x128x64", "0.0213"
        )
    )
    assert (e.primitive, e.isa, e.dtype, e.attributes, e.problem) == (
        "matmul",
        "avx10_1_512_amx",
        "f32",
        "attr-fpmath:bf16 attr-scratchpad:user",
        "8x128x128:8x128x64",
    )
    assert e.flops == 2 * 8 * 128 * 128 * 64


@pytest.mark.parametrize(
    ("header", "isa"),
    [
        ("Intel AVX2", "avx2"),
        ("Intel AVX-512 with AVX512BW, AVX512VL, and AVX512DQ extensions", "avx512_core"),  # oneDNN 2.x
        ("Intel AVX-512 with Intel DL Boost", "avx512_core_vnni"),
        (ISA_AVX512_BF16, "avx512_core_bf16"),
        # AMX kernels name themselves: the header's vector part is what a jit kernel without a name runs
        (ISA_SPR, "avx512_core_fp16"),
        (
            "Intel AVX-512 with Intel DL Boost and bfloat16 support and Intel AMX with bfloat16 and 8-bit "
            "integer support",
            "avx512_core_bf16",
        ),
        (None, None),
    ],
)
def test_onednn_vector_isa_of_a_header(header, isa):
    assert onednn_verbose.vector_isa(header) == isa


def test_a_jit_gemm_that_names_no_isa_runs_at_the_ceilings_vector_isa():
    line = onednn_exec(
        "matmul",
        "gemm:jit:bf16",
        "undef",
        "src:bf16::blocked:ab::f0 wei:bf16::blocked:ab::f0 dst:f32::blocked:ab::f0",
        "",
        "",
        "512x128:128x512",
        "0.4",
    )
    census = Census.from_verbose(line + "\n", None, ISA_AVX512_BF16)
    assert census.gemm_isa_share() == {"avx512_core_bf16": 1.0}
    assert census_problem(MODES["bf16"], "avx512_core_bf16", census) is None
    # never AMX: on an AMX machine such a kernel does not meet the AMX promise
    on_amx = Census.from_verbose(line + "\n", None, ISA_SPR)
    assert on_amx.gemm_isa_share() == {"avx512_core_fp16": 1.0}
    assert census_problem(MODES["bf16"], "amx", on_amx) is not None
    # reference code is no ISA at all
    ref = onednn_exec(
        "matmul",
        "ref:any",
        "undef",
        "src:bf16::blocked:ab::f0 wei:bf16::blocked:ab::f0",
        "",
        "",
        "512x128:128x512",
        "9.0",
    )
    assert Census.from_verbose(ref + "\n", None, ISA_AVX512_BF16).gemm_isa_share() == {"any": 1.0}
