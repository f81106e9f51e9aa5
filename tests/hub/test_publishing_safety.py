"""What gets published, against the test Hub server (tests/helpers/hub_server.py): no token in any uploaded file of any
commit, no file reached through a link leaving the folder, only the files a model repo needs (no credentials, other
pickles, event files or nested checkpoints), and argument errors of the push script exit with 2 before anything is
sent.

The training run is one epoch of a tiny Attention-BN model on the shipped JapaneseVowels set.
"""

from __future__ import annotations

import io
import logging
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from transformers import TrainingArguments

from hf_primaldual.hub import FolderNotReadyError, plan_push, push_output_folder

from helpers import REPO_ROOT
from helpers.hub_clients import HubEnv, client_environ, load_script
from helpers.hub_server import HubServer

TINY = ["--num_train_epochs", "2", "--hidden_size", "16", "--num_hidden_layers", "1", "--num_attention_heads", "2",
        "--intermediate_size", "32"]
MODEL_FILES = {"README.md", "config.json", "model.safetensors", "preprocessor_config.json", "training_metrics.json"}


push_script = load_script("push_to_hub")


@dataclass
class TokenRun:
    hub: HubServer
    folder: Path
    repo_id: str
    token: str
    stderr: str


@pytest.fixture(scope="module")
def token_run(hub_server: HubServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TokenRun]:
    """A training run pushing every epoch (``--hub_strategy every_save``) with the token given only as
    ``--hub_token``: no HF_TOKEN in the environment, no saved token."""
    base = tmp_path_factory.mktemp("token-run")
    token = f"hf_{secrets.token_hex(20)}"
    hub_server.add_token(token, hub_server.user)
    repo_id = hub_server.new_repo_id("token-run")
    folder = base / "jv-bn"
    env = {**client_environ(hub_server.env(base / "client", token=None)), "TQDM_DISABLE": "1"}
    assert "HF_TOKEN" not in env
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "train_timeseries.py"), "--output_dir", str(folder), *TINY,
         "--push_to_hub", "--hub_model_id", repo_id, "--hub_strategy", "every_save", "--hub_token", token],
        env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=400,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    yield TokenRun(hub_server, folder, repo_id, token, result.stderr)


@pytest.mark.slow  # token_run: a training run pushed
def test_hub_token_is_in_no_uploaded_blob_of_any_commit(token_run: TokenRun, tmp_path: Path) -> None:
    needle = token_run.token.encode()
    # The search finds the token where it used to be: in a pickled TrainingArguments.
    control = io.BytesIO()
    torch.save(TrainingArguments(output_dir=str(tmp_path), hub_token=token_run.token), control)
    assert needle in control.getvalue()

    uploaded = token_run.hub.every_commit_file(token_run.repo_id)
    commits = {oid for oid, _, _ in uploaded}
    assert len(commits) >= 3  # the repo's creation, two "Training in progress" pushes, "End of training"
    assert any(path == "training_args.bin" for _, path, _ in uploaded)  # the Trainer did upload its arguments
    leaks = [(oid[:8], path) for oid, path, data in uploaded if needle in data]
    assert not leaks, f"the token is in {leaks}"
    assert not any(needle in blob for blob in token_run.hub.stored_blobs())
    local = [p for p in token_run.folder.rglob("*") if p.is_file() and needle in p.read_bytes()]
    assert not local, f"the token is in {local}"  # nor in a checkpoint that could be pushed later
    assert token_run.token not in token_run.stderr


