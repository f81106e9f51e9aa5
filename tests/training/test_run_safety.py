"""Output folders that look finished are finished and true, and bad arguments are refused with a clear message and
the documented exit code before anything is read or written.

* The final save of a second run into a finished folder, interrupted, leaves a folder that push refuses.
* A resume whose model settings differ from the checkpoint's, a folder of the user's own files as --output_dir, a
  diverged run (NaN weights): refused or stopped, the folder untouched or left unfinished.
* A run on a file is named after it; a dataset name cannot put the default folder outside outputs/.
* scripts/evaluate_checkpoint.py on a missing or unfinished folder, an unknown split, --batch_size 0, an
  unwritable --output; the training scripts on a bogus --attention_type, a file as --output_dir,
  --validation_fraction 1.0, --max_train_samples 0, an unreachable Hub with --push_to_hub: exit 2 (1 for the Hub),
  before the data loads. The commands run in this process, through the modules behind the scripts.

Training runs use the shipped JapaneseVowels set and tests/fixtures, one epoch of a tiny model.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
from transformers import AutoModelForSequenceClassification, TrainingArguments

import hf_primaldual  # noqa: F401  (registers the Auto classes)
from hf_primaldual import training
from hf_primaldual.training import output_folder
from hf_primaldual.training import run as training_run
from hf_primaldual.cli import evaluate_checkpoint as evaluate_script
from hf_primaldual.cli import train_image as image_script
from hf_primaldual.cli import train_timeseries as timeseries_script
from hf_primaldual.hub import FolderNotReadyError, list_push_files
from hf_primaldual.training import FINAL_FILES_MARKER, TrainingDivergedError, save_hub_ready_folder

from helpers import FIXTURES
from helpers import REPO_ROOT as REPO
from helpers.hub_clients import patch_hub_in_process
from helpers.hub_server import HubServer

BASIC_MOTIONS = FIXTURES / "BasicMotions"
FASHION_SAMPLE = FIXTURES / "fashion-mnist-sample"
TINY = ["--num_train_epochs", "1", "--hidden_size", "16", "--num_hidden_layers", "1", "--num_attention_heads", "2",
        "--intermediate_size", "32"]


def train(*args: str, cwd: Path = REPO, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])
    command = [sys.executable, str(REPO / "scripts" / "train_timeseries.py"), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd)


def hashes(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished output folder (one epoch of a tiny Attention-BN model, with its checkpoint-17)."""
    folder = tmp_path_factory.mktemp("safety") / "jv-bn"
    result = train("--output_dir", str(folder), *TINY)
    assert result.returncode == 0, result.stderr[-4000:]
    return folder


