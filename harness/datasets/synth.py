"""Synthetic MLCommons-format pre-training data with structure a small BERT can learn.

Documents come from a seeded topic + Markov process over the 30522-token vocabulary: each document
has a topic with its own lexicon of word pieces, uses a small Zipf-distributed vocabulary drawn from
it, and each token is, with probability `FOLLOW`, the fixed successor of the previous token. A
masked token is therefore predictable from the rest of its sequence (MLM loss can fall far below
the unigram entropy), and a random "sentence B" shares few tokens with A (next-sentence prediction
beats chance).

Examples are cut and masked as BERT's create_pretraining_data does: [CLS] A [SEP] B [SEP], B the
true continuation or a random segment (50/50), 15% of tokens masked (80% [MASK], 10% random,
10% kept). Shard i of seq_128 and shard i of seq_512 are cut from the same document stream, as in
MLCommons, so a split by shard keeps the two phases' documents apart.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import math
import os
import shutil
import signal
import tempfile
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness.datasets.schema import CLS_ID, EVAL_DIR, FIRST_WORDPIECE_ID, MASK_ID, PHASE_DIRS, SEP_ID
from harness.errors import HarnessError
from harness.files import check_folder, writable_home

VOCAB_SIZE = 30522
TOPICS = 4
"""Few topics, so that bert-tiny learns them within a few hundred steps; a random sentence B then
comes from another topic three times in four, which next-sentence prediction can pick up."""
LEXICON = 64
"""Word pieces per topic; topics draw disjoint lexicons."""
DOC_VOCAB = 16
"""Word pieces one document uses, drawn from its topic's lexicon."""
FOLLOW = 0.5
"""Probability that a token is its predecessor's fixed successor."""
MASK_RATE, MAX_PREDICTIONS = 0.15, 76


@dataclass(frozen=True)
class SynthSpec:
    """What `harness data synth` writes."""

    examples: int = 8192
    """Training examples at seq 128 (seq 512 gets a quarter: ~the same number of tokens)."""
    eval_examples: int = 512
    """Examples in DATASET_DIR/eval, at seq 512 as in MLCommons."""
    shards: int = 10
    """part-* files per length; 10 makes the 90/10 phase split fall on a file boundary."""
    seed: int = 12345
    """Everything written is a function of this seed."""
    max_predictions: int = MAX_PREDICTIONS
    """Masked-LM slots per example (MLCommons: 76 at both lengths)."""

    def validate(self) -> None:
        if self.examples < 4 * self.shards:
            raise HarnessError(
                f"--examples must be at least {4 * self.shards} (4 per shard at "
                f"seq 512 x {self.shards} shards), got {self.examples}"
            )
        if self.eval_examples < 1 or self.shards < 1:
            raise HarnessError("--eval-examples and --shards must be >= 1")
        if self.max_predictions < 1:
            raise HarnessError(f"--max-predictions must be >= 1, got {self.max_predictions}")


class Language:
    """The seeded generative process shared by every shard of one data set."""

    def __init__(self, seed: int) -> None:
        rng = np.random.default_rng([seed, 0])
        pieces = rng.permutation(np.arange(FIRST_WORDPIECE_ID, VOCAB_SIZE))
        self.lexicons = pieces[: TOPICS * LEXICON].reshape(TOPICS, LEXICON)
        zipf = 1.0 / np.arange(1, LEXICON + 1)
        self.zipf = zipf / zipf.sum()
        doc_zipf = 1.0 / np.arange(1, DOC_VOCAB + 1)
        self.doc_zipf = doc_zipf / doc_zipf.sum()
        # Each token's successor stays inside its topic's lexicon.
        self.successor: dict[int, int] = {}
        for lexicon in self.lexicons:
            for a, b in zip(lexicon, rng.permutation(lexicon), strict=True):
                self.successor[int(a)] = int(b)

    def document(self, rng: np.random.Generator) -> list[list[int]]:
        """A document: a topic and a small vocabulary from it, then 4-24 sentences of 6-40 tokens."""
        lexicon = self.lexicons[rng.integers(TOPICS)]
        vocab = lexicon[rng.choice(LEXICON, size=DOC_VOCAB, replace=False, p=self.zipf)]
        sentences = []
        prev = int(vocab[0])
        # The chain runs on across sentence boundaries, so a true "sentence B" tends to continue
        # where A stopped and a random one does not.
        for _ in range(int(rng.integers(4, 25))):
            n = int(rng.integers(6, 41))
            fresh = vocab[rng.choice(DOC_VOCAB, size=n, p=self.doc_zipf)].tolist()
            follow = (rng.random(n) < FOLLOW).tolist()
            tokens = []
            for i in range(n):
                prev = self.successor[prev] if follow[i] else fresh[i]
                tokens.append(prev)
            sentences.append(tokens)
        return sentences


def _truncate_pair(a: list[int], b: list[int], limit: int, rng: np.random.Generator) -> None:
    while len(a) + len(b) > limit:
        longer = a if len(a) > len(b) else b
        del longer[0 if rng.random() < 0.5 else -1]