def finished_copy(token_run: TokenRun, tmp_path: Path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(token_run.folder, copy)
    return copy


@pytest.mark.slow  # token_run
def test_links_leaving_the_folder_are_refused(token_run: TokenRun, hub_env: HubEnv, tmp_path: Path, capsys) -> None:
    folder = finished_copy(token_run, tmp_path)
    saved_token = tmp_path / "home" / ".cache" / "huggingface" / "token"
    saved_token.parent.mkdir(parents=True)
    secret = f"hf_{secrets.token_hex(20)}"
    saved_token.write_text(secret)
    (folder / "notes.md").symlink_to(saved_token)
    (folder / "card.md").symlink_to(folder / "README.md")  # a link inside the folder is harmless
    requests = len(hub_env.hub.requests)
    code = push_script.main([str(folder), hub_env.hub.new_repo_id("links")])
    message = capsys.readouterr().err
    assert code == 2 and f"notes.md -> {saved_token}" in message and "Nothing was pushed" in message
    assert "card.md" not in message.split("links to files outside")[1]
    assert len(hub_env.hub.requests) == requests
    assert not any(secret.encode() in blob for blob in hub_env.hub.stored_blobs())
    (folder / "notes.md").unlink()
    (tmp_path / "elsewhere.json").write_text((folder / "config.json").read_text())
    (folder / "config.json").unlink()
    (folder / "config.json").symlink_to(tmp_path / "elsewhere.json")  # a published name too
    with pytest.raises(FolderNotReadyError, match="links to files outside"):
        plan_push(folder)


@pytest.mark.slow  # token_run
def test_only_what_a_model_repo_needs_is_published(token_run: TokenRun, hub_env: HubEnv, tmp_path: Path,
                                                  caplog) -> None:
    folder = finished_copy(token_run, tmp_path)
    code_files = {p.name for p in folder.glob("*.py")}
    assert code_files >= {"modeling_primaldual_timeseries.py", "attention.py"}
    secret = f"hf_{secrets.token_hex(20)}"
    strays = {
        "token": secret, ".env": f"HF_TOKEN={secret}\n", "id_rsa": secret, "credentials": secret, "server.pem": secret,
        "hf_token.txt": secret, "notes.txt": "notes\n", "events.out.tfevents.1700000000.host.1.0": secret,
    }
    for name, content in strays.items():
        (folder / name).write_text(content)
    torch.save({"optimizer": {"secret": secret}}, folder / "pytorch_model.bin")  # a pickle under another name
    torch.save({"secret": secret}, folder / "extra_state.pt")
    nested = folder / "extras" / "checkpoint-5"
    nested.mkdir(parents=True)
    (nested / "model.safetensors").write_bytes((folder / "model.safetensors").read_bytes())
    (nested / "token").write_text(secret)

    repo_id = hub_env.hub.new_repo_id("allow-list")
    with caplog.at_level(logging.WARNING, logger="hf_primaldual.hub"):
        push_output_folder(folder, repo_id)
    published = set(hub_env.hub.files(repo_id))
    assert published == MODEL_FILES | code_files | {".gitattributes"}
    assert not any(secret.encode() in data for _, _, data in hub_env.hub.every_commit_file(repo_id))
    report = caplog.text
    for name in ("token", ".env", "id_rsa", "credentials", "server.pem", "hf_token.txt"):
        assert f"  {name}: named like a credential" in report
    assert "pytorch_model.bin: pickled state" in report and "extra_state.pt: pickled state" in report
    assert "tfevents.1700000000.host.1.0: a TensorBoard event file" in report and "extras/: a folder" in report
    assert "checkpoint-17" not in report and "training_args.bin" not in report  # expected training state: no noise


@pytest.mark.slow  # token_run
def test_pickle_under_a_published_name_is_refused(token_run: TokenRun, tmp_path: Path) -> None:
    folder = finished_copy(token_run, tmp_path)
    torch.save({"weights": torch.ones(2)}, folder / "model.safetensors")
    with pytest.raises(FolderNotReadyError, match="is not a safetensors file"):
        plan_push(folder)


@pytest.mark.slow  # token_run
def test_push_argument_errors_exit_2_before_any_request(token_run: TokenRun, hub_env: HubEnv, capsys) -> None:
    folder = str(token_run.folder)
    requests = len(hub_env.hub.requests)
    cases = [
        ([folder, "not a repo id!"], "Invalid repo id"),
        ([folder, "user/x", "--revision", "0" * 40], "Cannot push to the commit id"),
        ([folder, "user/x", "--tag", "v1", "--create_pr"], "A tag cannot be put on a pull request"),
        ([folder + "-missing", "user/x"], "is not a folder"),
    ]
    for argv, expected in cases:
        code = push_script.main(argv)
        message = capsys.readouterr().err
        assert code == 2 and expected in message, (argv, message)
    assert len(hub_env.hub.requests) == requests
    with pytest.raises(SystemExit) as exit_:  # argparse's own errors: 2 as well
        push_script.main([folder])
    assert exit_.value.code == 2


def test_token_of_the_arguments_is_kept_in_memory_for_the_pushes(tmp_path: Path) -> None:
    """The arguments drop --hub_token only when pickled: the Trainer's pushes still have it."""
    import pickle

    from hf_primaldual.training import EpochTrainingArguments

    args = EpochTrainingArguments(output_dir=str(tmp_path), hub_token="hf_secret_value")
    restored = pickle.loads(pickle.dumps(args))
    assert args.hub_token == "hf_secret_value" and restored.hub_token is None
    assert restored.output_dir == args.output_dir and os.fspath(restored.output_dir)
