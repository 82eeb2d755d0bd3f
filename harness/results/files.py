"""The only code that reads or writes a run's files: result.json, metrics.jsonl, plan.json and
machine.json.

Each carries its format and version: result.json and plan.json as "format"/"version" fields,
metrics.jsonl as its first line. A file of a newer version, or one that is not what its name
says, is refused with one line naming it (exit 2); a file without a version predates versioning
and is read as version 1.

metrics.jsonl is appended a line per step and flushed at once, so a worker that dies loses
nothing already measured; the one line a crash may cut short is dropped when read.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import IO

from harness.errors import HarnessError
from harness.files import write_atomic, write_error
from harness.plan.plan import Plan
from harness.results.records import METRICS_FILE, RESULT_FILE, EvalRecord, Status, StepRecord, is_eval
from harness.results.run_record import RunRecord

PLAN_FILE = "plan.json"
VERSION = 1
RESULT_FORMAT, METRICS_FORMAT, PLAN_FORMAT = "harness.result", "harness.train.metrics", "harness.plan"


def _dump(data: dict) -> str:
    return json.dumps(data, indent=2, default=str) + "\n"


def _json_object(path: Path, what: str) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise HarnessError(f"{path}: not readable as JSON ({exc})") from None
    if not isinstance(data, dict):
        raise HarnessError(f"{path}: expected a JSON object ({what})")
    return data


def _load(path: Path, expected_format: str) -> dict:
    data = _json_object(path, expected_format)
    _check_version(path, data, expected_format)
    return data


def _check_version(path: Path, header: dict, expected_format: str) -> None:
    fmt, version = header.get("format", expected_format), header.get("version", 1)
    if fmt != expected_format:
        raise HarnessError(f"{path}: a {fmt} file where {expected_format} was expected")
    if not isinstance(version, int) or version > VERSION:
        raise HarnessError(
            f"{path}: {expected_format} version {version}; this harness reads up to version {VERSION}"
        )


# result.json


def write_result(run_dir: Path, record: RunRecord) -> None:
    write_atomic(
        run_dir / RESULT_FILE, _dump({"format": RESULT_FORMAT, "version": VERSION, **record.to_dict()})
    )


def read_result(run_dir: Path) -> RunRecord | None:
    """The run's result, or None when it wrote none (it crashed, or never started)."""
    path = run_dir / RESULT_FILE
    if not path.is_file():
        return None
    data = _load(path, RESULT_FORMAT)
    missing = [name for name in RunRecord.required() if name not in data]
    if missing:
        raise HarnessError(f"{path}: no {', '.join(missing)}: not a run's result")
    try:
        Status(data["status"])
    except ValueError:
        raise HarnessError(
            f"{path}: status {data['status']!r}; expected one of {', '.join(Status)}"
        ) from None
    # fields this harness does not know (written by a later version 1) are left out
    return RunRecord(**{k: v for k, v in data.items() if k in RunRecord.field_names()})


# metrics.jsonl


def _header() -> str:
    return json.dumps({"format": METRICS_FORMAT, "version": VERSION}) + "\n"


def _lines(path: Path) -> list[dict]:
    """The records of a metrics file, its header checked; a last line cut short is dropped."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise HarnessError(f"{path}: not readable ({exc})") from None
    raw = text.splitlines()
    records = []
    for number, line in enumerate(raw, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if number == len(raw) and not text.endswith("\n"):
                break  # the line a crash cut short
            raise HarnessError(f"{path}: line {number} is not JSON: not a metrics file") from None
        if "format" in record:
            _check_version(path, record, METRICS_FORMAT)
            continue
        if not isinstance(record.get("step"), int):
            raise HarnessError(f"{path}: line {number} has no step number: not a metrics file")
        records.append(record)
    return records


def read_metrics(run_dir: Path) -> tuple[list[StepRecord], list[EvalRecord]]:
    """A run's steps and evaluations, in order; both empty when it wrote no metrics."""
    path = run_dir / METRICS_FILE
    if not path.is_file():
        return [], []
    steps, evals = [], []
    for record in _lines(path):
        try:
            if is_eval(record):
                evals.append(EvalRecord.from_dict(record))
            else:
                steps.append(StepRecord.from_dict(record))
        except TypeError as exc:
            raise HarnessError(f"{path}: step {record['step']} lacks a field ({exc})") from None
    return steps, evals


def metrics_records(run_dir: Path) -> list[dict]:
    """Every line of a run's metrics as written, steps and evaluations interleaved (tables)."""
    path = run_dir / METRICS_FILE
    return _lines(path) if path.is_file() else []


def write_metrics(run_dir: Path, records: list[dict]) -> None:
    """A whole metrics file at once (an aggregate of instances)."""
    write_atomic(run_dir / METRICS_FILE, _header() + "".join(json.dumps(r) + "\n" for r in records))


class MetricsWriter:
    """Appends a run's records to its metrics.jsonl as they come, each flushed at once."""

    def __init__(self, run_dir: Path, resume_from: int = 0) -> None:
        """resume_from > 0 keeps the records up to that step (the checkpoint's): the resumed
        run rewrites what came after. They are in `kept`."""
        self.path = run_dir / METRICS_FILE
        self.kept: list[dict] = []
        if resume_from and self.path.is_file():
            self.kept = [r for r in _lines(self.path) if r["step"] <= resume_from]
        write_metrics(run_dir, self.kept)
        self._file: IO[str] | None = self.path.open("a")

    def write(self, record: dict) -> None:
        assert self._file is not None, "written after close"
        line = json.dumps(record) + "\n"
        try:
            self._file.write(line)
            self._file.flush()
        except OSError as exc:
            raise write_error(self.path, exc, len(line)) from None

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


# machine.json: the machine a run set was measured on (harness.machine.platform.as_dict)

MACHINE_FILE = "machine.json"


def write_machine(folder: Path, machine: dict) -> None:
    write_atomic(folder / MACHINE_FILE, _dump(machine))


def read_machine(folder: Path) -> dict:
    """The machine record, or {} for a run set saved without one."""
    path = folder / MACHINE_FILE
    return _json_object(path, "a machine record") if path.is_file() else {}


# plan.json


def plan_exists(compare_dir: Path) -> bool:
    return (compare_dir / PLAN_FILE).is_file()


def write_plan(compare_dir: Path, plan: Plan) -> None:
    write_atomic(
        compare_dir / PLAN_FILE, _dump({"format": PLAN_FORMAT, "version": VERSION, **plan.to_dict()})
    )


def read_plan(compare_dir: Path) -> Plan:
    path = compare_dir / PLAN_FILE
    data = _load(path, PLAN_FORMAT)
    for key in ("runs", "outcomes", "preset"):
        if key not in data:
            raise HarnessError(f"{path}: no {key!r}: not a `harness compare` plan")
    try:
        return Plan.from_dict(data)
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        raise HarnessError(f"{path}: not a `harness compare` plan ({type(exc).__name__}: {exc})") from None
