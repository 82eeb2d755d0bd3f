"""Phase 2 trains from a TensorFlow checkpoint's prefix, as MLPerf's phase 2 starts from MLCommons'
tf1_ckpt/model.ckpt-28252: --checkpoint takes the prefix, and the architecture comes from the
bert_config.json in the folder above it, where MLCommons' download puts it."""

import numpy as np
import torch
from harness_cli import launch, result
from mlcommons_writer import TF_FIXTURE, mlcommons_download


def test_phase2_trains_from_a_tensorflow_checkpoint(capfd, tmp_path):
    prefix, data = mlcommons_download(tmp_path / "wiki")
    out = tmp_path / "p2"
    proc = launch(
        capfd,
        "train",
        "--phase",
        2,
        "--precision",
        "fp32",
        "--dataset",
        data,
        "--output",
        out,
        "--checkpoint",
        prefix,
        "--steps",
        3,
        "--batch-size",
        4,
        "--eval-examples",
        8,
    )
    assert proc.returncode == 0, proc.stderr
    r = result(out)
    assert (r.status, r.steps_completed) == ("ok", 3)

    # Three LAMB steps at the phase-2 learning rate move a weight by about 1e-5 here, against its
    # scale of 0.02: the saved weights are still TensorFlow's, as those of a model started
    # anywhere else would not be.
    saved = torch.load(out / "model_save" / "pytorch_model.bin", weights_only=True)
    with np.load(TF_FIXTURE / "tf_reading.npz") as tf:
        expected = {
            "bert.embeddings.word_embeddings.weight": tf["bert/embeddings/word_embeddings"],
            "cls.seq_relationship.weight": tf["cls/seq_relationship/output_weights"],
            "bert.encoder.layer.1.attention.self.value.weight": tf[
                "bert/encoder/layer_1/attention/self/value/kernel"
            ].T,
        }
    for name, value in expected.items():
        torch.testing.assert_close(saved[name], torch.from_numpy(value), atol=1e-4, rtol=0)
