"""Conversion between our state dict (fused QKV) and Hugging Face `BertForPreTraining`'s."""

from __future__ import annotations

import torch

_QKV = ".attention.self.qkv."
_SPLIT = ("query", "key", "value")


def to_hf_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Split each fused qkv projection into query/key/value and spell out the tied decoder."""
    out: dict[str, torch.Tensor] = {}
    for name, tensor in state.items():
        if _QKV in name:
            prefix, kind = name.split(_QKV)
            for part, chunk in zip(_SPLIT, tensor.chunk(3, dim=0), strict=True):
                out[f"{prefix}.attention.self.{part}.{kind}"] = chunk.clone()
        else:
            out[name] = tensor
    # HF keeps the decoder as its own module whose weight and bias are tied to the word
    # embeddings and to cls.predictions.bias; writing them makes the file load without warnings.
    out["cls.predictions.decoder.weight"] = state["bert.embeddings.word_embeddings.weight"]
    out["cls.predictions.decoder.bias"] = state["cls.predictions.bias"]
    return out


def from_hf_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The inverse of `to_hf_state_dict`: fuse query/key/value, drop the tied decoder copies."""
    out: dict[str, torch.Tensor] = {}
    for name, tensor in state.items():
        if name.startswith("cls.predictions.decoder.") or name.endswith((".position_ids", ".token_type_ids")):
            continue
        if ".attention.self.query." in name:
            prefix, kind = name.split(".attention.self.query.")
            parts = [state[f"{prefix}.attention.self.{p}.{kind}"] for p in _SPLIT]
            out[f"{prefix}{_QKV}{kind}"] = torch.cat(parts, dim=0)
        elif ".attention.self.key." in name or ".attention.self.value." in name:
            continue
        else:
            out[name] = tensor
    return out
