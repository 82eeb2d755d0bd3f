"""Verbose header strings of MKL and oneDNN as the libraries print them, shared by the census and
parser tests (the parts of a line that name the ISA, which is what those tests judge)."""

ISA_SPR = (
    "Intel AVX-512 with float16, Intel DL Boost and bfloat16 support and Intel AMX with bfloat16 and "
    "8-bit integer support"
)
ISA_AVX512_BF16 = "Intel AVX-512 with Intel DL Boost and bfloat16 support"
MKL_PREFIX = "MKL_VERBOSE oneMKL 2024.0 Update 2 Product build 20240605 for Intel(R) 64 architecture "
MKL_AMD = MKL_PREFIX + "Intel(R) Architecture processors, Lnx 2.45GHz lp64 gnu_thread"
MKL_AVX2_ISA = "Intel(R) Advanced Vector Extensions 2 (Intel(R) AVX2) enabled processors"
MKL_AVX2 = MKL_PREFIX + MKL_AVX2_ISA + ", Lnx 2.45GHz lp64 gnu_thread"
MKL_AVX512_ISA = "Intel(R) Advanced Vector Extensions 512 (Intel(R) AVX-512) enabled processors"
MKL_AMX_ISA = (
    "Intel(R) Advanced Vector Extensions 512 (Intel(R) AVX-512) with support for INT8, BF16, FP16 "
    "(limited) instructions, and Intel(R) Advanced Matrix Extensions (Intel(R) AMX) with INT8 "
    "and BF16"
)
MKL_AMX = MKL_PREFIX + MKL_AMX_ISA + ", Lnx 2.00GHz lp64 gnu_thread"
MKL_TAIL = " CNR:OFF Dyn:1 FastMM:1 TID:0  NThr:2"
