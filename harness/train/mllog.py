"""MLPerf-style `:::MLLOG` lines in OUTPUT/mllog.txt through the `mlperf-logging` package."""

from __future__ import annotations

import logging
import sys
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
    ) -> None:
        ev = self._log.event
        ev(C.SUBMISSION_BENCHMARK, C.BERT)
        ev(C.SEED, seed)
        ev(C.GLOBAL_BATCH_SIZE, global_batch_size)
        ev(C.OPT_NAME, C.LAMB)
        ev(C.OPT_BASE_LR, lr)
        ev(C.OPT_LAMB_BETA_1, betas[0])
        ev(C.OPT_LAMB_BETA_2, betas[1])
        ev(C.OPT_LAMB_EPSILON, eps)
        ev(C.OPT_LAMB_WEIGHT_DECAY, weight_decay)
        ev(C.OPT_LR_WARMUP_STEPS, warmup_steps)
        ev(C.OPT_LR_TRAINING_STEPS, total_steps)
        ev(C.OPT_LAMB_LR_DECAY_POLY_POWER, 1.0)
        ev(C.OPT_GRADIENT_CLIP_NORM, 1.0)
        ev("max_sequence_length", seq_len)
        ev("max_predictions_per_seq", max_predictions)
        ev(C.EVAL_SAMPLES, eval_examples)
        self._log.start(C.RUN_START)

    def eval_accuracy(self, accuracy: float, samples: int, step: int) -> None:
        self._log.event(C.EVAL_ACCURACY, accuracy, metadata={C.SAMPLES_COUNT: samples, "step_num": step})

    def run_stop(self, success: bool, samples: int) -> None:
        self._log.event(C.TRAIN_SAMPLES, samples)
        self._log.end(C.RUN_STOP, metadata={C.STATUS: C.SUCCESS if success else C.ABORTED})

    def close(self) -> None:
        self._logger.removeHandler(self._handler)
        self._handler.close()
