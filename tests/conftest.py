from pathlib import Path

import pytest

from harness.datasets.synth import SynthSpec, synthesize


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory) -> Path:
    """A small synthetic data set in the MLCommons layout, shared by the tests that only read it."""
    out = tmp_path_factory.mktemp("synth") / "data"
    synthesize(out, SynthSpec(examples=4096, eval_examples=256, shards=10, seed=7))
    return out
