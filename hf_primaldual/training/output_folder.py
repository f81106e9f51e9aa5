"""A run's output folder: one run at a time (a lock), checked before any data is read (a folder, writable, room
for the checkpoints), the checkpoint a run resumes from (complete, and of this run: its model config and its
training arguments), and the hub-ready folder written at the end so that a failure leaves nothing half-finished."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np
import torch
from filelock import FileLock, Timeout
from transformers import PreTrainedModel, Trainer, TrainerCallback, TrainerControl, TrainerState, TrainingArguments
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from ..modeling_primaldual_timeseries import PrimalDualTimeSeriesForClassification
from ..pipeline_timeseries import PrimalDualTimeSeriesClassificationPipeline
from .arguments import UsageError

try:
    from torch.distributed.fsdp import FSDPModule
    from torch.distributed.tensor import DTensor
except ImportError:  # a torch built without torch.distributed: nothing is sharded
    DTensor = FSDPModule = ()

logger = logging.getLogger(__name__)

FINAL_FILES_MARKER = "training_metrics.json"
#: Config fields that may differ between a checkpoint and the run resuming from it (bookkeeping, not the model).
_RESUME_IGNORED_FIELDS = {
    "transformers_version", "_name_or_path", "architectures", "dtype", "torch_dtype", "auto_map",
    "problem_type",  # set by the model's first forward pass from the labels
    "custom_pipelines",  # written by the model's save_pretrained (the pipeline code beside the weights)
}


def folder_name(text: str) -> str:
    """``text`` as one safe folder name: path separators, ``..`` and other characters outside ``[A-Za-z0-9._+-]``
    become ``-``, so that a name built from user input cannot point outside its parent folder."""
    name = re.sub(r"-{2,}", "-", re.sub(r"[^\w.+-]+|\.{2,}", "-", text, flags=re.ASCII)).strip(".-")
    return name or "run"


def set_default_output_dir(args: TrainingArguments, name: str) -> None:
    """Give a run without ``--output_dir`` the folder ``outputs/<name>`` (transformers would pick `trainer_output`);
    ``name`` is made a single folder name (`folder_name`), so the folder is always directly under ``outputs/``."""
    if args.output_dir in (None, "trainer_output"):
        args.output_dir = str(Path("outputs") / folder_name(name))


def is_run_folder(folder: str | os.PathLike) -> bool:
    """Whether ``folder`` is an output folder of this project's training scripts: a finished one (its
    ``training_metrics.json``) or one with Trainer checkpoints."""
    folder = Path(folder)
    try:
        metrics = json.loads((folder / FINAL_FILES_MARKER).read_text())
        if isinstance(metrics, dict) and "eval_history" in metrics:
            return True
    except (OSError, ValueError):
        pass
    return any((path / "trainer_state.json").is_file() for path in folder.glob(f"{PREFIX_CHECKPOINT_DIR}-*"))


#: Held by the run writing into the folder; a second run on the folder is refused at once. Never published.
LOCK_FILE = ".hf-primaldual.lock"
#: The folder a final save writes into before it moves the files in (inside the output folder: same file system).
STAGING_PREFIX = ".staging-"
#: Written into each checkpoint of a run: the training arguments and data that make the run what it is.
RUN_RECORD = "run_arguments.json"
#: The `TrainingArguments` that define a run: resuming a checkpoint under other values would continue another run.
#: (Not the number of epochs: resuming a finished run with more epochs trains it longer, as the Trainer intends.)
RUN_DEFINING_ARGUMENTS = (
    "learning_rate", "weight_decay", "lr_scheduler_type", "warmup_steps", "per_device_train_batch_size",
    "gradient_accumulation_steps", "optim", "adam_beta1", "adam_beta2", "adam_epsilon", "max_grad_norm",
    "label_smoothing_factor", "seed", "data_seed",
)
#: An FSDP run's checkpoint weights (the default SHARDED_STATE_DICT): a folder per model of torch.distributed.checkpoint
#: shards, complete once its ``.metadata``, written last, is there.
FSDP_WEIGHTS = "pytorch_model_fsdp"
_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")


class TrainingDivergedError(RuntimeError):
    """The loss or the weights went NaN or infinite: the run stops and nothing is saved as finished."""


def check_output_folder(args: TrainingArguments, *, validation_fraction: float = 0.0) -> None:
    """Refuse (`UsageError`), before any data is read, a run whose arguments or output folder cannot work.

    * ``--output_dir`` must be a folder; one that holds other files than a run of this project (the user's own
      README.md, config.json...) is only written into with ``--overwrite_output_dir``.
    * ``--resume_from_checkpoint last`` becomes the newest complete checkpoint of ``--output_dir`` (see
      `resolve_resume`); a given checkpoint must be complete.
    * ``validation_fraction`` must leave a training split: 0 <= fraction < 1.
    """
    output_dir = Path(args.output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise UsageError(f"--output_dir {output_dir} is a file: give a folder (a new one, or a run's output folder).")
    if not 0 <= validation_fraction < 1:
        raise UsageError(
            f"--validation_fraction {validation_fraction}: give a fraction of the training split in [0, 1) to hold "
            "out (0: no validation split, the test split is evaluated every epoch)."
        )
    args.resume_from_checkpoint = resolve_resume(args)
    if args.resume_from_checkpoint is not None and (problem := checkpoint_problem(args.resume_from_checkpoint)):
        raise UsageError(
            f"--resume_from_checkpoint {args.resume_from_checkpoint} cannot be resumed: {problem}. Give a complete "
            "checkpoint-N folder, or `last` for the newest complete one of --output_dir."
        )
    others = [p.name for p in sorted(output_dir.iterdir()) if not p.name.startswith(".")] if output_dir.is_dir() else []
    if others and not is_run_folder(output_dir) and not getattr(args, "overwrite_output_dir", False):
        raise UsageError(
            f"--output_dir {output_dir} already holds files that are not from a training run of this project "
            f"({', '.join(others[:5])}{', ...' if len(others) > 5 else ''}), which the run would overwrite. Give a new "
            "or empty folder, or pass --overwrite_output_dir to write into this one anyway."
        )


@contextmanager
def output_folder_lock(args: TrainingArguments) -> Iterator[None]:
    """Hold ``--output_dir`` for this run, on the main process (the others write nothing of their own).

    A second run started on the folder while this one holds it gets `UsageError` at once, before it reads any data.
    The lock is an OS file lock (`filelock`), released when the process ends however it ends, so a killed run never
    leaves the folder locked. Taking it also proves the folder can be written (a read-only location is refused
    here, not at the first checkpoint). A folder this run created and left empty is removed again.
    """
    if args.process_index != 0:
        yield
        return
    folder = Path(args.output_dir)
    created = not folder.exists()
    lock = FileLock(folder / LOCK_FILE, timeout=0)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):  # filelock reads an unwritable folder as a lock held elsewhere
            pass
        lock.acquire()
    except Timeout:
        raise UsageError(
            f"--output_dir {folder} is in use by another training run (it holds {folder / LOCK_FILE}). Wait for that "
            "run to end, or give another --output_dir."
        ) from None
    except OSError as err:
        raise UsageError(
            f"--output_dir {folder} cannot be written ({err.strerror or err}): give a folder you can write to."
        ) from None
    left = sorted(path.name for path in folder.glob(f"{STAGING_PREFIX}*") if path.is_dir())
    if left:  # only a save killed before it moved its files in leaves one: no other run holds the folder
        logger.warning("--output_dir %s: removing %s, left by a save that was interrupted.", folder, ", ".join(left))
        for name in left:
            shutil.rmtree(folder / name, ignore_errors=True)
    try:
        yield
    finally:
        lock.release()
        if created and {p.name for p in folder.iterdir()} <= {LOCK_FILE}:
            shutil.rmtree(folder, ignore_errors=True)


def check_free_space(args: TrainingArguments, model: torch.nn.Module) -> None:
    """Refuse (`UsageError`) a run whose checkpoints will not fit where ``--output_dir`` is: each checkpoint holds
    the weights and the optimizer's state (about three times the weights for Adam), ``--save_total_limit`` of them
    are kept (one more while the next is written), plus the final model."""
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    kept = (args.save_total_limit or max(int(args.num_train_epochs), 1)) + 1
    needed = weight_bytes * (3 * kept + 1)
    free = shutil.disk_usage(args.output_dir).free
    if free < needed:
        raise UsageError(
            f"--output_dir {args.output_dir} has {free / 1e6:.1f} MB free, and the run needs about {needed / 1e6:.1f} "
            f"MB for its checkpoints ({kept} of {3 * weight_bytes / 1e6:.1f} MB) and the final model. Free some space, "
            "give another --output_dir, or keep fewer checkpoints (--save_total_limit)."
        )


def checkpoint_problem(checkpoint: str | os.PathLike) -> str | None:
    """Why ``checkpoint`` cannot be resumed (a process killed while saving it leaves it without its
    ``trainer_state.json``, which the Trainer writes last, or without weights), or None when it is complete."""
    folder = Path(checkpoint)
    if not folder.is_dir():
        return "no such folder"
    try:
        json.loads((folder / "trainer_state.json").read_text())
    except FileNotFoundError:
        return "it has no trainer_state.json (not a Trainer checkpoint, or one interrupted while it was saved)"
    except (OSError, ValueError):
        return "its trainer_state.json is cut short (interrupted while it was saved)"
    sharded = any((shards / ".metadata").is_file() for shards in folder.glob(f"{FSDP_WEIGHTS}_*"))
    if not sharded and not any((folder / name).is_file() for name in _WEIGHT_FILES):
        return "it holds no weights (interrupted while it was saved)"
    return None


def resolve_resume(args: TrainingArguments) -> str | None:
    """``--resume_from_checkpoint``: a checkpoint folder as given, or for ``last`` the newest complete
    `checkpoint-N` of ``output_dir``; newer incomplete ones (a run killed while saving) are skipped with a warning.
    `UsageError` when there is none to resume, rather than silently starting over."""
    resume = args.resume_from_checkpoint
    if resume is None or resume.lower() not in ("last", "true"):
        return resume
    folder = Path(args.output_dir)
    found = folder.glob(f"{PREFIX_CHECKPOINT_DIR}-*") if folder.is_dir() else []
    numbered = sorted(
        (path for path in found if re.fullmatch(rf"{PREFIX_CHECKPOINT_DIR}-\d+", path.name) and path.is_dir()),
        key=lambda path: int(path.name.rsplit("-", 1)[1]),
        reverse=True,
    )
    skipped = []
    for checkpoint in numbered:
        problem = checkpoint_problem(checkpoint)
        if problem is None:
            if skipped:
                logger.warning(
                    "--resume_from_checkpoint %s: skipping %s; resuming from %s.", resume, "; ".join(skipped), checkpoint
                )
            return str(checkpoint)
        skipped.append(f"{checkpoint.name} ({problem})")
    raise UsageError(
        f"--resume_from_checkpoint {resume}: no complete checkpoint-N folder in {folder} to resume from"
        + (f" ({'; '.join(skipped)})" if skipped else "")
        + ". Give the --output_dir of the run to resume, or leave --resume_from_checkpoint out to start a new run."
    )


def run_record(args: TrainingArguments, data: Mapping[str, Any]) -> dict[str, Any]:
    """What makes a run this run: its defining training arguments (`RUN_DEFINING_ARGUMENTS`, with the total batch
    size over processes) and its data arguments, as plain JSON values."""
    record = {name: _plain(getattr(args, name)) for name in RUN_DEFINING_ARGUMENTS if hasattr(args, name)}
    record["total_train_batch_size"] = (
        args.per_device_train_batch_size * args.world_size * args.gradient_accumulation_steps
    )
    record["data"] = {key: _plain(value) for key, value in data.items()}
    return json.loads(json.dumps(record))  # tuples as lists, as they read back


def check_run_matches(record: Mapping[str, Any], checkpoint: str | os.PathLike | None) -> None:
    """Refuse (`UsageError`) to resume ``checkpoint`` under other training arguments or data than its run's: it
    would be continued and reported as this run (its later epochs under this learning rate and seed). A checkpoint
    without a record (saved by another Trainer loop) is resumed with a warning that it could not be checked."""
    if checkpoint is None:
        return
    try:
        saved = json.loads((Path(checkpoint) / RUN_RECORD).read_text())
    except FileNotFoundError:
        logger.warning(
            "--resume_from_checkpoint %s holds no %s (not saved by this project's training commands): its training "
            "arguments could not be checked against this run's.", checkpoint, RUN_RECORD,
        )
        return
    except (OSError, ValueError) as err:
        raise UsageError(f"--resume_from_checkpoint {checkpoint}: cannot read its {RUN_RECORD} ({err}).") from err
    differences = _differences(saved, dict(record))
    if differences:
        raise UsageError(
            f"--resume_from_checkpoint {checkpoint} belongs to another run: {differences}. Resume it with that run's "
            "arguments, give the checkpoint of this run, or start a new run in another --output_dir."
        )


class RecordRun(TrainerCallback):
    """Writes `run_record` into each checkpoint the Trainer saves (after the checkpoint itself is complete), and
    the model's config.json where the Trainer wrote none (FSDP's sharded checkpoints hold only the shards), so
    that a resumed run is checked against the checkpoint's model settings all the same."""

    def __init__(self, record: Mapping[str, Any]) -> None:
        self.record = dict(record)

    def on_save(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
        model: torch.nn.Module | None = None, **kwargs: Any,
    ) -> None:
        checkpoint = Path(args.output_dir, f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}")
        if state.is_world_process_zero and checkpoint.is_dir():
            (checkpoint / RUN_RECORD).write_text(json.dumps(self.record, indent=2, sort_keys=True) + "\n")
            if model is not None and hasattr(model, "config") and not (checkpoint / "config.json").exists():
                model.config.to_json_file(checkpoint / "config.json")


