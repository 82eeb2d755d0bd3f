"""MLCommons BERT TFRecords as training batches: phase split, hold-out, and exact sharding.

Sharding is explicit. A shard is one (rank, DataLoader worker) pair. Each epoch puts the slices in
a seeded order that every shard computes alike and numbers the records 0..N-1 along it; shard s
keeps the records whose number is s modulo the shard count, up to the largest multiple of the
shard count. Every shard thus reads the same number of examples per epoch, so shards stay in step
across epochs (the DataLoader takes batches from its workers in turn) and no example is read twice
in a pass; at most shards-1 examples, a different few each epoch, are left out. The plain
`tfrecord` dataset, by contrast, repeats the whole file in every worker.
"""

from __future__ import annotations

import hashlib
import itertools
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from harness.datasets.records import DataError, Shape, count_records, decode_example, iter_records, read_shape
from harness.datasets.schema import ALL_FEATURES, EVAL_DIR, NSP_FEATURE, PHASE_DIRS, shard_files
from harness.errors import HarnessError
from harness.files import drop_inherited_locks


@dataclass(frozen=True)
class RecordSlice:
    """Records [start, stop) of one TFRecord file; stop None means to the end of the file."""

    path: str
    start: int = 0
    stop: int | None = None

    def resolved(self) -> RecordSlice:
        """The same slice with `stop` counted (a scan of the file's framing, no payloads)."""
        if self.stop is not None:
            return self
        return RecordSlice(self.path, self.start, count_records(Path(self.path)))

    def __len__(self) -> int:
        if self.stop is None:
            raise ValueError("resolve the slice first")
        return self.stop - self.start


@dataclass(frozen=True)
class PhaseData:
    """Where a phase's training and evaluation examples come from."""

    train: tuple[RecordSlice, ...]
    eval: tuple[RecordSlice, ...]
    eval_source: str
    """"DATASET_DIR/eval" or a description of the held-out slice."""
    shape: Shape
    eval_shape: Shape

    def fingerprint(self) -> str:
        """The data's identity, cheap to take: each file's name, size and first 64 KiB (its first
        records), and the slices read. A data set made again at the same path with other content
        differs; one made again alike does not."""
        digest = hashlib.sha256()
        for s in (*self.train, *self.eval):
            path = Path(s.path)
            digest.update(f"{path.name} {path.stat().st_size} {s.start} {s.stop}\n".encode())
            with path.open("rb") as f:
                digest.update(f.read(65536))
        return digest.hexdigest()[:16]


def phase_slices(dataset_dir: Path, phase: int, fraction: float) -> list[RecordSlice]:
    """Phase 1: the first `fraction` of seq_128's ordered shard list; phase 2: the rest of seq_512.

    With several files the split is by file, so that matching shards of the two lengths (which
    MLCommons cuts from the same documents) never meet; with one file it is by record index.
    """
    files = shard_files(dataset_dir / PHASE_DIRS[phase])
    if len(files) == 1:
        total = count_records(files[0])
        if total < 2:
            raise DataError(f"{files[0]}: {total} records, cannot split it between two phases")
        cut = min(max(round(total * fraction), 1), total - 1)
        part = RecordSlice(str(files[0]), 0, cut) if phase == 1 else RecordSlice(str(files[0]), cut)
        return [part]
    other = dataset_dir / PHASE_DIRS[3 - phase]
    if other.is_dir() and len(shard_files(other)) != len(files):
        raise DataError(
            f"{dataset_dir}: {PHASE_DIRS[1]} and {PHASE_DIRS[2]} hold different numbers of "
            "part-* files; the phase split by shard needs matching shard lists"
        )
    cut = min(max(round(len(files) * fraction), 1), len(files) - 1)
    chosen = files[:cut] if phase == 1 else files[cut:]
    return [RecordSlice(str(f)) for f in chosen]


