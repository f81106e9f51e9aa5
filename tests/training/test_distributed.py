"""Scale-out launches of both training commands against the one-process run of the same command: two "machines"
on localhost (``accelerate launch --num_machines 2``, ranks 0 and 1 as two launch commands sharing one output
folder, as on a shared file system) and FSDP (two processes, the model sharded into DTensors).

The runs are set up so that one process and two compute the same training: dropout off, no image augmentation,
layer norm in the time-series model (batch norm would normalise over each process's half batch: another model),
and a global batch that the training set divides, split evenly over the processes in the order of the one-process
batches. The final weights must then match the one-process run's to rounding, and with them the accuracy; the
hub-ready folder must be one folder, written once, holding the same files as the one-process run's, and load and
evaluate the same.

FSDP: Accelerate shards only on GPUs; on CPU the documented launch is refused by the package (with the reason),
and the sharded runs go through `helpers/fsdp_on_cpu.py`, which lifts Accelerate's device gate alone so that
PyTorch's FSDP2 shards the model on CPU with gloo.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from safetensors.torch import load_file
from transformers import AutoConfig

from helpers import FIXTURES
from helpers.training_runs import FSDP_ON_CPU, accelerate_launch, finish, free_port, start_script, summary
from hf_primaldual.cli import train_image, train_timeseries
from hf_primaldual.evaluation import evaluate_checkpoint
from hf_primaldual.training import FINAL_FILES_MARKER, UsageError
from hf_primaldual.training.output_folder import check_checkpoint_matches, checkpoint_problem

pytestmark = pytest.mark.slow  # training runs under accelerate launch


@dataclass(frozen=True)
class Command:
    name: str
    script: str
    run: Callable[[list[str]], dict]  # the command's in-process entry point (the one-process reference)
    dataset: str
    layer: str  # the class FSDP wraps (one unit per encoder layer)
    batch: int  # the global batch: the training set divides it, two processes take half each
    test_size: int
    learning_rate: float  # the command's default (time series) or the one given in args (images)
    args: list[str] = field(default_factory=list)


TIMESERIES = Command(
    "timeseries", "train_timeseries.py", train_timeseries.run, "JapaneseVowels", "PrimalDualTimeSeriesLayer",
    18, 370, 1e-3,
    # 270 training series = 15 batches of 18 (16 would leave a last batch of 14, split unevenly over 2 processes)
    ["--hidden_size", "32", "--num_hidden_layers", "2", "--num_attention_heads", "4", "--intermediate_size", "64",
     "--dropout", "0.0", "--norm_type", "layer", "--num_train_epochs", "3"],
)
FASHION_SAMPLE = FIXTURES / "fashion-mnist-sample"  # 16 training and 16 test images
IMAGE = Command(
    "image", "train_image.py", train_image.run, str(FASHION_SAMPLE), "PrimalDualViTLayer",
    16, 16, 3e-3,
    ["--dataset", str(FASHION_SAMPLE), "--hidden_size", "24", "--num_hidden_layers", "2", "--num_attention_heads",
     "3", "--intermediate_size", "48", "--random_crop_padding", "0", "--horizontal_flip", "false",
     "--learning_rate", "3e-3", "--warmup_steps", "0", "--num_train_epochs", "4"],
)
COMMANDS = [pytest.param(TIMESERIES, id="timeseries"), pytest.param(IMAGE, id="image")]
# Float rounding (the order of the reductions over processes) left the weights 1e-8 (time series, 45 steps) and
# 2.5e-6 (images, 4 steps) apart; a wrong gradient (one process's half batch, unreduced shards) moves them by up to
# a learning rate per step, as Adam normalises its steps. Rounding is amplified by Adam where a gradient is near 0,
# and differs between CPUs: the weights may differ by this fraction of one step.
STEP_FRACTION = 0.05


@pytest.fixture(scope="module")
def one_process(tmp_path_factory) -> dict[str, Path]:
    """The one-process run of each command (in this process: the same `run_training` the scripts call)."""
    folders = {}
    for command in (TIMESERIES, IMAGE):
        folder = tmp_path_factory.mktemp(f"one-process-{command.name}")
        command.run([*command.args, "--per_device_train_batch_size", str(command.batch), "--output_dir", str(folder)])
        folders[command.name] = folder
    return folders


def output_listing(folder: Path) -> set[str]:
    """The hub-ready folder's files (the lock file included), without the run's checkpoint folders."""
    return {path.name for path in folder.iterdir() if not path.name.startswith("checkpoint-")}


def check_same_as_one_process(command: Command, folder: Path, reference: Path, *, world_size: int) -> None:
    """``folder`` is one finished hub-ready folder with the files, config, weights and accuracy of ``reference``,
    and loads and evaluates as it reports."""
    assert not list(folder.glob(".staging-*"))
    assert output_listing(folder) == output_listing(reference)
    config, reference_config = (json.loads((f / "config.json").read_text()) for f in (folder, reference))
    assert config == reference_config  # auto_map names the package's classes, not FSDP's wrappers
    weights, reference_weights = (load_file(f / "model.safetensors") for f in (folder, reference))
    assert weights.keys() == reference_weights.keys()
    tolerance = STEP_FRACTION * command.learning_rate
    for key, tensor in weights.items():
        assert tensor.shape == reference_weights[key].shape, key  # whole tensors, not one process's shards
        difference = (tensor.float() - reference_weights[key].float()).abs().max().item()
        assert difference <= tolerance, (key, difference)
    metrics, reference_metrics = (json.loads((f / FINAL_FILES_MARKER).read_text()) for f in (folder, reference))
    assert metrics["world_size"] == world_size and reference_metrics["world_size"] == 1
    assert metrics["global_step"] == reference_metrics["global_step"]  # the processes shared each global batch
    # the same predictions, but for at most one test example on a decision boundary
    one_example = 1 / command.test_size + 1e-9
    assert abs(metrics["test_accuracy_final"] - reference_metrics["test_accuracy_final"]) <= one_example
    # (not eval_loss: on several processes the Trainer averages the last batch's loss with the duplicates Accelerate
    # pads it with, about 0.5% off here, while predictions and accuracy drop the duplicates)
    assert [e["eval_accuracy"] for e in metrics["eval_history"]] == pytest.approx(
        [e["eval_accuracy"] for e in reference_metrics["eval_history"]], abs=one_example)
    loaded = evaluate_checkpoint(folder, command.dataset)  # the folder's own processor and weights, from disk
    assert loaded.accuracy == pytest.approx(metrics["test_accuracy_final"])


@pytest.mark.parametrize("command", COMMANDS)
def test_two_machines_on_localhost_train_as_one_process_into_one_folder(command, one_process, tmp_path):
    """The documented two-machine launch, with both "machines" on this one: ranks 0 and 1 rendezvous on
    127.0.0.1; one output folder, written and locked by the main process (machine 0) alone."""
    port = free_port()
    folder = tmp_path / "run"
    args = [*command.args, "--per_device_train_batch_size", str(command.batch // 2), "--output_dir", str(folder)]
    machines = [
        start_script(command.script, *args, launcher=accelerate_launch(
            "--multi_gpu", "--num_machines", "2", "--num_processes", "2", "--machine_rank", str(rank),
            "--main_process_ip", "127.0.0.1", port=port,
        ))
        for rank in (0, 1)
    ]
    (code0, out0, err0), (code1, out1, err1) = (finish(machine, timeout=500) for machine in machines)
    assert code0 == 0 and code1 == 0, out0[-2000:] + err0[-4000:] + out1[-2000:] + err1[-4000:]
    assert summary(out0) is not None and summary(out1) is None  # the main process alone saves and reports
    check_same_as_one_process(command, folder, one_process[command.name], world_size=2)


@pytest.mark.parametrize("command", COMMANDS)
def test_fsdp_sharded_run_trains_as_one_process_and_saves_the_whole_model(command, one_process, tmp_path):
    """Two processes with the model sharded by FSDP2 (one unit per encoder layer): the end-of-run save gathers the
    shards on every process and writes the whole model once, as the package's class (not FSDP's wrapper)."""
    folder = tmp_path / "run"
    launcher = accelerate_launch(
        "--use_fsdp", "--fsdp_version", "2", "--num_processes", "2", "--num_machines", "1",
        "--fsdp_auto_wrap_policy", "TRANSFORMER_BASED_WRAP", "--fsdp_transformer_layer_cls_to_wrap", command.layer,
        "--fsdp_sync_module_states", "false", "--fsdp_cpu_ram_efficient_loading", "false", str(FSDP_ON_CPU),
    )
    args = [*command.args, "--per_device_train_batch_size", str(command.batch // 2), "--output_dir", str(folder)]
    code, out, err = finish(start_script(command.script, *args, launcher=launcher), timeout=500)
    assert code == 0, out[-2000:] + err[-5000:]
    checkpoints = sorted(folder.glob("checkpoint-*"))
    assert checkpoints and all((c / "pytorch_model_fsdp_0").is_dir() for c in checkpoints)  # it did shard
    for checkpoint in checkpoints:  # a sharded checkpoint counts as complete and of this model: it can be resumed
        assert checkpoint_problem(checkpoint) is None
        check_checkpoint_matches(AutoConfig.from_pretrained(folder), checkpoint)
    check_same_as_one_process(command, folder, one_process[command.name], world_size=2)


def test_documented_fsdp_launch_on_cpu_is_refused_with_the_reason(tmp_path):
    """On CPU, Accelerate cannot shard: the documented FSDP launch is stopped (exit 2 from each process) with the
    reason and the data-parallel alternative, and nothing is saved as finished."""
    folder = tmp_path / "run"
    # docs/TRAINING.md's FSDP command, with 2 processes instead of 8
    launcher = accelerate_launch("--use_fsdp", "--fsdp_version", "2", "--num_processes", "2", "--num_machines", "1",
                                 "--fsdp_auto_wrap_policy", "TRANSFORMER_BASED_WRAP",
                                 "--fsdp_transformer_layer_cls_to_wrap", "PrimalDualViTLayer")
    code, out, err = finish(start_script("train_image.py", *IMAGE.args, "--output_dir", str(folder),
                                         launcher=launcher), timeout=300)
    assert code != 0
    assert "error: FSDP was asked for" in err and "accelerate launch --multi_gpu --num_processes N" in err, err[-4000:]
    assert not (folder / FINAL_FILES_MARKER).exists()


IN_PROCESS_FSDP = [
    # the Trainer's own option, here in one process, which the Trainer refuses with a traceback
    pytest.param({}, ["--fsdp", "full_shard auto_wrap", "--fsdp_config",
                      json.dumps({"transformer_layer_cls_to_wrap": [TIMESERIES.layer]})], id="trainer-fsdp"),
    # what `accelerate launch --use_fsdp --fsdp_sync_module_states false` sets: Accelerate builds its plugin, then
    # drops it on CPU and trains the whole model, silently
    pytest.param({"ACCELERATE_USE_FSDP": "true", "FSDP_VERSION": "2", "FSDP_SYNC_MODULE_STATES": "false"}, [],
                 id="accelerate-fsdp-dropped"),
]


@pytest.mark.parametrize(("environment", "options"), IN_PROCESS_FSDP)
def test_other_ways_of_asking_for_fsdp_on_cpu_are_refused_with_the_reason(environment, options, tmp_path):
    # Accelerate and transformers record FSDP settings in os.environ (ACCELERATE_USE_FSDP=true once given a plugin):
    # all restored afterwards, or the later runs of this process and the scripts it starts would ask for FSDP
    saved = dict(os.environ)
    try:
        os.environ.update(environment)
        with pytest.raises(UsageError, match="FSDP was asked for .* on cpu"):
            train_timeseries.run([*TIMESERIES.args, *options, "--output_dir", str(tmp_path / "run")])
    finally:
        os.environ.clear()
        os.environ.update(saved)
    assert not (tmp_path / "run" / FINAL_FILES_MARKER).exists()
