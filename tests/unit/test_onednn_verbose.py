"""The oneDNN verbose parser on the 2.x and 3.x formats."""

from harness.precision.onednn_verbose import parse

ONEDNN_2 = """\
dnnl_verbose,info,oneDNN v2.7.3 (commit 6dbeffbae1f23cbbeae17adb7b5b13f1f37c080e)
dnnl_verbose,info,cpu,runtime:OpenMP,nthr:56
dnnl_verbose,info,cpu,isa:Intel AVX-512 with AVX512BW, AVX512VL, and AVX512DQ extensions
dnnl_verbose,info,gpu,runtime:none
dnnl_verbose,info,prim_template:operation,engine,primitive,implementation,prop_kind,memory_descriptors,attributes,auxiliary,problem_desc,exec_time
dnnl_verbose,exec,cpu,inner_product,brgemm:avx512_core,forward_training,src_f32::blocked:ab:f0 wei_f32::blocked:AB16b64a:f0 bia_f32::blocked:a:f0 dst_f32::blocked:ab:f0,,,mb8ic1024oc4096,0.86084
dnnl_verbose,exec,cpu,reorder,jit:uni,undef,src_f32::blocked:ab:f0 dst_f32::blocked:AB16b64a:f0,,,4096x1024,1.2
dnnl_verbose,exec,cpu,inner_product,brgemm:avx512_core,forward_training,src_f32::blocked:ab:f0,,,mb8ic1024oc4096,0.7
"""

ONEDNN_30 = """\
onednn_verbose,info,oneDNN v3.1.1 (commit 64f6bcbcbab628e96f33a62c3e975f8535a7bde4)
onednn_verbose,info,cpu,runtime:OpenMP,nthr:2
onednn_verbose,info,cpu,isa:Intel AVX-512 with float16, Intel DL Boost and bfloat16 support and Intel AMX with bfloat16 and 8-bit integer support
onednn_verbose,exec,cpu,matmul,brg:avx512_core_amx,undef,src_bf16::blocked:ab:f0 wei_bf16::blocked:ab:f0 dst_bf16::blocked:ab:f0,,,8x1024:1024x4096,0.3
"""

ONEDNN_3_V1 = """\
onednn_verbose,v1,info,oneDNN v3.12.0 (commit 80afa71049cd69a3df32adcccb623b12cd7baa22)
onednn_verbose,v1,info,cpu,runtime:OpenMP,nthr:2
onednn_verbose,v1,info,cpu,isa:Intel AVX-512 with float16, Intel DL Boost and bfloat16 support and Intel AMX with bfloat16 and 8-bit integer support
onednn_verbose,v1,info,gpu,runtime:none
onednn_verbose,v1,primitive,info,template:operation,engine,primitive,implementation,prop_kind,memory_descriptors,attributes,auxiliary,problem_desc,exec_time
onednn_verbose,v1,primitive,exec,cpu,matmul,brg_matmul:avx10_1_512_amx,undef,src:bf16::blocked:ab::f0 wei:bf16:a:blocked:ab::f0 dst:bf16::blocked:ab::f0,attr-scratchpad:user,,8x16:16x32,0.0139
onednn_verbose,v1,primitive,exec,cpu,reorder,jit:uni,undef,src:f32::blocked:ab::f0 dst:bf16::blocked:ab::f0,,,16x32,0.01
onednn_verbose,1732480000123.5,primitive,exec,cpu,matmul,brg_matmul:avx10_1_512_amx,undef,src:bf16,,,8x16:16x32,0.01
some unrelated line, from python
"""

CAPPED = """\
onednn_verbose,v1,info,cpu,isa:Intel AVX-512 with Intel DL Boost and bfloat16 support
onednn_verbose,v1,primitive,exec,cpu,matmul,brg_matmul:avx512_core_bf16,undef,src:bf16::blocked:ab::f0,,,8x16:16x32,0.2
"""


def test_onednn_2_format():
    r = parse(ONEDNN_2)
    assert r.isa == "Intel AVX-512 with AVX512BW, AVX512VL, and AVX512DQ extensions"
    assert r.kernels == ["inner_product/brgemm:avx512_core", "reorder/jit:uni"]
    assert r.kernel_isas == ["avx512_core", "uni"]
    assert not r.amx_used


def test_onednn_3_without_version_column():
    r = parse(ONEDNN_30)
    assert r.isa.endswith("Intel AMX with bfloat16 and 8-bit integer support")
    assert r.kernels == ["matmul/brg:avx512_core_amx"]
    assert r.amx_used


def test_onednn_3_with_version_column_and_timestamps():
    r = parse(ONEDNN_3_V1)
    assert r.isa.startswith("Intel AVX-512 with float16, Intel DL Boost")
    assert r.kernels == ["matmul/brg_matmul:avx10_1_512_amx", "reorder/jit:uni"]
    assert r.amx_used and r.kernel_isas == ["avx10_1_512_amx", "uni"]


def test_capped_below_amx():
    r = parse(CAPPED)
    assert r.isa == "Intel AVX-512 with Intel DL Boost and bfloat16 support"
    assert r.kernels == ["matmul/brg_matmul:avx512_core_bf16"] and not r.amx_used


def test_no_verbose_output():
    r = parse("nothing here\n")
    assert r.isa is None and r.kernels == [] and not r.amx_used


def test_amx_used_means_a_gemm_on_amx_tiles_not_an_amx_level():
    head = "onednn_verbose,v1,primitive,exec,cpu,"
    gelu = head + "eltwise,jit:avx10_1_512_amx,forward_training,data:f32::blocked:abc::f0,,,4x128x512,0.01"
    gemm = head + "matmul,brg_matmul:avx10_1_512_amx,undef,src:f32::blocked:ab::f0 wei:f32::blocked:ab::f0"
    assert not parse(gelu).amx_used  # the JIT level of an AMX machine, in vector registers
    assert not parse(gemm + ",attr-scratchpad:user,,8x16:16x32,0.01").amx_used  # f32 math: no tile takes it
    bf32 = parse(gemm + ",attr-fpmath:bf16 attr-scratchpad:user,,8x16:16x32,0.01")
    assert bf32.amx_used and bf32.executions[0].math_dtype == "bf16"  # f32 data, bf16 math: tiles
    bf16_gelu = gelu.replace("data:f32", "data:bf16")
    assert not parse(bf16_gelu).amx_used  # bf16 data, but no matrix for a tile to multiply
