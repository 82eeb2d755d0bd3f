"""BERT for pre-training, its configurations, LAMB, and FLOP counts."""

from harness.models.bert import BertForPreTraining, PretrainingBatch, PretrainingOutput
from harness.models.config import NAMED_CONFIGS, BertConfig, load_config
from harness.models.lamb import Lamb, parameter_groups, poly_warmup_lr

__all__ = [
    "NAMED_CONFIGS",
    "BertConfig",
    "BertForPreTraining",
    "Lamb",
    "PretrainingBatch",
    "PretrainingOutput",
    "load_config",
    "parameter_groups",
    "poly_warmup_lr",
]
