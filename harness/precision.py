"""Precision modes: how a run computes and which ISA oneDNN and MKL may use. A mode is data.

The ISA cap is an environment variable that oneDNN reads once, at its first JIT kernel, so a mode
takes effect only in a process that starts with its environment (see harness.launch). Since
oneDNN 2.5 AMX is on by default: a mode that means "no AMX" must set a cap below it, and the
worker proves from oneDNN's verbose output that the cap held.
"""

from __future__ import annotations

import contextlib
import os
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path

from harness.errors import HarnessError

AMX_CAP, AVX512_BF16_CAP = "AVX512_CORE_AMX", "AVX512_CORE_BF16"


@dataclass(frozen=True)
class PrecisionMode:
    """One way of running the same training step."""

    name: str
    """What users type after --precision."""
    description: str
    """One line for help texts and reports."""
    autocast: str | None = None
    """"bfloat16" runs the step under torch.autocast("cpu", bfloat16); None keeps fp32."""
    fp32_math: str = "ieee"
    """torch.backends.mkldnn.matmul.fp32_precision: "ieee", or "bf16" for fp32 GEMMs on bf16
    units (bf32)."""
    isa_cap: str = AMX_CAP
    """ONEDNN_MAX_CPU_ISA and DNNL_MAX_CPU_ISA (both set: oneDNN 2.x reads the second)."""
    mkl_instructions: str | None = None
    """MKL_ENABLE_INSTRUCTIONS: stock PyTorch runs fp32 GEMMs in MKL, which the oneDNN cap does
    not reach."""
    requires: tuple[str, ...] = ()
    """Platform fields that must be true (harness.platform.Platform), e.g. "amx_usable"."""
    expects_amx: bool | None = None
    """What the verbose proof must show: True AMX kernels, False none, None no claim."""

    def environment(self) -> dict[str, str]:
        env = {"ONEDNN_MAX_CPU_ISA": self.isa_cap, "DNNL_MAX_CPU_ISA": self.isa_cap}
        if self.mkl_instructions:
            env["MKL_ENABLE_INSTRUCTIONS"] = self.mkl_instructions
        return env

    def autocast_context(self) -> contextlib.AbstractContextManager:
        import torch

        if self.autocast is None:
            return contextlib.nullcontext()
        return torch.autocast("cpu", dtype=getattr(torch, self.autocast))

    def apply_math_mode(self) -> None:
        """Set the process-wide fp32 matmul precision (call once in the worker)."""
        import torch

        torch.backends.mkldnn.matmul.fp32_precision = self.fp32_math

    def validate(self, source: str) -> None:
        if self.autocast not in (None, "bfloat16", "float16"):
            raise HarnessError(f"{source}: mode {self.name}: autocast must be bfloat16 or float16")
        if self.fp32_math not in ("ieee", "bf16", "tf32"):
            raise HarnessError(f"{source}: mode {self.name}: fp32_math must be ieee, bf16 or tf32")
        from harness.platform import Platform

        known = {f.name for f in fields(Platform) if f.type in ("bool", bool)}
        for feature in self.requires:
            if feature not in known:
                raise HarnessError(f"{source}: mode {self.name}: requires {feature!r}, expected some "
                                   f"of {', '.join(sorted(known))}")


BUILTIN: tuple[PrecisionMode, ...] = (
    PrecisionMode("fp32", "fp32 everywhere, oneDNN allowed up to AMX (Intel's package's fp32)",
                  isa_cap=AMX_CAP),
    PrecisionMode("avx-fp32", "fp32 kept off AMX by a real cap on oneDNN and MKL (Intel's avx-fp32 "
                  "intent; unsetting the variable no longer caps)", isa_cap=AVX512_BF16_CAP,
                  mkl_instructions="AVX512", requires=("avx512",), expects_amx=False),
    PrecisionMode("bf16", "bf16 autocast on AMX, fp32 master weights and optimizer",
                  autocast="bfloat16", isa_cap=AMX_CAP, requires=("amx_usable",), expects_amx=True),
    PrecisionMode("bf32", "fp32 model, fp32 GEMMs computed on AMX in bf16 (fp32_precision=bf16)",
                  fp32_math="bf16", isa_cap=AMX_CAP, requires=("amx_usable",), expects_amx=True),
    PrecisionMode("avx-bf16", "bf16 autocast capped below AMX (AVX512_BF16): what AMX itself buys",
                  autocast="bfloat16", isa_cap=AVX512_BF16_CAP, mkl_instructions="AVX512",
                  requires=("avx512_bf16",), expects_amx=False),
)

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
    known = {f.name for f in fields(PrecisionMode)} - {"name"}
    for name, table in data.get("modes", {}).items():
        unknown = set(table) - known
        if unknown or "description" not in table:
            got = ", ".join(sorted(unknown)) or "no description"
            raise HarnessError(f"{path}: [modes.{name}] needs a description and takes only "
                               f"{', '.join(sorted(known))} (got {got})")
        table = {**table, "requires": tuple(table.get("requires", ()))}
        mode = PrecisionMode(name=name, **table)
        mode.validate(str(path))
        modes[name] = mode
    return modes


def get_precision(name: str) -> PrecisionMode:
    modes = load_modes()
    try:
        return modes[name]
    except KeyError:
        raise HarnessError(f"--precision {name}: unknown mode (known: {', '.join(modes)})") from None