def non_finite_parameters(model: torch.nn.Module) -> list[str]:
    """Names of the parameters of ``model`` holding a NaN or an infinity. Of a sharded model (FSDP), this process's
    shards only: callers combine the processes' answers (`StopOnNonFinite`) or check the gathered weights."""
    return non_finite_tensors(model.named_parameters())


def non_finite_tensors(named: Iterable[tuple[str, torch.Tensor]]) -> list[str]:
    """Names of the floating-point tensors of ``named`` holding a NaN or an infinity (a `DTensor`: its local shard,
    which ``isfinite`` reads without a collective that the other processes would have to join)."""
    local = [(name, t.to_local() if isinstance(t, DTensor) else t) for name, t in named]
    local = [(name, t) for name, t in local if t.is_floating_point()]
    if not local:
        return []
    # One fused reduction first (NaN and infinity propagate into the norm); each tensor is looked at only where it
    # is not finite, which a huge but finite weight can also cause. Checked after every step: this keeps it cheap.
    if torch.isfinite(torch.nn.utils.get_total_norm([t.detach() for _, t in local])):
        return []
    finite = torch.stack([torch.isfinite(t.detach()).all() for _, t in local]).cpu()  # one device sync
    return [name for (name, _), ok in zip(local, finite.tolist()) if not ok]


