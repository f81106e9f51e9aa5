"""The command-line arguments of the training commands: the attention (the family's `AttentionSettings`), the
time-series model's size, and `TrainingArguments` with the project's defaults (evaluate, checkpoint and log every
epoch)."""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from transformers import IntervalStrategy, SchedulerType, TrainingArguments
from transformers.trainer_utils import SaveStrategy

from ..attention import AttentionSettings, InvalidSetting


class UsageError(ValueError):
    """The command line asks for something that cannot be done; the scripts print the message and exit with 2."""


@dataclass
class AttentionArguments(AttentionSettings):
    """The attention of the primal-dual family, from the command line: the fields of `AttentionSettings`, with
    their defaults, allowed values and help."""

    def __post_init__(self) -> None:
        try:  # before any data is read: a typo should not cost a dataset load
            self.check_settings()
        except InvalidSetting as err:
            raise UsageError(f"--{err.setting}: {err}") from None

    def config_kwargs(self) -> dict[str, Any]:
        return asdict(self)


# HfArgumentParser rewrites the type of each field it parses in place (`list[int] | None` becomes `list[int]`). The
# fields of a dataclass subclass are its base's Field objects, so parsing the command line changed AttentionSettings'
# types too, and with them the strict type checks of every config built on it: after it, a config with the default
# head_scales=None was refused ("expected a list, got NoneType"). The arguments get their own copies.
AttentionArguments.__dataclass_fields__ = {
    name: copy.copy(item) for name, item in AttentionArguments.__dataclass_fields__.items()
}


@dataclass
class TimeSeriesAttentionArguments(AttentionArguments):
    attention_type: str = field(default="bn", metadata={"help": "the attention (default: Attention-BN)"})


@dataclass
class TimeSeriesModelArguments:
    """The size of a `PrimalDualTimeSeriesForClassification` (mvts-transformer's defaults)."""

    hidden_size: int = field(default=64, metadata={"help": "d_model"})
    num_hidden_layers: int = 3
    num_attention_heads: int = 8
    intermediate_size: int = 256
    dropout: float = field(default=0.1, metadata={"help": "hidden and attention dropout"})
    pooling: str = field(default="flatten", metadata={"help": "flatten (mvts-transformer), mean or cls"})
    norm_type: str = field(default="batch", metadata={"help": "batch (mvts-transformer) or layer"})


@dataclass
class EpochTrainingArguments(TrainingArguments):
    """`TrainingArguments` with the defaults of the project's scripts: evaluate, checkpoint and log every epoch,
    keep the two newest checkpoints, no pinned memory (CPU)."""

    output_dir: str | None = None
    eval_strategy: IntervalStrategy | str = "epoch"
    save_strategy: SaveStrategy | str = "epoch"
    logging_strategy: IntervalStrategy | str = "epoch"
    save_total_limit: int | None = 2
    dataloader_pin_memory: bool = False
    overwrite_output_dir: bool = field(
        default=False,
        metadata={"help": "write into an --output_dir that holds files of something else than a run of this project"},
    )

    def __getstate__(self) -> dict[str, Any]:
        # The Trainer pickles the arguments into every checkpoint and, with --push_to_hub, uploads that
        # training_args.bin: a pickled copy never carries --hub_token (the object in memory keeps it for the pushes).
        state = dict(self.__dict__)
        for name in state:
            if name.endswith("_token"):
                state[name] = None
        return state

    def __post_init__(self):
        # On a machine without an accelerator, transformers only sets up a multi-process (gloo) run under
        # `accelerate launch` when told it is on CPU.
        if not self.use_cpu and not torch.accelerator.is_available():
            self.use_cpu = True
        super().__post_init__()


@dataclass
class TimeSeriesTrainingArguments(EpochTrainingArguments):
    """The mvts-transformer protocol of the paper (Zerveas et al. 2021, as in Flowformer): RAdam (see
    `timeseries_trainer`), learning rate 1e-3 held constant, batch 16, 100 epochs."""

    num_train_epochs: float = 100
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    per_device_train_batch_size: int = 16
    per_device_eval_batch_size: int = 64
    lr_scheduler_type: SchedulerType | str = "constant"
    seed: int = 42


def encoder_config_kwargs(model_arguments: Any) -> dict[str, Any]:
    """The encoder's size as config keywords, from model arguments with ``hidden_size``, ``num_hidden_layers``,
    ``num_attention_heads``, ``intermediate_size`` and ``dropout`` (hidden and attention dropout alike)."""
    return {
        "hidden_size": model_arguments.hidden_size,
        "num_hidden_layers": model_arguments.num_hidden_layers,
        "num_attention_heads": model_arguments.num_attention_heads,
        "intermediate_size": model_arguments.intermediate_size,
        "hidden_dropout_prob": model_arguments.dropout,
        "attention_probs_dropout_prob": model_arguments.dropout,
    }