def _mask(tokens: list[int], max_pred: int, rng: np.random.Generator):
    candidates = [i for i, t in enumerate(tokens) if t not in (CLS_ID, SEP_ID)]
    count = min(max_pred, max(1, round(len(tokens) * MASK_RATE)))
    positions = sorted(rng.choice(candidates, size=min(count, len(candidates)), replace=False).tolist())
    masked = list(tokens)
    for p in positions:
        r = rng.random()
        if r < 0.8:
            masked[p] = MASK_ID
        elif r < 0.9:
            masked[p] = int(rng.integers(FIRST_WORDPIECE_ID, VOCAB_SIZE))
    return masked, positions, [tokens[p] for p in positions]


def _examples(
    language: Language, docs: np.random.Generator, rng: np.random.Generator, seq_len: int, max_pred: int
):
    """Endless (features, masked targets) of one length. Documents come from `docs` alone, so two
    lengths cut from generators with the same seed read the same documents in the same order;
    cutting, random sentences B and masking draw from `rng`."""
    limit = seq_len - 3
    while True:
        doc = language.document(docs)
        i = 0
        while i < len(doc):
            target = limit if rng.random() > 0.1 else int(rng.integers(2, limit + 1))
            chunk, length = [], 0
            while i < len(doc) and length < target:
                chunk.append(doc[i])
                length += len(doc[i])
                i += 1
            if len(chunk) < 2:
                continue
            split = int(rng.integers(1, len(chunk)))
            a = [t for s in chunk[:split] for t in s]
            is_random = rng.random() < 0.5
            if is_random:
                other = language.document(rng)
                start = int(rng.integers(len(other)))
                b = [t for s in other[start:] for t in s][: max(1, target - len(a))]
                i -= len(chunk) - split  # the unused true continuation stays for the next pair
            else:
                b = [t for s in chunk[split:] for t in s]
            _truncate_pair(a, b, limit, rng)
            tokens = [CLS_ID, *a, SEP_ID, *b, SEP_ID]
            segments = [0] * (len(a) + 2) + [1] * (len(b) + 1)
            masked, positions, ids = _mask(tokens, max_pred, rng)
            pad, pred_pad = seq_len - len(tokens), max_pred - len(positions)
            yield (
                {
                    "input_ids": (masked + [0] * pad, "int"),
                    "input_mask": ([1] * len(tokens) + [0] * pad, "int"),
                    "segment_ids": (segments + [0] * pad, "int"),
                    "masked_lm_positions": (positions + [0] * pred_pad, "int"),
                    "masked_lm_ids": (ids + [0] * pred_pad, "int"),
                    "masked_lm_weights": ([1.0] * len(positions) + [0.0] * pred_pad, "float"),
                    "next_sentence_labels": ([int(is_random)], "int"),
                },
                ids,
            )


def _write_shard(path: Path, stream, count: int, targets: Counter) -> None:
    # Imported here: the tfrecord package loads torch, which the commands that only build their
    # parser (report, gate) have no use for.
    from tfrecord.writer import TFRecordWriter

    writer = TFRecordWriter(str(path))
    try:
        for _ in range(count):
            features, ids = next(stream)
            targets.update(ids)
            writer.write(features)
    finally:
        writer.close()


GENERATOR_VERSION = 3
"""Raised whenever the process or synth.json's content changes, so caches of data made by an older
generator are not reused (3: synth.json lists every file with its size and digest)."""

WRITER = ".synth-writer"
"""In a staging folder while it is written: the writer's pid and start time, by which a later
synth knows the folder for its own kind's and its writer for dead."""


def _process() -> dict:
    """The generator's own constants: data made with other ones is other data, whatever the spec."""
    return {
        "generator_version": GENERATOR_VERSION,
        "topics": TOPICS,
        "lexicon": LEXICON,
        "doc_vocab": DOC_VOCAB,
        "follow": FOLLOW,
    }


def synthesize(output: Path, spec: SynthSpec, reuse: bool = False) -> dict:
    """Write the layout into `output` (which must not hold files) and return its description.
    With `reuse`, a data set already at `output` that was written with the same spec, and whose
    files are those its synth.json lists, is kept."""
    spec.validate()
    check_folder(output, "--output")
    if reuse and (output / "synth.json").is_file():
        try:
            info = json.loads((output / "synth.json").read_text())
        except (OSError, ValueError) as exc:  # ValueError: not JSON, or not text
            raise HarnessError(
                f"{output / 'synth.json'}: unreadable ({exc}); remove {output} to have it written again"
            ) from None
        if isinstance(info, dict) and all(
            info.get(k) == v for k, v in {**spec.__dict__, **_process()}.items()
        ):
            _verify(output, info["files"])
            return info
        raise HarnessError(
            f"--output {output}: holds synthetic data written with other settings "
            "(see its synth.json); choose another directory"
        )
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise HarnessError(f"--output {output}: exists and is not an empty directory")
    output.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_staging(output)
    # Write beside the target and rename at the end: an interrupted run leaves no half data set.
    tmp = Path(tempfile.mkdtemp(prefix=f".{output.name}.", dir=output.parent))
    try:
        with _terminate_cleans_up():
            tmp.chmod(0o755)  # mkdtemp makes it private; a data set is meant to be shared
            (tmp / WRITER).write_text(f"{os.getpid()} {_started(os.getpid())}\n")
            info = _write(tmp, spec)
            (tmp / WRITER).unlink()
            if output.exists():
                output.rmdir()
            tmp.rename(output)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return info


