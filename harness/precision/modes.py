"""Precision modes: how a run computes and which ISA oneDNN and MKL may use. A mode is data.

The ISA cap is an environment variable that oneDNN reads once, at its first JIT kernel, so a mode
takes effect only in a process that starts with its environment (see harness.launch.runner). Since
oneDNN 2.5 AMX is on by default: a mode that means "no AMX" must set a cap below it, and the
worker proves from oneDNN's verbose output that the cap held.
"""

from __future__ import annotations

import contextlib
import os
import re
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path

import torch

from harness.errors import HarnessError
from harness.machine.platform import CAPABILITIES, Platform
from harness.precision import fp32_math
from harness.results.records import Status

AMX_CAP, AVX512_BF16_CAP = "AVX512_CORE_AMX", "AVX512_CORE_BF16"

ONEDNN_ISAS = (
    "SSE41",
    "AVX",
    "AVX2",
    "AVX2_VNNI",
    "AVX2_VNNI_2",
    "AVX512_CORE",
    "AVX512_CORE_VNNI",
    "AVX512_CORE_BF16",
    "AVX512_CORE_FP16",
    "AVX10_1_512",
    AMX_CAP,
    "AVX10_1_512_AMX",
    "AVX512_CORE_AMX_FP16",
    "AVX10_1_512_AMX_FP16",
    "DEFAULT",
)
"""The values oneDNN (3.x) takes for ONEDNN_MAX_CPU_ISA: it ignores any other, so a mode capped
by a misspelt name would run uncapped, and fail its census only in the worker."""

MKL_ISAS = ("SSE4_2", "AVX", "AVX2", "AVX2_E1", "AVX512", "AVX512_E1", "AVX512_E2", "AVX512_E3", "AVX512_E4")
"""The values MKL takes for MKL_ENABLE_INSTRUCTIONS; it ignores any other, as oneDNN does."""