def _plain(value: Any) -> Any:
    return value.value if isinstance(value, Enum) else value


def _differences(saved: Mapping[str, Any], wanted: Mapping[str, Any], prefix: str = "") -> str:
    """``key=saved (this run: wanted)`` for the keys that differ, nested dicts flattened, at most eight."""
    listed = []
    for key in sorted(set(saved) | set(wanted)):
        old, new = saved.get(key), wanted.get(key)
        if isinstance(old, dict) and isinstance(new, dict):
            inner = _differences(old, new, f"{prefix}{key}.")
            listed += [inner] if inner else []
        elif old != new:
            listed.append(f"{prefix}{key}={old!r} (this run: {new!r})")
    return ", ".join(listed[:8])


def check_checkpoint_matches(config: Any, checkpoint: str | os.PathLike | None) -> None:
    """Refuse (`UsageError`) to resume from ``checkpoint`` a model whose config differs from the checkpoint's:
    the Trainer would load the weights into the other model (a ``bn`` checkpoint continued as ``softmax``...)."""
    if checkpoint is None:
        return
    try:  # through the config class, so that fields the file leaves out get the same defaults on both sides
        saved_config = type(config).from_json_file(Path(checkpoint) / "config.json")
    except (OSError, ValueError) as err:
        raise UsageError(f"--resume_from_checkpoint {checkpoint}: cannot read its config.json ({err}).") from err
    saved, wanted = (
        {key: value for key, value in json.loads(c.to_json_string(use_diff=False)).items() if key not in _RESUME_IGNORED_FIELDS}
        for c in (saved_config, config)
    )
    differences = _differences(saved, wanted)
    if differences:
        raise UsageError(
            f"--resume_from_checkpoint {checkpoint} was trained with other model settings: {differences}. Resume with "
            "the checkpoint's settings, or start a new run in another --output_dir."
        )