def _write(tmp: Path, spec: SynthSpec) -> dict:
    """The data set's files and synth.json, written into `tmp`; returns synth.json's content."""
    language = Language(spec.seed)
    targets: Counter = Counter()
    counts = {128: spec.examples, 512: max(spec.examples // 4, spec.shards)}
    for seq_len, total in counts.items():
        directory = tmp / PHASE_DIRS[1 if seq_len == 128 else 2]
        directory.mkdir()
        for shard in range(spec.shards):
            # The same documents for shard i at both lengths (seeded by seed and shard).
            stream = _examples(
                language,
                np.random.default_rng([spec.seed, 1, shard]),
                np.random.default_rng([spec.seed, 3, shard, seq_len]),
                seq_len,
                spec.max_predictions,
            )
            n = total * (shard + 1) // spec.shards - total * shard // spec.shards
            name = f"part-{shard:05d}-of-{spec.shards:05d}" + ("_128" if seq_len == 128 else "")
            _write_shard(directory / name, stream, n, targets if seq_len == 128 else Counter())
    (tmp / EVAL_DIR).mkdir()
    stream = _examples(
        language,
        np.random.default_rng([spec.seed, 2]),
        np.random.default_rng([spec.seed, 4]),
        512,
        spec.max_predictions,
    )
    _write_shard(tmp / EVAL_DIR / "part-00000-of-00001", stream, spec.eval_examples, Counter())
    total_targets = sum(targets.values())
    probs = np.array(list(targets.values()), dtype=np.float64) / total_targets
    info = {
        "generator": "harness synthetic topic-Markov BERT data",
        **spec.__dict__,
        **_process(),
        "examples_seq_512": counts[512],
        "vocab_size": VOCAB_SIZE,
        # Baselines a trained model must beat: the loss of predicting every masked token from
        # the unigram distribution (nats), and the accuracy of always predicting the most
        # frequent one.
        "mlm_unigram_entropy_nats": float(-(probs * np.log(probs)).sum()),
        "mlm_majority_accuracy": float(probs.max()),
        "mlm_uniform_loss_nats": math.log(VOCAB_SIZE),
    }
    info["files"] = {
        str(f.relative_to(tmp)): {"bytes": f.stat().st_size, "sha256": _digest(f)}
        for f in sorted(tmp.rglob("part-*"))
    }
    (tmp / "synth.json").write_text(json.dumps(info, indent=2) + "\n")
    return info


def _digest(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _verify(output: Path, files: dict[str, dict]) -> None:
    """Refuse a data set whose files are not those its synth.json lists: one deleted, cut short
    or changed would otherwise train on less or other data under the same name."""
    for name, recorded in files.items():
        path = output / name
        if not path.is_file():
            problem = "is missing"
        elif path.stat().st_size != recorded["bytes"]:
            problem = f"has {path.stat().st_size} bytes, not the {recorded['bytes']} synth.json records"
        elif _digest(path) != recorded["sha256"]:
            problem = "differs from what synth.json records"
        else:
            continue
        raise HarnessError(
            f"{path}: {problem}; the data set in {output} is damaged: remove it to write it again"
        )


def _started(pid: int) -> str | None:
    """A process's start time (clock ticks since boot), None if there is no such process: with
    its pid, it tells a live writer from a dead one whose pid was reused."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22; the name before ")" may hold spaces


def _remove_stale_staging(output: Path) -> None:
    """Remove the staging folders of `output` that a synth killed with SIGKILL left: those its
    writer file proves a synth made, and whose writer is gone. Nothing else is touched."""
    for folder in output.parent.glob(f".{glob.escape(output.name)}.*"):
        try:
            pid, started = (folder / WRITER).read_text().split()
            alive = _started(int(pid)) == started
        except (OSError, ValueError):
            continue  # not a staging folder of ours, or one just being made
        if not alive:
            shutil.rmtree(folder, ignore_errors=True)


def _terminate(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


@contextlib.contextmanager
def _terminate_cleans_up() -> Iterator[None]:
    """SIGTERM raises SystemExit, as SIGINT raises KeyboardInterrupt, so that the staging folder
    is removed on the way out instead of left behind (SIGKILL's is left to the next synth)."""
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may set a handler
        return
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


def cached_default(examples: int) -> Path:
    """The embedded default data set: synthetic, written once per size under $HARNESS_HOME/data
    (keyed by generator version, so data an older generator made is never reused) and reused."""
    path = writable_home() / "data" / f"synth-v{GENERATOR_VERSION}-{examples}"
    synthesize(path, SynthSpec(examples=examples), reuse=True)
    return path