@dataclass(frozen=True)
class PrecisionMode:
    """One way of running the same training step."""

    name: str
    """What users type after --precision."""
    description: str
    """One line for help texts and reports."""
    autocast: str | None = None
    """"bfloat16" runs the step under torch.autocast("cpu", bfloat16); None keeps fp32."""
    weights: str | None = None
    """"bfloat16": the weights, their gradients and the optimizer's moments are held in it, with
    no fp32 master copy (pure low-precision training: updates smaller than a weight's last bit
    are lost); None: fp32 weights."""
    fp32_math: str = "ieee"
    """torch.backends.mkldnn.matmul.fp32_precision: "ieee", or "bf16" for fp32 GEMMs on bf16
    units (bf32)."""
    isa_cap: str = AMX_CAP
    """ONEDNN_MAX_CPU_ISA and DNNL_MAX_CPU_ISA (both set: oneDNN 2.x reads the second)."""
    mkl_instructions: str | None = None
    """MKL_ENABLE_INSTRUCTIONS: stock PyTorch runs fp32 GEMMs in MKL, which the oneDNN cap does
    not reach."""
    requires: tuple[str, ...] = ()
    """Capabilities (harness.machine.platform.CAPABILITIES, or boolean Platform fields) the mode needs to run
    natively, e.g. "bf16"."""
    emulable: bool = True
    """Without its capabilities the mode still computes its number format, in software (emulated,
    run only with --allow-emulation). False: it would compute something else, so it is refused."""
    gemm_unit: str | None = None
    """What its GEMMs must run on: "bf16" the machine's best bf16 unit under the cap (AMX where
    usable, else AVX512_BF16), "amx" AMX, None no claim. The kernel census checks it."""

    @property
    def gemm_dtype(self) -> str:
        """The data type its GEMMs compute in: the autocast's, else the weights', else float32."""
        return self.autocast or self.weights or "float32"

    @property
    def computes_fp32(self) -> bool:
        """Its GEMMs take fp32 data and compute in fp32: neither bf16 data nor bf32 math."""
        return self.gemm_dtype == "float32" and self.fp32_math == "ieee"

    @property
    def admits_amx(self) -> bool:
        """The cap leaves oneDNN AMX; a mode capped below it must run no AMX kernel."""
        return "AMX" in self.isa_cap.upper()

    def environment(self) -> dict[str, str]:
        env = {"ONEDNN_MAX_CPU_ISA": self.isa_cap, "DNNL_MAX_CPU_ISA": self.isa_cap}
        if self.mkl_instructions:
            env["MKL_ENABLE_INSTRUCTIONS"] = self.mkl_instructions
        return env

    def autocast_context(self) -> contextlib.AbstractContextManager:
        if self.autocast is None:
            return contextlib.nullcontext()
        return torch.autocast("cpu", dtype=getattr(torch, self.autocast))

    def apply_math_mode(self) -> None:
        """Set the process-wide fp32 matmul precision (call once in the worker)."""
        if self.fp32_math == "ieee":
            fp32_math.set_precision("ieee")
        elif not fp32_math.set_precision(self.fp32_math):
            raise HarnessError(
                f"mode {self.name}: fp32_math {self.fp32_math} needs torch.backends.mkldnn.matmul "
                f"(torch 2.9 or later); this is torch {torch.__version__}"
            )

    def validate(self, source: str) -> None:
        if self.autocast not in (None, "bfloat16", "float16"):
            raise HarnessError(f"{source}: mode {self.name}: autocast must be bfloat16 or float16")
        if self.weights not in (None, "bfloat16"):
            raise HarnessError(f"{source}: mode {self.name}: weights must be bfloat16")
        if self.fp32_math not in ("ieee", "bf16", "tf32"):
            raise HarnessError(f"{source}: mode {self.name}: fp32_math must be ieee, bf16 or tf32")
        if self.gemm_unit not in (None, "bf16", "amx"):
            raise HarnessError(f"{source}: mode {self.name}: gemm_unit must be bf16 or amx")
        if self.isa_cap not in ONEDNN_ISAS:
            raise HarnessError(
                f"{source}: mode {self.name}: isa_cap {self.isa_cap!r}, expected one of "
                f"oneDNN's {', '.join(ONEDNN_ISAS)}"
            )
        if self.mkl_instructions is not None and self.mkl_instructions not in MKL_ISAS:
            raise HarnessError(
                f"{source}: mode {self.name}: mkl_instructions {self.mkl_instructions!r}, expected one "
                f"of MKL's {', '.join(MKL_ISAS)}"
            )
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_+.-]*", self.name):
            raise HarnessError(
                f"{source}: mode {self.name!r}: a name is letters, digits and -_+. (it names files)"
            )
        known = {f.name for f in fields(Platform) if f.type in ("bool", bool)} | set(CAPABILITIES)
        for feature in self.requires:
            if feature not in known:
                raise HarnessError(
                    f"{source}: mode {self.name}: requires {feature!r}, expected some "
                    f"of {', '.join(sorted(known))}"
                )