def resolve_phase_data(dataset_dir: Path, phase: int, fraction: float, eval_examples: int) -> PhaseData:
    """Training slices for the phase and evaluation slices: DATASET_DIR/eval if present, else a
    fixed hold-out of the last `eval_examples` records of the phase's last slice."""
    train = [s.resolved() for s in phase_slices(dataset_dir, phase, fraction)]
    shape = read_shape(Path(train[0].path))
    eval_dir = dataset_dir / EVAL_DIR
    if eval_dir.exists():
        eval_slices = [RecordSlice(str(f)).resolved() for f in shard_files(eval_dir)]
        source = str(eval_dir)
    else:
        last = train[-1]
        stop = last.stop
        if len(last) <= eval_examples:
            raise DataError(
                f"{last.path}: {stop - last.start} records, too few to hold out "
                f"{eval_examples} for evaluation (add DATASET_DIR/eval or lower "
                "--eval-examples)"
            )
        cut = stop - eval_examples
        train[-1] = RecordSlice(last.path, last.start, cut)
        eval_slices = [RecordSlice(last.path, cut, stop)]
        source = f"hold-out: records {cut}..{stop - 1} of {last.path} (no {eval_dir})"
    eval_shape = read_shape(Path(eval_slices[0].path))
    return PhaseData(tuple(train), tuple(eval_slices), source, shape, eval_shape)


class ShardedExamples(IterableDataset):
    """Batches of MLCommons examples for one rank, split exactly among its DataLoader workers.

    Each epoch reshuffles the slice order (the same permutation on every shard, so the deal stays
    disjoint) and shuffles examples through a per-shard buffer. Everything is seeded, so a run
    replays the same batches: resuming skips the batches already consumed. A worker never raises:
    bad data becomes an {"error": message} item that the main process turns into one clean line.
    """

    def __init__(
        self,
        slices: tuple[RecordSlice, ...],
        shape: Shape,
        batch_size: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        shuffle_buffer: int = 2048,
        epochs: int | None = None,
        vocab_size: int | None = None,
    ) -> None:
        super().__init__()
        self.slices = tuple(s.resolved() for s in slices)
        self.shape, self.batch_size = shape, batch_size
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.shuffle_buffer, self.epochs, self.vocab_size = shuffle_buffer, epochs, vocab_size

    def _shard(self) -> tuple[int, int]:
        info = get_worker_info()
        workers, worker = (info.num_workers, info.id) if info else (1, 0)
        return self.rank * workers + worker, self.world_size * workers

    def examples(self, epoch: int, shard: int, shards: int) -> Iterator[dict[str, np.ndarray]]:
        """This shard's examples of one epoch, in slice order (before the shuffle buffer)."""
        order = np.random.default_rng([self.seed, epoch]).permutation(len(self.slices))
        end = sum(len(s) for s in self.slices) // shards * shards  # equal counts for all shards
        first = 0  # epoch-wide number of the current slice's first record
        for i in order:
            if first >= end:
                return
            s = self.slices[i]
            path = Path(s.path)

            def take(index: int, s: RecordSlice = s, first: int = first) -> bool:
                n = first + index - s.start  # the record's number in this epoch
                return index >= s.start and n % shards == shard and n < end

            for index, data in iter_records(path, take=take, stop=s.stop):
                yield decode_example(data, path, index, self.shape, self.vocab_size)
            first += len(s)

    def _shuffled(self, items: Iterator[dict], rng: np.random.Generator) -> Iterator[dict]:
        if self.shuffle_buffer <= 1:
            yield from items
            return
        buffer: list[dict] = []
        for item in items:
            if len(buffer) < self.shuffle_buffer:
                buffer.append(item)
                continue
            j = int(rng.integers(len(buffer)))
            buffer[j], item = item, buffer[j]
            yield item
        rng.shuffle(buffer)  # type: ignore[arg-type]
        yield from buffer

    def __iter__(self) -> Iterator[dict]:
        shard, shards = self._shard()
        batch: list[dict] = []
        try:
            epochs = itertools.count() if self.epochs is None else range(self.epochs)
            for epoch in epochs:
                rng = np.random.default_rng([self.seed, epoch, shard, 1])
                for example in self._shuffled(self.examples(epoch, shard, shards), rng):
                    batch.append(example)
                    if len(batch) == self.batch_size:
                        yield collate(batch)
                        batch = []
            if batch:
                yield collate(batch)
        except (DataError, OSError) as exc:
            yield {"error": str(exc)}


