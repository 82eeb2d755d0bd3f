"""TensorFlow checkpoints without TensorFlow: the fixture tensorflow-cpu wrote
(tests/fixtures/tf_checkpoint/make.py) read as TensorFlow reads it, converted to a model_save
whose tensors sit where MLCommons' names say, and every damaged or mismatched input refused in
one line with nothing written."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from harness_cli import call
from mlcommons_writer import TF_FIXTURE as FIXTURE
from mlcommons_writer import mlcommons_download

from harness.errors import HarnessError
from harness.models import NAMED_CONFIGS, BertConfig, BertForPreTraining
from harness.tf_checkpoint.bert import architecture, prefix_of
from harness.tf_checkpoint.bundle import Bundle
from harness.train import checkpoint

PREFIX = FIXTURE / "model.ckpt-1234"
CONFIG = json.loads((FIXTURE / "bert_config.json").read_text())


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


def mapping(layers: int) -> list[tuple[str, str]]:
    """MLCommons' variable names against Hugging Face's parameter names, written out."""
    pairs = [
        (f"bert/embeddings/{kind}_embeddings", f"bert.embeddings.{kind}_embeddings.weight")
        for kind in ("word", "position", "token_type")
    ]
    norms = ["bert/embeddings/LayerNorm", "cls/predictions/transform/LayerNorm"]
    dense = ["bert/pooler/dense", "cls/predictions/transform/dense"]
    for n in range(layers):
        layer = f"bert/encoder/layer_{n}"
        dense += [f"{layer}/attention/self/{p}" for p in ("query", "key", "value")]
        dense += [f"{layer}/attention/output/dense", f"{layer}/intermediate/dense", f"{layer}/output/dense"]
        norms += [f"{layer}/attention/output/LayerNorm", f"{layer}/output/LayerNorm"]
    for scope in norms:
        hf = scope.replace("/", ".").replace("layer_", "layer.")
        pairs += [(f"{scope}/gamma", f"{hf}.weight"), (f"{scope}/beta", f"{hf}.bias")]
    for scope in dense:
        hf = scope.replace("/", ".").replace("layer_", "layer.")
        pairs += [(f"{scope}/kernel", f"{hf}.weight"), (f"{scope}/bias", f"{hf}.bias")]
    return [
        *pairs,
        ("cls/predictions/output_bias", "cls.predictions.bias"),
        ("cls/seq_relationship/output_weights", "cls.seq_relationship.weight"),
        ("cls/seq_relationship/output_bias", "cls.seq_relationship.bias"),
    ]


def test_the_model_save_loads_with_each_tensor_where_its_name_maps(capsys, tmp_path, tf_reading):
    transformers = pytest.importorskip("transformers")
    out = tmp_path / "model_save"
    done = call(
        capsys, "convert-checkpoint", PREFIX, "--config", FIXTURE / "bert_config.json", "--output", out
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        f"{out}: 46 variables of {PREFIX} (global_step 1234)",
        "left out: 92 optimizer slots (adam_m, adam_v); global_step",
    ]
    pairs = mapping(CONFIG["num_hidden_layers"])
    weights = {n for n in tf_reading if n != "global_step" and not n.endswith(("/adam_m", "/adam_v"))}
    assert {tf for tf, _ in pairs} == weights and len(pairs) == 46

    hf, info = transformers.BertForPreTraining.from_pretrained(out, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    loaded = hf.state_dict()
    for tf, name in pairs:
        expected = tf_reading[tf].T if tf.endswith("/kernel") else tf_reading[tf]
        assert np.array_equal(loaded[name].numpy(), expected), (tf, name)

    # our model, with query, key and value fused in that order
    ours = BertForPreTraining(checkpoint.load_config(out))
    checkpoint.load_weights(out, ours)
    parts = [
        tf_reading[f"bert/encoder/layer_1/attention/self/{p}/kernel"].T for p in ("query", "key", "value")
    ]
    qkv = torch.from_numpy(np.concatenate(parts))
    assert torch.equal(ours.bert.encoder.layer[1].attention.self.qkv.weight.detach(), qkv)
    assert checkpoint.load_config(out) == BertConfig.from_dict(CONFIG, "fixture")
    checkpoint.require_phase1_result(out)  # phase 2's --checkpoint takes it
    assert json.loads((out / checkpoint.CONVERTED).read_text()) == {
        "tf_checkpoint": str(PREFIX.resolve()),
        "global_step": 1234,
    }


def copied(tmp_path: Path) -> Path:
    """A writable copy of the fixture; returns its prefix."""
    folder = tmp_path / "ckpt"
    shutil.copytree(FIXTURE, folder)
    return folder / PREFIX.name


def config(tmp_path: Path, **changes: int) -> Path:
    path = tmp_path / "bert_config.json"
    path.write_text(json.dumps({**CONFIG, **changes}))
    return path


def flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def cut(path: Path, keep: float) -> None:
    path.write_bytes(path.read_bytes()[: int(path.stat().st_size * keep)])


DATA = f"{PREFIX.name}.data-00000-of-00001"
KERNEL = "bert/encoder/layer_1/output/dense/kernel"


def corrupt_data(tmp_path: Path) -> tuple[Path, Path]:
    prefix = copied(tmp_path)
    entry = Bundle(prefix).entries[KERNEL]
    flip_byte(prefix.with_name(DATA), entry.offset + entry.size // 2)
    return prefix, FIXTURE / "bert_config.json"


def truncated_data(tmp_path: Path) -> tuple[Path, Path]:
    prefix = copied(tmp_path)
    cut(prefix.with_name(DATA), 0.5)
    return prefix, FIXTURE / "bert_config.json"


def missing_data(tmp_path: Path) -> tuple[Path, Path]:
    prefix = copied(tmp_path)
    prefix.with_name(DATA).unlink()
    return prefix, FIXTURE / "bert_config.json"


def corrupt_index(tmp_path: Path) -> tuple[Path, Path]:
    prefix = copied(tmp_path)
    flip_byte(Path(f"{prefix}.index"), 100)
    return prefix, FIXTURE / "bert_config.json"


def truncated_index(tmp_path: Path) -> tuple[Path, Path]:
    prefix = copied(tmp_path)
    cut(Path(f"{prefix}.index"), 0.9)
    return prefix, FIXTURE / "bert_config.json"


BAD = {
    "a flipped bit": (corrupt_data, rf"{DATA}: {KERNEL} \(bytes \d+\.\.\d+\) fails its CRC32C check"),
    "a truncated shard": (
        truncated_data,
        rf"{DATA}: \d+ bytes, too short for bert/\S+ at bytes .*: truncated",
    ),
    "a missing shard": (missing_data, rf"{DATA}: missing; the checkpoint's data shard 0 holds bert/"),
    "a corrupt index": (
        corrupt_index,
        r"\.index: corrupt checkpoint index \(the block at byte 0 fails its CRC32C",
    ),
    "a truncated index": (truncated_index, r"\.index: not a TensorFlow checkpoint index .*truncated"),
    "a missing variable": (
        lambda tmp: (PREFIX, config(tmp, num_hidden_layers=3)),
        r"no variable bert/encoder/layer_2/attention/self/query/kernel, which the model's architecture has",
    ),
    "an unexpected variable": (
        lambda tmp: (PREFIX, config(tmp, num_hidden_layers=1)),
        r"variable bert/encoder/layer_1/attention/output/LayerNorm/beta maps onto no parameter of the model "
        r"\(nor do 47 more\)",
    ),
    "a wrong shape": (
        lambda tmp: (PREFIX, config(tmp, intermediate_size=32)),
        r"variable bert/encoder/layer_0/intermediate/dense/kernel has shape \[16, 64\]; the model's "
        r"architecture expects \[16, 32\]",
    ),
    "no checkpoint": (
        lambda tmp: (tmp / "model.ckpt-9", FIXTURE / "bert_config.json"),
        r"model.ckpt-9: no model.ckpt-9.index beside it; not the prefix of a TensorFlow checkpoint",
    ),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_input_is_one_line_exit_2_and_nothing_written(case, capsys, tmp_path):
    make, message = BAD[case]
    prefix, config_file = make(tmp_path)
    out = tmp_path / "converted" / "model_save"
    done = call(capsys, "convert-checkpoint", prefix, "--config", config_file, "--output", out)
    assert done.returncode == 2 and done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("harness: "), done.stderr
    assert re.search(message, lines[0]), lines[0]
    assert not (tmp_path / "converted").exists()


def test_an_output_folder_that_holds_files_is_left_alone(capsys, tmp_path):
    out = tmp_path / "model_save"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    done = call(
        capsys, "convert-checkpoint", PREFIX, "--config", FIXTURE / "bert_config.json", "--output", out
    )
    assert (done.returncode, done.stderr) == (
        2,
        f"harness: --output {out}: exists and is not an empty directory\n",
    )
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


def test_a_prefix_takes_its_architecture_from_model_or_a_bert_config_json_near_it(tmp_path):
    prefix, _ = mlcommons_download(tmp_path / "wiki")  # bert_config.json in the folder above
    assert prefix_of(prefix) == prefix == prefix_of(Path(f"{prefix}.index"))
    assert prefix_of(prefix.parent) is None
    assert architecture(prefix, None) == BertConfig.from_dict(CONFIG, "fixture")
    assert architecture(prefix, "bert-tiny") == NAMED_CONFIGS["bert-tiny"]
    (tmp_path / "wiki" / "bert_config.json").rename(prefix.parent / "bert_config.json")
    assert architecture(prefix, None) == BertConfig.from_dict(CONFIG, "fixture")
    (prefix.parent / "bert_config.json").unlink()
    with pytest.raises(HarnessError, match=r"without a bert_config.json beside it .* --model bert_config"):
        architecture(prefix, None)
