"""MLPerf-style `:::MLLOG` lines in OUTPUT/mllog.txt through the `mlperf-logging` package."""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from pathlib import Path

from mlperf_logging.mllog import constants as C
from mlperf_logging.mllog.mllog import MLLogger

from harness.files import write_error


class _FileHandler(logging.FileHandler):
    def handleError(self, record: logging.LogRecord) -> None:
        # logging would print a traceback and go on; a log that cannot be written (a full disk)
        # ends the run with one line instead
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError):
            raise write_error(Path(self.baseFilename), exc) from None
        super().handleError(record)


@dataclass(frozen=True)
class Submission:
    """The submission metadata MLPerf's checker requires (TrainConfig's submission_* flags)."""

    org: str
    platform: str
    division: str


class MLPerfLog:
    """One run's MLPerf log; a private logger so that several runs in a process never mix."""

    def __init__(self, path: Path | None, append: bool) -> None:
        """path None: a rank other than 0, which logs nothing."""
        self._logger = logging.getLogger(f"harness.mllog.{path.resolve() if path else id(self)}")
        self._logger.propagate = False
        self._logger.setLevel(logging.INFO)
        self._handler: logging.Handler = (
            _FileHandler(path, mode="a" if append else "w") if path else logging.NullHandler()
        )
        self._logger.addHandler(self._handler)
        self._log = MLLogger(logger=self._logger, default_stack_offset=2)
        self._first_sample = 0

    def init(self, submission: Submission, started_ms: int) -> None:
        """What the submission is, and when the set-up began (the log is opened only once the
        set-up has succeeded: bad input writes nothing)."""
        ev = self._log.event
        ev(C.SUBMISSION_BENCHMARK, C.BERT)
        ev(C.SUBMISSION_ORG, submission.org)
        ev(C.SUBMISSION_DIVISION, submission.division)
        ev(C.SUBMISSION_PLATFORM, submission.platform)
        ev(C.SUBMISSION_STATUS, C.RESEARCH)
        # nothing is cached between runs here: each run is a process of its own
        ev(C.CACHE_CLEAR, True)
        self._log.start(C.INIT_START, time_ms=started_ms)

    def run_start(
        self,
        *,
        global_batch_size: int,
        lr: float,
        warmup_steps: int,
        total_steps: int,
        weight_decay: float,
        betas: tuple[float, float],
        eps: float,
        seq_len: int,
        max_predictions: int,
        eval_examples: int,
        seed: int,
        first_sample: int,
    ) -> None:
        """The hyperparameters, the end of the set-up, and the start of the run's one block of
        training (from `first_sample` on a resume). MLPerf's BERT counts epochs in samples."""
        ev = self._log.event
        ev(C.SEED, seed)
        ev(C.GLOBAL_BATCH_SIZE, global_batch_size)
        ev(C.GRADIENT_ACCUMULATION_STEPS, 1)
        ev(C.OPT_NAME, C.LAMB)
        ev(C.OPT_BASE_LR, lr)
        ev(C.OPT_LAMB_BETA_1, betas[0])
        ev(C.OPT_LAMB_BETA_2, betas[1])
        ev(C.OPT_LAMB_EPSILON, eps)
        ev(C.OPT_LAMB_WEIGHT_DECAY, weight_decay)
        ev(C.OPT_LR_WARMUP_STEPS, warmup_steps)
        ev(C.NUM_WARMUP_STEPS, warmup_steps)
        ev(C.START_WARMUP_STEP, 0)
        ev(C.OPT_LR_TRAINING_STEPS, total_steps)
        ev(C.OPT_LAMB_LR_DECAY_POLY_POWER, 1.0)
        ev(C.OPT_GRADIENT_CLIP_NORM, 1.0)
        ev("max_sequence_length", seq_len)
        ev("max_predictions_per_seq", max_predictions)
        ev(C.EVAL_SAMPLES, eval_examples)
        self._log.end(C.INIT_STOP)
        self._log.start(C.RUN_START)
        self._first_sample = first_sample
        remaining = total_steps * global_batch_size - first_sample
        self._log.start(C.BLOCK_START, metadata={C.FIRST_EPOCH_NUM: first_sample, C.SAMPLES_COUNT: remaining})

    def evaluation(self, accuracy: float, samples: int, step: int) -> None:
        at = {C.EPOCH_NUM: samples, C.SAMPLES_COUNT: samples}
        self._log.start(C.EVAL_START, metadata=at)
        self._log.event(C.EVAL_ACCURACY, accuracy, metadata={**at, "step_num": step})
        self._log.end(C.EVAL_STOP, metadata=at)

    def run_stop(self, reached_target: bool, samples: int) -> None:
        """`success` only for a run whose last evaluation reached the target accuracy."""
        self._log.end(
            C.BLOCK_STOP, metadata={C.FIRST_EPOCH_NUM: self._first_sample, C.SAMPLES_COUNT: samples}
        )
        self._log.event(C.TRAIN_SAMPLES, samples)
        self._log.end(C.RUN_STOP, metadata={C.STATUS: C.SUCCESS if reached_target else C.ABORTED})

    def close(self) -> None:
        self._logger.removeHandler(self._handler)
        self._handler.close()