BUILTIN: tuple[PrecisionMode, ...] = (
    PrecisionMode(
        "fp32", "fp32 everywhere, oneDNN allowed up to AMX (Intel's package's fp32)", isa_cap=AMX_CAP
    ),
    PrecisionMode(
        "avx-fp32",
        "fp32 kept off AMX by a real cap on oneDNN and MKL (Intel's avx-fp32 "
        "intent; unsetting the variable no longer caps)",
        isa_cap=AVX512_BF16_CAP,
        mkl_instructions="AVX512",
    ),
    PrecisionMode(
        "bf16",
        "bf16 autocast on the CPU's bf16 unit (AMX, else AVX512_BF16), fp32 master weights and optimizer",
        autocast="bfloat16",
        isa_cap=AMX_CAP,
        requires=("bf16",),
        gemm_unit="bf16",
    ),
    # oneDNN applies the bf16 fpmath only on AMX: elsewhere fp32_precision=bf16 is fp32 math
    # through oneDNN, which is not what bf32 means.
    PrecisionMode(
        "bf32",
        "fp32 model, fp32 GEMMs computed on AMX in bf16 (fp32_precision=bf16)",
        fp32_math="bf16",
        isa_cap=AMX_CAP,
        requires=("amx",),
        emulable=False,
        gemm_unit="amx",
    ),
    PrecisionMode(
        "avx-bf16",
        "bf16 autocast capped below AMX (AVX512_BF16): what AMX itself buys",
        autocast="bfloat16",
        isa_cap=AVX512_BF16_CAP,
        mkl_instructions="AVX512",
        requires=("avx512_bf16",),
        gemm_unit="bf16",
    ),
    # The mode that should converge worse: the equivalence test must be able to say so.
    PrecisionMode(
        "bf16-pure",
        "bf16 weights, gradients and optimizer state, no fp32 master copy (no stochastic rounding)",
        weights="bfloat16",
        isa_cap=AMX_CAP,
        requires=("bf16",),
        gemm_unit="bf16",
    ),
)


@dataclass(frozen=True)
class Admission:
    """How a mode runs on a machine: natively, emulated, or not at all."""

    mode: str
    status: str
    """native, emulated (its number format has no instructions here) or Status.REFUSED: what a run
    of it ends as."""
    missing: tuple[str, ...]
    """The capabilities the machine lacks."""
    gemm_isa: str | None
    """The ISA its GEMMs must run on here (oneDNN's names: "amx", "avx512_core_bf16"), or None."""
    reason: str | None
    """Why it is emulated or refused, in one clause."""
    vector_isa: str = ""
    """The widest vector ISA here (avx512_core, avx2, ...): where a mode without a GEMM claim runs."""

    @property
    def emulated(self) -> bool:
        return self.status == "emulated"

    @property
    def refused(self) -> bool:
        return self.status == Status.REFUSED

    def runs(self, allow_emulation: bool) -> bool:
        """Whether a run of the mode may start here: natively, or emulated where allowed."""
        return not self.refused and (allow_emulation or not self.emulated)


def admit(mode: PrecisionMode, platform: Platform) -> Admission:
    """What `mode` means on `platform`, decided from the machine before any process starts."""
    missing = tuple(platform.lacks(mode.requires))
    gemm_isa = None
    if mode.gemm_unit == "amx" and platform.amx_usable:
        gemm_isa = "amx"
    elif mode.gemm_unit == "bf16":
        best = platform.bf16_isa
        gemm_isa = "avx512_core_bf16" if best == "amx" and not mode.admits_amx else best
    vector = platform.vector_isa
    if not missing:
        return Admission(mode.name, "native", (), gemm_isa, None, vector)
    needs = "; ".join(f"{m} ({CAPABILITIES[m][0]})" if m in CAPABILITIES else m for m in missing)
    if not mode.emulable:
        return Admission(
            mode.name,
            Status.REFUSED,
            missing,
            None,
            f"needs {needs}, and without it would compute something else",
            vector,
        )
    return Admission(mode.name, "emulated", missing, None, f"needs {needs}, which this machine lacks", vector)


def format_admissions(platform: Platform) -> str:
    """A line per known mode: whether it runs natively here, on which ISA, or why not."""
    lines = [f"{'mode':<10} {'here':<9} {'GEMMs on':<17} why"]
    for mode in load_modes().values():
        a = admit(mode, platform)
        where = a.gemm_isa or (a.vector_isa if a.status == "native" else "-")
        lines.append(f"{mode.name:<10} {a.status:<9} {where:<17} {a.reason or mode.description}")
    return "\n".join(lines)


