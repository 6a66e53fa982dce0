"""Every config of sokhan, importable without torch (so `sokhan --help` is instant), each checked when built."""

from sokhan.config.base import (
    Config,
    check_out_dir,
    coerce,
    config_values,
    field_specs,
    load_config,
    option,
    read_table,
)
from sokhan.config.data import NormalizerConfig, PrepareConfig
from sokhan.config.evaluate import EvaluateConfig
from sokhan.config.model import DEFAULT_PRESET, FAMILIES, PRESETS, ModelConfig
from sokhan.config.recipes import ZOO_FAMILIES, DemoConfig, SweepConfig, ZooConfig
from sokhan.config.sample import SampleConfig
from sokhan.config.serve import ServeConfig
from sokhan.config.train import (
    FINETUNE_DEFAULTS,
    PRESET_TRAINING,
    ClassifierConfig,
    FinetuneConfig,
    LoraConfig,
    TrainConfig,
)
from sokhan.config.translate import TranslateConfig, TranslateTrainConfig

__all__ = [
           "DEFAULT_PRESET",
           "FAMILIES",
           "FINETUNE_DEFAULTS",
           "PRESETS",
           "PRESET_TRAINING",
           "ZOO_FAMILIES",
           "ClassifierConfig",
           "Config",
           "DemoConfig",
           "EvaluateConfig",
           "FinetuneConfig",
           "LoraConfig",
           "ModelConfig",
           "NormalizerConfig",
           "PrepareConfig",
           "SampleConfig",
           "ServeConfig",
           "SweepConfig",
           "TrainConfig",
           "TranslateConfig",
           "TranslateTrainConfig",
           "ZooConfig",
           "check_out_dir",
           "coerce",
           "config_values",
           "field_specs",
           "load_config",
           "option",
           "read_table",
]
