"""BERT model configurations: the MLCommons `bert_config.json` schema and the named presets."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from harness.errors import HarnessError


@dataclass(frozen=True)
class BertConfig:
    """The architecture of a BERT model, field for field the MLCommons `bert_config.json`."""

    vocab_size: int = 30522
    """Size of the WordPiece vocabulary (token ids are in [0, vocab_size))."""
    hidden_size: int = 1024
    """Width of every encoder layer and of the embeddings."""
    num_hidden_layers: int = 24
    """Number of transformer encoder layers."""
    num_attention_heads: int = 16
    """Attention heads per layer; hidden_size must divide evenly among them."""
    intermediate_size: int = 4096
    """Width of the feed-forward layer inside each encoder layer."""
    hidden_act: str = "gelu"
    """Feed-forward activation: "gelu" (erf form, as BERT) or "gelu_tanh"."""
    hidden_dropout_prob: float = 0.1
    """Dropout on embeddings and on every sub-layer output."""
    attention_probs_dropout_prob: float = 0.1
    """Dropout on the attention probabilities."""
    max_position_embeddings: int = 512
    """Longest sequence the position table covers."""
    type_vocab_size: int = 2
    """Number of segment (token type) ids: 2 for sentence A / sentence B."""
    initializer_range: float = 0.02
    """Standard deviation of the truncated-normal weight initialisation."""
    layer_norm_eps: float = 1e-12
    """LayerNorm epsilon; BERT's original value, kept for checkpoint compatibility."""

    def __post_init__(self) -> None:
        check_fields(asdict(self), "model config")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    def to_hf_dict(self) -> dict:
        """The config.json Hugging Face `BertForPreTraining` reads (a superset of MLCommons')."""
        data = asdict(self)
        if data["hidden_act"] == "gelu_tanh":
            data["hidden_act"] = "gelu_new"  # Hugging Face's name for the tanh approximation
        return {
            **data,
            "model_type": "bert",
            "architectures": ["BertForPreTraining"],
            "pad_token_id": 0,
        }

    @classmethod
    def from_dict(cls, data: dict, source: str) -> BertConfig:
        known = {f.name for f in fields(cls)}
        required = known - {"layer_norm_eps"}
        missing = sorted(required - data.keys())
        if missing:
            raise HarnessError(f"{source}: missing keys {', '.join(missing)}")
        # Hugging Face spells the tanh approximation "gelu_new"; it is the same function.
        values = {k: v for k, v in data.items() if k in known}
        if values.get("hidden_act") == "gelu_new":
            values["hidden_act"] = "gelu_tanh"
        check_fields(values, source)
        return cls(**values)


ACTIVATIONS = {"gelu": "none", "gelu_tanh": "tanh"}
"""Activation name -> the `approximate` argument of torch.nn.functional.gelu."""

PROBABILITIES = ("hidden_dropout_prob", "attention_probs_dropout_prob")


def check_fields(values: dict, source: str) -> None:
    """Refuse, naming `source` and the key, a value of the wrong JSON type or out of its range
    (sizes positive integers, dropout probabilities in [0, 1), the rest finite and positive):
    checked before any of them is used, so a bad one is never met as a torch error."""
    for f in fields(BertConfig):
        if f.name not in values:
            continue
        value = values[f.name]
        if f.type == "str":
            if not isinstance(value, str):
                raise HarnessError(f"{source}: {f.name} must be a string, got {value!r}")
        elif f.type == "int":
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise HarnessError(f"{source}: {f.name} must be an integer >= 1, got {value!r}")
        elif isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise HarnessError(f"{source}: {f.name} must be a finite number, got {value!r}")
        elif f.name in PROBABILITIES and not 0 <= value < 1:
            raise HarnessError(f"{source}: {f.name} must be a probability in [0, 1), got {value!r}")
        elif f.name not in PROBABILITIES and not value > 0:
            raise HarnessError(f"{source}: {f.name} must be > 0, got {value!r}")
    hidden, heads = values.get("hidden_size"), values.get("num_attention_heads")
    if hidden is not None and heads is not None and hidden % heads:
        raise HarnessError(f"{source}: hidden_size {hidden} is not divisible by num_attention_heads {heads}")
    if "hidden_act" in values and values["hidden_act"] not in ACTIVATIONS:
        raise HarnessError(
            f"{source}: hidden_act {values['hidden_act']!r} is not one of {sorted(ACTIVATIONS)}"
        )


NAMED_CONFIGS: dict[str, BertConfig] = {
    # MLCommons BERT-Large (the reference bert_config.json).
    "bert-large": BertConfig(),
    "bert-base": BertConfig(
        hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072
    ),
    # Google's compact BERTs (Turc et al. 2019): same vocabulary, fewer and narrower layers.
    "bert-mini": BertConfig(
        hidden_size=256, num_hidden_layers=4, num_attention_heads=4, intermediate_size=1024
    ),
    "bert-tiny": BertConfig(
        hidden_size=128, num_hidden_layers=2, num_attention_heads=2, intermediate_size=512
    ),
}


def load_config(name_or_path: str) -> BertConfig:
    """A named preset, or a `bert_config.json` at a path."""
    if name_or_path in NAMED_CONFIGS:
        return NAMED_CONFIGS[name_or_path]
    path = Path(name_or_path)
    if not path.is_file():
        raise HarnessError(
            f"--model {name_or_path}: not a named config ({', '.join(NAMED_CONFIGS)}) "
            "and not a bert_config.json file"
        )
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise HarnessError(f"{path}: not readable JSON ({exc})") from None
    if not isinstance(data, dict):
        raise HarnessError(f"{path}: expected a JSON object of BERT config keys")
    return BertConfig.from_dict(data, str(path))