@pytest.fixture
def run_copy(finished_run: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(finished_run, copy)
    return copy


def run_main(module: ModuleType, argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """A training command's exit status and stderr, run in this process."""
    code = module.main(argv)
    return code, capsys.readouterr().err


@pytest.fixture
def no_data(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if a script reads its data: these arguments must be refused before that."""

    def refuse(*args, **kwargs):
        raise AssertionError("the data was loaded before the arguments were checked")

    monkeypatch.setattr(timeseries_script, "load_timeseries", refuse)
    monkeypatch.setattr(image_script, "load_image_dataset", refuse)


# ------------------------------------------------------------------------------------------------ finished and true


@pytest.mark.slow  # finished_run: a training run
def test_interrupted_final_save_into_a_finished_folder_is_not_finished(run_copy: Path, monkeypatch) -> None:
    """A second run's final save dies after moving its first file in: the folder holds new files beside the old
    config and metrics, and must not look finished (push refuses it)."""
    model = AutoModelForSequenceClassification.from_pretrained(run_copy)
    moves = []

    def dying_replace(source, destination):
        if moves:
            raise KeyboardInterrupt  # the second move: the process is killed during the final save
        moves.append(destination)
        os.rename(source, destination)

    monkeypatch.setattr(output_folder.os, "replace", dying_replace)
    with pytest.raises(KeyboardInterrupt):
        save_hub_ready_folder(model, run_copy, {"test_accuracy_final": 0.5, "eval_history": []}, "# new card\n")
    assert moves and (run_copy / "config.json").is_file()
    with pytest.raises(FolderNotReadyError, match="training_metrics.json missing"):
        list_push_files(run_copy)


@pytest.mark.slow  # finished_run
def test_resume_with_other_model_arguments_is_refused(run_copy: Path, capsys) -> None:
    before = hashes(run_copy)
    code, message = run_main(
        timeseries_script,
        ["--output_dir", str(run_copy), *TINY, "--num_train_epochs", "2", "--resume_from_checkpoint", "last",
         "--attention_type", "softmax"],
        capsys,
    )
    assert code == 2, message
    assert "checkpoint-17 was trained with other model settings" in message
    assert "attention_type='bn' (this run: 'softmax')" in message and "another --output_dir" in message
    assert hashes(run_copy) == before


def test_output_dir_with_the_users_own_files_is_refused(tmp_path: Path, capsys, no_data) -> None:
    own = tmp_path / "mine"
    own.mkdir()
    (own / "README.md").write_text("my notes\n")
    (own / "config.json").write_text('{"mine": true}\n')
    before = hashes(own)
    code, message = run_main(timeseries_script, ["--output_dir", str(own), *TINY], capsys)
    assert code == 2 and "not from a training run of this project (README.md, config.json)" in message
    assert "--overwrite_output_dir" in message and hashes(own) == before


@pytest.mark.slow  # finished_run and a second training run
def test_overwrite_flag_and_our_own_folders_are_accepted(finished_run: Path, tmp_path: Path) -> None:
    """--overwrite_output_dir writes into a folder of other files; a finished folder of ours is no obstacle."""
    args = TrainingArguments(output_dir=str(finished_run))
    output_folder.check_output_folder(args)  # ours: no error
    own = tmp_path / "mine"
    own.mkdir()
    (own / "README.md").write_text("my notes\n")
    result = train("--output_dir", str(own), *TINY, "--overwrite_output_dir", "--save_strategy", "no")
    assert result.returncode == 0, result.stderr[-3000:]
    assert (own / FINAL_FILES_MARKER).is_file()


@pytest.mark.slow  # a training run
def test_train_path_run_is_named_after_its_file(tmp_path: Path) -> None:
    result = train("--dataset", str(BASIC_MOTIONS / "BasicMotions_TRAIN.ts"), "--test_file",
                   str(BASIC_MOTIONS / "BasicMotions_TEST.ts.gz"), *TINY, "--save_strategy", "no", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert [p.name for p in (tmp_path / "outputs").iterdir()] == ["timeseries-BasicMotions-bn"]
    assert (tmp_path / "outputs" / "timeseries-BasicMotions-bn" / FINAL_FILES_MARKER).is_file()


def test_default_output_dir_stays_inside_outputs(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("timeseries-../../../etc-bn", "../x", "..", "/abs/path", "a/b\\c", "image-.-softmax", ""):
        args = TrainingArguments(output_dir="trainer_output")
        training.set_default_output_dir(args, name)
        assert Path(args.output_dir).resolve().parent == (tmp_path / "outputs").resolve(), (name, args.output_dir)
        assert not Path(args.output_dir).name.startswith(".")
    args = TrainingArguments(output_dir="trainer_output")
    training.set_default_output_dir(args, "timeseries-../../etc-bn")
    assert args.output_dir == str(Path("outputs") / "timeseries-etc-bn")


@pytest.mark.slow  # finished_run and a second training run
def test_diverged_run_stops_and_is_never_saved_as_finished(run_copy: Path, tmp_path: Path) -> None:
    before = hashes(run_copy)
    fresh = tmp_path / "fresh"
    for folder in (fresh, run_copy):  # a new folder, and a new run into a finished one
        result = train("--output_dir", str(folder), *TINY, "--learning_rate", "1e30")
        assert result.returncode == 1, result.stderr[-3000:]
        assert "Training diverged at step" in result.stderr and "NaN or infinite" in result.stderr
        assert "Lower --learning_rate" in result.stderr and "Traceback" not in result.stderr
    assert not (fresh / FINAL_FILES_MARKER).exists() and not list(fresh.glob("checkpoint-*"))
    with pytest.raises(FolderNotReadyError):
        list_push_files(fresh)
    assert hashes(run_copy) == before  # the earlier finished model is kept as it was


def test_non_finite_weights_are_named_and_huge_finite_ones_are_not() -> None:
    """Each step's check: NaN and infinite tensors are named; weights so large that their norm overflows are not."""
    import torch

    named = [("a", torch.ones(3)), ("nan", torch.tensor([1.0, float("nan")])), ("steps", torch.arange(3)),
             ("inf", torch.tensor([float("-inf")], dtype=torch.float64)), ("b", torch.zeros(2, 2))]
    assert output_folder.non_finite_tensors(named) == ["nan", "inf"]
    assert output_folder.non_finite_tensors([("huge", torch.full((4,), 3e38)), ("a", torch.ones(2))]) == []
    assert output_folder.non_finite_tensors([("a", torch.ones(2)), ("steps", torch.arange(3))]) == []


@pytest.mark.slow  # finished_run
def test_a_model_with_nan_weights_is_not_saved(run_copy: Path) -> None:
    model = AutoModelForSequenceClassification.from_pretrained(run_copy)
    with __import__("torch").no_grad():
        next(model.parameters()).fill_(float("nan"))
    before = hashes(run_copy)
    with pytest.raises(TrainingDivergedError, match="NaN or infinite weights"):
        save_hub_ready_folder(model, run_copy, {"test_accuracy_final": 0.1}, "# card\n")
    assert hashes(run_copy) == before


# ------------------------------------------------------------------------------------------------ refused arguments


@pytest.mark.parametrize(
    ("script", "argv", "expected"),
    [
        ("timeseries", ["--attention_type", "bogus"], "--attention_type: Unknown attention_type 'bogus'"),
        ("image", ["--dataset", "x", "--attention_type", "bogus"], "Choose one of: softmax"),
        ("timeseries", ["--output_dir", "{file}"], "is a file: give a folder"),
        ("timeseries", ["--validation_fraction", "1.0"], "--validation_fraction 1.0: give a fraction"),
        ("image", ["--dataset", "x", "--validation_fraction", "-0.1"], "in [0, 1)"),
        ("image", ["--dataset", "x", "--max_train_samples", "0"], "--max_train_samples 0: give a number of images"),
        ("image", ["--dataset", "x", "--max_eval_samples", "0"], "or leave it out to use all"),
        ("timeseries", ["--output_dir", "{new}", "--resume_from_checkpoint", "last"], "no complete checkpoint-N folder"),
    ],
)
def test_training_scripts_refuse_bad_arguments_before_reading_data(
    script: str, argv: list[str], expected: str, tmp_path: Path, capsys, no_data
) -> None:
    (tmp_path / "a-file").write_text("not a folder\n")
    argv = [a.format(file=tmp_path / "a-file", new=tmp_path / "new") for a in argv]
    if "--output_dir" not in argv:
        argv += ["--output_dir", str(tmp_path / "out")]
    module = timeseries_script if script == "timeseries" else image_script
    code, message = run_main(module, argv, capsys)
    assert code == 2 and message.startswith("error: ") and expected in message, message
    assert "Traceback" not in message and not (tmp_path / "out").exists()


@pytest.mark.hub  # a test Hub server, stopped
def test_unreachable_hub_with_push_to_hub_is_reported_at_start(tmp_path: Path, monkeypatch, capsys, no_data) -> None:
    hub = HubServer().start()
    port = hub.port
    hub.stop()
    patch_hub_in_process(monkeypatch, hub.env(tmp_path / "down"))
    code, message = run_main(
        timeseries_script, ["--output_dir", str(tmp_path / "out"), "--push_to_hub", "--hub_model_id", "user/jv"], capsys
    )
    assert code == 1, message
    assert f"Cannot reach the Hub at http://127.0.0.1:{port}" in message and "HF_ENDPOINT" in message
    assert "Nothing was trained" in message and not (tmp_path / "out").exists()


def run_evaluate(argv: list[str], capsys) -> tuple[int, str]:
    try:
        code = evaluate_script.main(argv)
    except SystemExit as exit_:
        return exit_.code, capsys.readouterr().err
    return code, capsys.readouterr().err


@pytest.mark.slow  # finished_run
def test_evaluate_refuses_bad_arguments(run_copy: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a-file").write_text("x\n")
    unfinished = tmp_path / "unfinished"
    shutil.copytree(run_copy, unfinished)
    (unfinished / FINAL_FILES_MARKER).unlink()
    cases = [
        ([str(tmp_path / "missing"), "JapaneseVowels"], "missing is not a folder"),
        ([str(unfinished), "JapaneseVowels"], "has not finished"),
        ([str(run_copy / "checkpoint-17" / "optimizer.pt"), "JapaneseVowels"], "is not a folder"),
        ([str(run_copy), "JapaneseVowels", "--split", "validation"], "Unknown split 'validation' of JapaneseVowels"),
        ([str(run_copy), "JapaneseVowels", "--batch_size", "0"], "--batch_size: 0: give a number >= 1"),
        ([str(run_copy), "JapaneseVowels", "--output", str(tmp_path / "a-file" / "cm.png")], "cannot write"),
        ([str(run_copy), "JapaneseVowels", "--output", str(tmp_path)], "cannot write"),
    ]
    for argv, expected in cases:
        code, message = run_evaluate(argv, capsys)
        assert code == 2 and expected in message, (argv, message)
        assert "Traceback" not in message
    code, _ = run_evaluate([str(run_copy / "checkpoint-17"), "JapaneseVowels", "--output", "cm.png"], capsys)
    assert code == 0 and (tmp_path / "cm.png").is_file()  # a checkpoint-N folder is a model too


@pytest.mark.slow  # finished_run
def test_evaluate_writes_its_plot_outside_the_model_folder(run_copy: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    before = hashes(run_copy)
    summary = evaluate_script.run([str(run_copy), "JapaneseVowels"])
    plot = Path(summary["confusion_matrix"])
    assert plot.is_file() and plot.stat().st_size > 10_000
    assert not plot.resolve().is_relative_to(run_copy.resolve()) and hashes(run_copy) == before
    assert plot == Path("outputs") / "evaluations" / "run-JapaneseVowels-test-confusion_matrix.png"
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["accuracy"] == summary["accuracy"]


# --- One run per output folder, checked before the data; resuming only this run's complete checkpoints ----------


def test_a_second_run_on_a_folder_in_use_is_refused_at_once(tmp_path: Path, capsys, no_data) -> None:
    """Two runs started into one --output_dir both finished and the folder held one of them: the second is
    refused while the first holds the folder, and a killed first run leaves it free."""
    folder = tmp_path / "out"
    folder.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from filelock import FileLock; lock = FileLock(sys.argv[1]); lock.acquire(); "
         "print('held', flush=True); time.sleep(120)", str(folder / output_folder.LOCK_FILE)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        code, message = run_main(timeseries_script, ["--output_dir", str(folder), *TINY], capsys)
        assert code == 2 and "is in use by another training run" in message and "another --output_dir" in message
    finally:
        holder.kill()  # as a killed run: the OS releases its lock
        holder.wait()
    with output_folder.output_folder_lock(TrainingArguments(output_dir=str(folder))):
        pass


def test_an_unwritable_output_location_is_refused_before_the_data(capsys, no_data) -> None:
    if not Path("/sys").is_dir():
        pytest.skip("needs /sys (sysfs refuses new folders, even to root) as a location that cannot be written")
    code, message = run_main(timeseries_script, ["--output_dir", "/sys/hf-primaldual-out", *TINY], capsys)
    assert code == 2 and "--output_dir /sys/hf-primaldual-out cannot be written" in message, message


def test_a_full_disk_is_found_before_training(tmp_path: Path, capsys, monkeypatch) -> None:
    def no_training(*args, **kwargs):
        raise AssertionError("a Trainer was built although the checkpoints cannot fit")

    monkeypatch.setattr(training_run, "Trainer", no_training)
    monkeypatch.setattr(output_folder.shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**9, 10**9, 1000))
    code, message = run_main(timeseries_script, ["--output_dir", str(tmp_path / "out"), *TINY], capsys)
    assert code == 2 and "has 0.0 MB free, and the run needs about" in message and "--save_total_limit" in message


@pytest.mark.slow  # finished_run
@pytest.mark.parametrize(
    "cut, said", [("trainer_state.json", "it has no trainer_state.json"), ("model.safetensors", "it holds no weights")]
)
def test_resume_last_skips_a_checkpoint_cut_short(run_copy: Path, cut: str, said: str, caplog) -> None:
    """A process killed while saving checkpoint-N leaves it without the files written last: `last` must resume
    the newest complete checkpoint, saying which it skipped, not the partial one."""
    (complete,) = run_copy.glob("checkpoint-*")
    partial = run_copy / "checkpoint-999"
    shutil.copytree(complete, partial)
    (partial / cut).unlink()
    args = TrainingArguments(output_dir=str(run_copy), resume_from_checkpoint="last")
    with caplog.at_level("WARNING"):
        assert training.resolve_resume(args) == str(complete)
    assert f"skipping checkpoint-999 ({said}" in caplog.text


@pytest.mark.slow  # finished_run
@pytest.mark.parametrize(
    "changed, expected",
    [
        (["--learning_rate", "0.01"], "learning_rate=0.001 (this run: 0.01)"),
        (["--seed", "7"], "seed=42 (this run: 7)"),
        (["--per_device_train_batch_size", "8"], "per_device_train_batch_size=16 (this run: 8)"),
        (["--test_fraction", "0.3"], "data.test_fraction=0.2 (this run: 0.3)"),
    ],
)
def test_resume_under_other_training_arguments_is_refused(run_copy: Path, changed, expected, capsys) -> None:
    """`last` in a folder holding another run's checkpoint continued that run and reported it under this run's
    learning rate and seed: a checkpoint resumes only under the arguments of its own run."""
    before = hashes(run_copy)
    code, message = run_main(
        timeseries_script,
        ["--output_dir", str(run_copy), "--resume_from_checkpoint", "last", *TINY, *changed], capsys,
    )
    assert code == 2 and "belongs to another run" in message and expected in message, message
    assert hashes(run_copy) == before


@pytest.mark.hub
@pytest.mark.parametrize(
    "repo_id, expected",
    [
        ("user/bad..name", "is not a valid Hub repo id"),
        ("someone-else/jv", "(creating the repo before training)"),
    ],
)
def test_a_hub_repo_that_cannot_be_written_is_found_before_the_data(
    repo_id: str, expected: str, hub_env, tmp_path: Path, capsys, no_data
) -> None:
    code, message = run_main(
        timeseries_script, ["--output_dir", str(tmp_path / "out"), "--push_to_hub", "--hub_model_id", repo_id, *TINY],
        capsys,
    )
    assert code == 1 and expected in message and "othing was trained" in message, message
    assert "Traceback" not in message and not (tmp_path / "out").exists()


def test_a_staging_folder_left_by_a_killed_save_is_removed_by_the_next_run(tmp_path: Path, caplog) -> None:
    folder = tmp_path / "out"
    left = folder / ".staging-k1ll3d"
    left.mkdir(parents=True)
    (left / "model.safetensors").write_bytes(b"half a file")
    (folder / "checkpoint-3").mkdir()
    with caplog.at_level("WARNING"), output_folder.output_folder_lock(TrainingArguments(output_dir=str(folder))):
        assert not left.exists() and (folder / "checkpoint-3").is_dir()
    assert ".staging-k1ll3d, left by a save that was interrupted" in caplog.text