def save_model_and_processor(model: PreTrainedModel, processor, folder: str | os.PathLike) -> None:
    """Save ``model`` and ``processor`` into ``folder``; a time-series classifier with its feature extractor is saved
    through its `time-series-classification` pipeline, whose `save_pretrained` also copies the pipeline's code and
    writes ``custom_pipelines`` into config.json, so ``pipeline(model=folder, trust_remote_code=True)`` classifies
    raw series without this package."""
    if isinstance(model, PrimalDualTimeSeriesForClassification) and processor is not None:
        # device: the pipeline would otherwise move the model to the first GPU.
        PrimalDualTimeSeriesClassificationPipeline(
            model=model, feature_extractor=processor, device=model.device
        ).save_pretrained(folder)
        return
    model.save_pretrained(folder)
    if processor is not None:
        processor.save_pretrained(folder)


def gather_full_state_dict(trainer: Trainer) -> dict[str, torch.Tensor] | None:
    """The full weights of a model the Trainer sharded (FSDP), on the main process (None on the others), or None
    for a model every process holds whole. Every process must call it: the shards are gathered by collectives,
    which a save on the main process alone would wait on forever (or, reading its own shards, write a part)."""
    if not getattr(trainer, "is_fsdp_enabled", False):
        return None
    state_dict = trainer.accelerator.get_state_dict(trainer.model)
    return state_dict if trainer.is_world_process_zero() else None


