"""model_save read back: a file cut short, weights that do not fit their config.json, and a state
that is not ours are each one line naming the file (exit 2), never a traceback."""

import json

import pytest
import torch

from harness.errors import HarnessError
from harness.models import BertForPreTraining, load_config
from harness.train import checkpoint


@pytest.fixture
def saved(tmp_path):
    cfg = load_config("bert-tiny")
    model = BertForPreTraining(cfg)
    state = checkpoint.TrainingState(
        step=3, phase=1, precision="fp32", optimizer={}, rng=torch.get_rng_state(), complete=True, config={}
    )
    checkpoint.save(tmp_path / "model_save", model, cfg, state)
    return tmp_path / "model_save", model


def cut(path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def test_a_checkpoint_reads_back_whole(saved):
    directory, model = saved
    again = BertForPreTraining(checkpoint.load_config(directory))
    checkpoint.load_weights(directory, again)
    for (name, a), b in zip(model.state_dict().items(), again.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert checkpoint.load_state(directory).step == 3


def test_a_truncated_weights_or_state_file_is_one_line(saved):
    directory, model = saved
    cut(directory / checkpoint.WEIGHTS)
    with pytest.raises(
        HarnessError, match=r"pytorch_model.bin: not readable as a checkpoint file, truncated or"
    ):
        checkpoint.load_weights(directory, model)
    cut(directory / checkpoint.STATE, keep=0.9)
    with pytest.raises(
        HarnessError, match=r"training_state.pt: not readable as a checkpoint file, truncated or"
    ):
        checkpoint.load_state(directory)
    torch.save({"something": "else"}, directory / checkpoint.STATE)
    with pytest.raises(
        HarnessError, match=r"training_state.pt: not the training state of a `harness train` run"
    ):
        checkpoint.load_state(directory)


def test_weights_that_do_not_fit_their_config_are_named(saved):
    directory, _ = saved
    config = json.loads((directory / checkpoint.CONFIG).read_text())
    (directory / checkpoint.CONFIG).write_text(json.dumps({**config, "intermediate_size": 999}))
    model = BertForPreTraining(checkpoint.load_config(directory))
    with pytest.raises(HarnessError) as refused:
        checkpoint.load_weights(directory, model)
    assert str(refused.value).startswith(
        f"{directory}/pytorch_model.bin: does not match {directory}/config.json (size mismatch for "
    )