def same_computation(a: PrecisionMode, b: PrecisionMode, platform: Platform) -> bool:
    """Whether two modes run the same kernels here: they compute alike (autocast, fp32 math) and
    differ only in caps that remove what this machine does not have. oneDNN's two caps differ by
    AVX512_FP16 and AMX; MKL's AVX512 cap removes the AVX-512 extensions, of which only AMX
    changes a GEMM's arithmetic (a prediction: the runs' losses and census confirm it)."""
    if (a.autocast, a.fp32_math, a.weights) != (b.autocast, b.fp32_math, b.weights):
        return False
    caps = {a.isa_cap.upper(), b.isa_cap.upper()}
    onednn_alike = len(caps) == 1 or (
        caps == {AMX_CAP, AVX512_BF16_CAP} and not platform.amx_usable and not platform.avx512_fp16
    )
    mkl_alike = a.mkl_instructions == b.mkl_instructions or not platform.amx_usable
    return onednn_alike and mkl_alike


def same_computation_pairs(names: list[str], platform: Platform) -> list[tuple[str, str]]:
    """The pairs of these modes that run the same kernels here (same_computation)."""
    modes = [get_precision(n) for n in names]
    return [
        (a.name, b.name)
        for i, a in enumerate(modes)
        for b in modes[i + 1 :]
        if same_computation(a, b, platform)
    ]


PRECISION_FILE_ENV = "HARNESS_PRECISION_FILE"
"""A TOML file of extra modes: [modes.NAME] tables with the PrecisionMode fields."""


def load_modes(path: Path | None = None) -> dict[str, PrecisionMode]:
    """The built-in modes plus those of the TOML file (`path`, else $HARNESS_PRECISION_FILE)."""
    modes = {m.name: m for m in BUILTIN}
    path = path or (Path(os.environ[PRECISION_FILE_ENV]) if os.environ.get(PRECISION_FILE_ENV) else None)
    if path is None:
        return modes
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise HarnessError(f"{path}: not a readable TOML file of precision modes ({exc})") from None
    tables = data.get("modes", {})
    if set(data) - {"modes"} or not isinstance(tables, dict):
        raise HarnessError(f"{path}: expected only [modes.NAME] tables")
    for name, table in tables.items():
        if not isinstance(table, dict):
            raise HarnessError(f"{path}: modes.{name}: expected a [modes.{name}] table")
        if name in modes:
            # Every speed-up is measured against the built-in modes: a file must not change them.
            raise HarnessError(
                f"{path}: [modes.{name}] redefines the built-in mode {name}; give it another name"
            )
        _check_types(path, name, table)
        mode = PrecisionMode(name=name, **{**table, "requires": tuple(table.get("requires", ()))})
        mode.validate(str(path))
        modes[name] = mode
    return modes


def _check_types(path: Path, name: str, table: dict) -> None:
    """Each key of a [modes.NAME] table is a PrecisionMode field, of its type: a string where the
    field is one, a list of strings for a tuple, a boolean for a bool (TOML has no None)."""
    known = {f.name: str(f.type) for f in fields(PrecisionMode) if f.name != "name"}
    unknown = set(table) - set(known)
    if unknown or "description" not in table:
        got = ", ".join(sorted(unknown)) or "no description"
        raise HarnessError(
            f"{path}: [modes.{name}] needs a description and takes only "
            f"{', '.join(sorted(known))} (got {got})"
        )
    for key, value in table.items():
        kind = known[key]
        if kind == "bool":
            ok, expected = isinstance(value, bool), "true or false"
        elif kind.startswith("tuple"):
            ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
            expected = 'a list of strings, e.g. ["bf16"]'
        else:
            ok, expected = isinstance(value, str), "a string"
        if not ok:
            raise HarnessError(f"{path}: [modes.{name}] {key} = {value!r}, expected {expected}")


def get_precision(name: str) -> PrecisionMode:
    modes = load_modes()
    try:
        return modes[name]
    except KeyError:
        raise HarnessError(f"--precision {name}: unknown mode (known: {', '.join(modes)})") from None