def unsharded_copy(model: PreTrainedModel, state_dict: Mapping[str, torch.Tensor]) -> PreTrainedModel:
    """A plain model of ``model``'s own class holding ``state_dict`` (the full weights of ``model``, sharded by FSDP).

    FSDP2 turns a sharded model into an instance of a class made on the fly (``FSDP<Name>``, defined in torch's
    own modules): saved as it is, config.json's ``auto_map`` would name that class in ``_fsdp_init`` and the folder
    would hold torch's FSDP source files instead of the model's code, so it would not load with
    ``trust_remote_code``.
    """
    if not isinstance(model, PreTrainedModel):  # FSDP1 (deprecated) wraps the model, where FSDP2 changes its class
        model = model.module
    cls = next(c for c in type(model).__mro__ if issubclass(c, PreTrainedModel) and not issubclass(c, FSDPModule))
    plain = cls(model.config)
    plain.load_state_dict(state_dict, strict=True)
    return plain.eval()


def save_hub_ready_folder(
    model: PreTrainedModel,
    output_dir: str | os.PathLike,
    metrics: dict[str, Any],
    model_card: str,
    processor=None,
    state_dict: Mapping[str, torch.Tensor] | None = None,
) -> Path:
    """Write ``model`` (with ``state_dict`` as its weights when given: a sharded model's, gathered by
    `gather_full_state_dict`), its processor, ``training_metrics.json`` and ``README.md`` into ``output_dir``.

    Everything is first written to a staging folder inside it; the marker of a finished folder
    (``training_metrics.json``) of an earlier run is removed before anything is moved in and the new one is moved
    in last, so an interrupted save never leaves a folder that looks finished (new weights with old metrics).
    Checkpoint folders of the run are kept. A model with NaN or infinite weights is refused
    (`TrainingDivergedError`) and nothing is written.
    """
    bad = non_finite_parameters(model) if state_dict is None else non_finite_tensors(state_dict.items())
    if bad:
        raise TrainingDivergedError(
            f"The trained model has NaN or infinite weights ({', '.join(bad[:3])}): it is not saved as finished. "
            "Lower --learning_rate and run again."
        )
    if not all(np.isfinite(v) for v in metrics.values() if isinstance(v, float)):
        raise TrainingDivergedError(f"The run's metrics are not finite ({metrics}): it is not saved as finished.")
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=output_dir))
    try:
        save_model_and_processor(model if state_dict is None else unsharded_copy(model, state_dict), processor, staging)
        (staging / "README.md").write_text(model_card)
        (staging / FINAL_FILES_MARKER).write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
        (output_dir / FINAL_FILES_MARKER).unlink(missing_ok=True)
        for path in sorted(staging.iterdir(), key=lambda p: p.name == FINAL_FILES_MARKER):  # marker last
            destination = output_dir / path.name
            if destination.is_dir():
                shutil.rmtree(destination)
            os.replace(path, destination)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return output_dir