def collate(examples: list[dict[str, np.ndarray]]) -> dict[str, torch.Tensor]:
    batch = {name: torch.from_numpy(np.stack([e[name] for e in examples])) for name in ALL_FEATURES}
    batch[NSP_FEATURE] = batch[NSP_FEATURE].reshape(-1)
    return batch


def checked(batch: dict) -> dict[str, torch.Tensor]:
    """Raise the worker's data error in the main process as one clean line."""
    if "error" in batch:
        raise DataError(batch["error"])
    return batch


def training_loader(
    data: PhaseData,
    batch_size: int,
    seed: int,
    workers: int,
    vocab_size: int,
    rank: int = 0,
    world_size: int = 1,
    shuffle_buffer: int = 2048,
) -> DataLoader:
    """An endless stream of training batches, loaded by `workers` background processes.

    Batches are built inside the workers (no per-example collation in the training process).
    There is no pinned memory on a CPU-only build: pinning only speeds host-to-device copies.
    """
    if workers < 0:
        raise HarnessError(f"--data-workers must be >= 0, got {workers}")
    shards = world_size * max(workers, 1)
    per_shard = sum(len(s) for s in data.train) // shards
    if batch_size > per_shard:
        # a batch longer than its shard's epoch would hold the same example twice
        raise HarnessError(
            f"--batch-size {batch_size}: larger than the {per_shard} training examples each of the "
            f"{shards} data shard(s) holds ({data.train[0].path}...); lower it or use more data"
        )
    dataset = ShardedExamples(
        data.train,
        data.shape,
        batch_size,
        seed,
        rank,
        world_size,
        shuffle_buffer=shuffle_buffer,
        vocab_size=vocab_size,
    )
    return DataLoader(
        dataset,
        batch_size=None,
        num_workers=workers,
        prefetch_factor=4 if workers else None,
        persistent_workers=workers > 0,
        worker_init_fn=_init_worker,
        # A private generator: the loader must not draw from the global RNG that dropout uses,
        # or resuming would shift the dropout masks.
        generator=torch.Generator().manual_seed(seed),
    )


def _init_worker(worker_id: int) -> None:
    # the lock on the run folder belongs to the training process alone (harness.files.folder_lock)
    drop_inherited_locks()
    # The loader shares the training threads' cores: at normal priority its reading ahead (the
    # shuffle buffer, four batches of prefetch) took CPU from the GEMMs: a bf16 BERT-Large train
    # step ran 5.8% slower than the bare step, 0.7% on idle cycles only (docs/fused.md), its data
    # wait still 0.04% of the step. Where it cannot keep ahead, the step's data wait says so.
    os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))


def eval_batches(
    data: PhaseData, batch_size: int, max_examples: int, vocab_size: int | None = None
) -> Iterator[dict[str, torch.Tensor]]:
    """A fixed set of `max_examples` evaluation examples, read in the training process."""
    dataset = ShardedExamples(
        data.eval, data.eval_shape, batch_size, seed=0, shuffle_buffer=0, epochs=1, vocab_size=vocab_size
    )
    seen = 0
    for batch in dataset:
        batch = checked(batch)
        room = max_examples - seen
        if room <= 0:
            return
        if len(batch[NSP_FEATURE]) > room:
            batch = {k: v[:room] for k, v in batch.items()}
        seen += len(batch[NSP_FEATURE])
        yield batch
