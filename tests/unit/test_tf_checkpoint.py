"""TensorFlow checkpoints without TensorFlow: the fixture tensorflow-cpu wrote
(tests/fixtures/tf_checkpoint/make.py) read as TensorFlow reads it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from harness.tf_checkpoint.bundle import Bundle

FIXTURE = Path(__file__).parents[1] / "fixtures" / "tf_checkpoint"
PREFIX = FIXTURE / "model.ckpt-1234"


@pytest.fixture(scope="module")
def tf_reading() -> dict[str, np.ndarray]:
    with np.load(FIXTURE / "tf_reading.npz") as npz:
        return dict(npz)


def test_every_tensor_reads_as_tensorflow_reads_it(tf_reading):
    bundle = Bundle(PREFIX)
    assert set(bundle.entries) == set(tf_reading)
    for name, theirs in tf_reading.items():
        ours = bundle.read(name)
        assert (ours.dtype, ours.shape) == (theirs.dtype, theirs.shape), name
        assert np.array_equal(ours, theirs), name
