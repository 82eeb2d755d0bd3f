"""`harness convert-checkpoint`: MLCommons' TensorFlow BERT checkpoint as a model_save."""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.tf_checkpoint.convert import convert


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "convert-checkpoint",
        help="write a TensorFlow BERT checkpoint (MLCommons' phase 1) as a model_save",
        description="Write a TensorFlow BERT checkpoint as a model_save (config.json and "
        "pytorch_model.bin), which phase 2's --checkpoint and Hugging Face load. TensorFlow is not "
        "needed. See docs/checkpoints.md.",
    )
    p.add_argument(
        "tf_prefix",
        type=Path,
        metavar="TF_PREFIX",
        help="the checkpoint's prefix: TF_PREFIX.index and TF_PREFIX.data-* (MLCommons: "
        "tf1_ckpt/model.ckpt-28252)",
    )
    p.add_argument("--config", type=Path, required=True, help="the checkpoint's bert_config.json")
    p.add_argument(
        "--output", type=Path, required=True, help="the model_save directory to write (new or empty)"
    )


def run(args: argparse.Namespace) -> int:
    imported = convert(args.tf_prefix, args.config, args.output)
    kinds = ", ".join(sorted({n.rpartition("/")[2] for n in imported.slots})) or "none"
    others = ", ".join(imported.others) or "nothing else"
    step = f" (global_step {imported.global_step})" if imported.global_step is not None else ""
    print(f"{args.output}: {imported.variables} variables of {args.tf_prefix}{step}")
    print(f"left out: {len(imported.slots)} optimizer slots ({kinds}); {others}")
    return 0
