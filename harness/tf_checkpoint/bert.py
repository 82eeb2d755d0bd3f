"""MLCommons' BERT checkpoint (google-research/bert's variable names) onto our model.

    bert/embeddings/{word,position,token_type}_embeddings    bert.embeddings.*.weight
    .../LayerNorm/{gamma,beta}                               .../LayerNorm.{weight,bias}
    .../{dense,query,key,value}/{kernel,bias}                ...{weight,bias}, the kernel transposed
                                                             (TF's [in, out], a Linear's [out, in])
    bert/encoder/layer_N/...                                 bert.encoder.layer.N...
    cls/predictions/output_bias                              cls.predictions.bias
    cls/seq_relationship/output_{weights,bias}               cls.seq_relationship.{weight,bias}
                                                             (output_weights is [2, hidden] already)

The names are Hugging Face's, so harness.models.hf_format fuses query, key and value into our
qkv as it does for a model_save. Skipped by rule: the variables outside bert/ and cls/
(global_step, a loss scale) and the optimizer's slots, named after their weight (WEIGHT/adam_m and
WEIGHT/adam_v in MLCommons' LAMB): phase 2 starts its LAMB afresh, as MLCommons' reference does,
which restores only the trainable variables from its init_checkpoint.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import torch

from harness.errors import HarnessError
from harness.models import BertConfig, load_config
from harness.models.hf_format import from_hf_state_dict, to_hf_state_dict
from harness.tf_checkpoint.bundle import Bundle

SCOPES = ("bert/", "cls/")
FLOATS = (1, 2, 19)
"""TensorFlow's float32, float64 and float16: the weights are read as float32."""
CONFIG_NAME = "bert_config.json"
_SPECIAL = {
    "cls.predictions.bias": "cls/predictions/output_bias",
    "cls.seq_relationship.weight": "cls/seq_relationship/output_weights",
    "cls.seq_relationship.bias": "cls/seq_relationship/output_bias",
}


def tf_name(hf: str) -> str:
    """The checkpoint's name for a Hugging Face parameter name."""
    if hf in _SPECIAL:
        return _SPECIAL[hf]
    scope, _, leaf = hf.rpartition(".")
    scope = re.sub(r"\.layer\.(\d+)", r".layer_\1", scope).replace(".", "/")
    if scope.endswith("_embeddings"):
        return scope
    if scope.endswith("LayerNorm"):
        return f"{scope}/{'gamma' if leaf == 'weight' else 'beta'}"
    return f"{scope}/{'kernel' if leaf == 'weight' else 'bias'}"


def prefix_of(path: Path) -> Path | None:
    """The checkpoint prefix `path` names (PREFIX, or its PREFIX.index file), None if it names none."""
    if path.name.endswith(".index") and path.is_file():
        return path.with_name(path.name.removesuffix(".index"))
    return path if Path(f"{path}.index").is_file() else None


def architecture(prefix: Path, model: str | None) -> BertConfig:
    """The architecture of a checkpoint, which holds none: --model, else the bert_config.json
    beside the prefix or in the folder above it (MLCommons' download: bert_config.json beside
    tf1_ckpt/model.ckpt-28252)."""
    if model is not None:
        return load_config(model)
    for folder in (prefix.parent, prefix.parent.parent):
        if (folder / CONFIG_NAME).is_file():
            return load_config(str(folder / CONFIG_NAME))
    raise HarnessError(
        f"--checkpoint {prefix}: a TensorFlow checkpoint without a {CONFIG_NAME} beside it or in "
        f"the folder above; give its architecture with --model {CONFIG_NAME}"
    )


@dataclass(frozen=True)
class Imported:
    """What a conversion read and what it left out."""

    variables: int
    slots: list[str]
    """The optimizer's variables, WEIGHT/SLOT."""
    others: list[str]
    """The variables outside bert/ and cls/."""
    global_step: int | None


def load_into(prefix: Path, model: torch.nn.Module) -> Imported:
    """Set every parameter of `model` from the checkpoint at `prefix`. A variable missing, left
    over or of another shape than the model's is refused, naming it, before any tensor is read."""
    bundle = Bundle(prefix)
    expected = {
        tf_name(hf): (hf, tensor.shape)
        for hf, tensor in to_hf_state_dict(model.state_dict()).items()
        if not hf.startswith("cls.predictions.decoder.")  # the tied copies
    }
    others = sorted(n for n in bundle.entries if not n.startswith(SCOPES))
    slots = sorted(n for n in bundle.entries if n.rpartition("/")[0] in expected)
    unexpected = sorted(set(bundle.entries) - set(others) - set(slots) - set(expected))
    if unexpected:
        raise HarnessError(
            f"{prefix}: variable {unexpected[0]} maps onto no parameter of the model"
            + (f" (nor do {len(unexpected) - 1} more)" if len(unexpected) > 1 else "")
        )
    for name, (_, shape) in expected.items():
        entry = bundle.entries.get(name)
        if entry is None:
            raise HarnessError(f"{prefix}: no variable {name}, which the model's architecture has")
        tf_shape = tuple(reversed(shape)) if name.endswith("/kernel") else tuple(shape)
        if entry.shape != tf_shape:
            raise HarnessError(
                f"{prefix}: variable {name} has shape {list(entry.shape)}; the model's architecture "
                f"expects {list(tf_shape)}"
            )
        if entry.dtype not in FLOATS:
            raise HarnessError(f"{prefix}: variable {name} has TensorFlow dtype {entry.dtype}, not a float")
        bundle.check(name)
    weights = {}
    for name, (hf, _) in expected.items():
        tensor = torch.from_numpy(bundle.read(name)).float()
        weights[hf] = tensor.T.contiguous() if name.endswith("/kernel") else tensor
    model.load_state_dict(from_hf_state_dict(weights))
    return Imported(len(expected), slots, others, _global_step(bundle))


def _global_step(bundle: Bundle) -> int | None:
    """The step the checkpoint was taken at, where it holds one as TensorFlow's optimizers do."""
    entry = bundle.entries.get("global_step")
    if entry is None or entry.shape != () or entry.dtype not in (3, 9):  # int32, int64
        return None
    return int(bundle.read("global_step"))
