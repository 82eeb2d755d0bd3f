"""Command-line flags generated from config dataclasses: a field's name is its flag, its
docstring the help, its default the default. A default is declared once, in its dataclass."""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import itertools
import math
import textwrap
import types
import typing
from functools import cache
from pathlib import Path
from typing import Any

from harness.errors import HarnessError

FLAG_TYPES = (int, float, str, Path)


@cache
def field_docs(cls: type) -> dict[str, str]:
    """The string literal under each field of a dataclass, whitespace collapsed."""
    body = ast.parse(textwrap.dedent(inspect.getsource(cls))).body[0].body
    docs = {}
    for node, after in itertools.pairwise(body):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(after, ast.Expr)
            and isinstance(after.value, ast.Constant)
            and isinstance(after.value.value, str)
        ):
            docs[node.target.id] = " ".join(after.value.value.split())
    return docs


def _flag_type(hint: Any) -> type:
    """int for `int` and `int | None`, str for a Literal of strings: the one scalar type a flag
    parses (the config's validate checks a Literal's value, in a line of its own)."""
    if typing.get_origin(hint) is typing.Literal and all(isinstance(a, str) for a in typing.get_args(hint)):
        return str
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        hint = args[0] if len(args) == 1 else hint
    if hint not in (*FLAG_TYPES, bool):
        raise TypeError(f"no flag for a field of type {hint}")
    return hint


def add_fields(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    cls: type,
    skip: tuple[str, ...] = (),
    only: tuple[str, ...] | None = None,
) -> None:
    """A flag per field of `cls` (those in `only`, or all but those in `skip`); fields without a
    default are required."""
    hints = typing.get_type_hints(cls)
    docs = field_docs(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip or (only is not None and f.name not in only):
            continue
        kind = _flag_type(hints[f.name])
        flag = "--" + f.name.replace("_", "-")
        text = docs.get(f.name, "").replace("%", "%%")
        if kind is bool:
            parser.add_argument(flag, action="store_true", help=text)
            continue
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        required = default is dataclasses.MISSING
        if not (required or default is None):
            text = f"{text.rstrip('.')} (default {default})."
        parser.add_argument(
            flag, type=kind, required=required, default=None if required else default, help=text
        )


def from_args(cls: type, args: argparse.Namespace, **overrides: Any) -> Any:
    """An instance of `cls` from the parsed flags of its fields, and `overrides`."""
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if hasattr(args, f.name)}
    check_finite(values)
    return cls(**{**values, **overrides})


def check_finite(values: dict[str, Any]) -> None:
    """Refuse a float flag given as inf or nan: float() parses both, and no setting means either
    (an inf learning rate or a nan weight decay would only diverge)."""
    for name, value in values.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise HarnessError(f"--{name.replace('_', '-')} must be a finite number, got {value}")
