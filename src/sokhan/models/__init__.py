"""Model families, built from a `ModelConfig` by name: one module per family, all reading one config.

Every family follows the protocol of `sokhan.models.protocol` (a named `ModelOutput`, declared
`Capabilities`); DEVELOPERS.md has the checklist for adding one.
"""

from __future__ import annotations

from torch import nn

from sokhan.config import ClassifierConfig, ModelConfig
from sokhan.errors import SokhanError
from sokhan.models.bert import BERT
from sokhan.models.classifier import TransformerClassifier
from sokhan.models.gpt import GPT
from sokhan.models.ngram import NGramLM
from sokhan.models.protocol import Capabilities, FamilyModel, ModelOutput
from sokhan.models.recurrent import RecurrentLM
from sokhan.models.seq2seq import EncoderDecoder

# The names are ModelConfig's `family` choices (sokhan.config.model.FAMILIES), in the same order.
FAMILIES: dict[str, type[nn.Module]] = {"gpt": GPT, "bert": BERT, "rnn": RecurrentLM, "lstm": RecurrentLM,
                                        "gru": RecurrentLM, "ngram": NGramLM, "seq2seq": EncoderDecoder}


def build_model(cfg: ModelConfig, classifier: ClassifierConfig | None = None) -> nn.Module:
    """The family's model; with `classifier`, that family's stack with a label head (`models/classifier.py`)."""
    if cfg.family not in FAMILIES:
        raise SokhanError(f"unknown model family '{cfg.family}'; choose from {', '.join(FAMILIES)}")
    if classifier is not None:
        return TransformerClassifier(cfg, classifier)
    return FAMILIES[cfg.family](cfg)


__all__ = ["BERT", "FAMILIES", "GPT", "Capabilities", "EncoderDecoder", "FamilyModel", "ModelConfig", "ModelOutput",
           "NGramLM", "RecurrentLM", "TransformerClassifier", "build_model"]
