"""Sharing on the Hub end to end, with the real clients against the test Hub server (helpers/hub_server.py) and olah.

* The training scripts push with the Trainer's own flags (``--push_to_hub --hub_model_id``): the repo ends up holding
  exactly the hub-ready folder with our model card (not the Trainer's), the placeholder repo id replaced.
* ``scripts/push_to_hub.py`` publishes a folder (tag, card tags), a second version goes to a branch; each version
  loads by branch, tag and commit sha.
* A fresh interpreter with empty caches, where ``hf_primaldual`` cannot be imported, loads everything with
  ``trust_remote_code=True`` (models, the time-series feature extractor) and gets the local folders' outputs.
* The download half through olah, a third-party mirror.
* Failures (server down, bad token, another user's repo, a tag as revision, an existing repo, an interrupted
  upload, an unfinished folder) give a clear message and exit code, leave the folder untouched, and a retry works.

Training and the pushes are shared by the module's fixtures (two tiny runs in parallel processes).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from huggingface_hub import HfApi, ModelCard
from safetensors import safe_open
from safetensors.torch import save_file
from transformers import AutoFeatureExtractor, AutoModelForImageClassification, AutoModelForSequenceClassification

import hf_primaldual  # noqa: F401  (registers the Auto classes)
from helpers import FIXTURES, REPO_ROOT
from hf_primaldual.hub import (
    REPO_ID_PLACEHOLDER,
    FolderNotReadyError,
    HubPushError,
    card_for_repo,
    list_push_files,
    push_from_trainer,
    push_output_folder,
)
from helpers.hub_clients import HubEnv, client_environ, load_script, patch_hub_in_process, run_client
from helpers.hub_server import OTHER_TOKEN, HubServer
from helpers.without_package import WITHOUT_PACKAGE

pytestmark = pytest.mark.slow  # training runs pushed by the scripts, fresh interpreters

FASHION_SAMPLE = FIXTURES / "fashion-mnist-sample"
TINY_TIMESERIES = ["--num_train_epochs", "1", "--hidden_size", "16", "--num_hidden_layers", "1",
                   "--num_attention_heads", "2", "--intermediate_size", "32"]
TINY_VIT = ["--dataset", str(FASHION_SAMPLE), "--num_train_epochs", "1", "--hidden_size", "24",
            "--num_hidden_layers", "1", "--num_attention_heads", "3", "--intermediate_size", "48",
            "--per_device_train_batch_size", "8"]


def folder_hashes(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder`` (checkpoints included), to prove a push leaves it untouched."""
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def published_files(folder: Path, repo_id: str, card_tags: tuple[str, ...] = ()) -> dict[str, bytes]:
    """What a push of ``folder`` to ``repo_id`` must put in the repo (besides .gitattributes)."""
    files = {f.path_in_repo: f.local_path.read_bytes() for f in list_push_files(folder)}
    files["README.md"] = card_for_repo(files["README.md"].decode(), repo_id, card_tags).encode()
    return files


def start_script(script: str, args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(REPO_ROOT / "scripts" / script), *args],
        env={**client_environ(env), "TQDM_DISABLE": "1"},
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc: subprocess.Popen[str], timeout: float = 400) -> str:
    stdout, stderr = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, f"{proc.args}\n{stdout[-3000:]}\n{stderr[-6000:]}"
    return stdout


def shift_weights(folder: Path, delta: float) -> None:
    """Another version of a checkpoint: ``delta`` added to every floating-point weight."""
    with safe_open(folder / "model.safetensors", "pt") as weights:
        tensors = {name: weights.get_tensor(name) for name in weights.keys()}
        meta = weights.metadata()
    shifted = {name: t + delta if t.is_floating_point() else t for name, t in tensors.items()}
    save_file(shifted, folder / "model.safetensors", metadata=meta)


push_script = load_script("push_to_hub")


# ------------------------------------------------------------------------------------------------ shared runs


@dataclass
class Runs:
    hub: HubServer
    base: Path
    ts_folder: Path
    vit_folder: Path
    ts_trainer_repo: str
    vit_trainer_repo: str
    script_repo: str
    script_stdout: str
    hashes_before_script: dict[str, str]
    v1_sha: str


@pytest.fixture(scope="module")
def runs(hub_server: HubServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runs]:
    """Both training scripts with ``--push_to_hub`` (in parallel processes), then scripts/push_to_hub.py on the
    time-series folder (while the image run finishes)."""
    base = tmp_path_factory.mktemp("hub-roundtrip")
    ts_folder, vit_folder = base / "ts-run", base / "vit-run"
    ts_repo = hub_server.new_repo_id("ts-trainer")
    vit_name = hub_server.new_repo_id("vit-trainer").split("/")[1]  # no namespace: the token's user's
    script_repo = hub_server.new_repo_id("ts-script")
    ts = start_script(
        "train_timeseries.py",
        ["--output_dir", str(ts_folder), *TINY_TIMESERIES, "--push_to_hub", "--hub_model_id", ts_repo],
        hub_server.env(base / "client-ts"),
    )
    vit = start_script(
        "train_image.py",
        ["--output_dir", str(vit_folder), *TINY_VIT, "--push_to_hub", "--hub_model_id", vit_name,
         "--hub_strategy", "checkpoint", "--hub_private_repo", "true"],
        hub_server.env(base / "client-vit"),
    )
    try:
        assert "Pushed to " in finish(ts)
        hashes = folder_hashes(ts_folder)
        # scripts/push_to_hub.py, in this process (its imports cost a second interpreter ~10 s of CPU)
        out = io.StringIO()
        with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(out):
            patch_hub_in_process(mp, hub_server.env(base / "client-script"))
            code = push_script.main([str(ts_folder), script_repo, "--tag", "v1", "--card_tags", "japanese-vowels",
                                     "--commit_message", "v1: one epoch"])
        script_stdout = out.getvalue()
        assert code == 0, script_stdout
        assert "Pushed to " in finish(vit)
    finally:
        for proc in (ts, vit):
            if proc.poll() is None:
                proc.kill()
    yield Runs(
        hub=hub_server, base=base, ts_folder=ts_folder, vit_folder=vit_folder, ts_trainer_repo=ts_repo,
        vit_trainer_repo=f"{hub_server.user}/{vit_name}", script_repo=script_repo, script_stdout=script_stdout,
        hashes_before_script=hashes, v1_sha=hub_server.commit_ids(script_repo, "v1")[0],
    )


@dataclass
class Versions:
    v2_folder: Path
    v2_sha: str
    inputs: dict[str, torch.Tensor]
    expected: dict[str, torch.Tensor]  # logits of the local folders: "ts" (= v1), "v2", "vit"


def ts_batch(folder: Path, series: list[torch.Tensor]):
    return AutoFeatureExtractor.from_pretrained(folder)(series)


@pytest.fixture(scope="module")
def versions(runs: Runs) -> Iterator[Versions]:
    """A second version (the weights changed) pushed in process to a new branch ``dev``, tagged ``v2``; the inputs
    and the local folders' logits."""
    v2 = runs.base / "ts-v2"
    shutil.copytree(runs.ts_folder, v2, ignore=shutil.ignore_patterns("checkpoint-*"))
    shift_weights(v2, 0.05)
    with pytest.MonkeyPatch.context() as mp:
        patch_hub_in_process(mp, runs.hub.env(runs.base / "client-v2"))
        info = push_output_folder(v2, runs.script_repo, revision="dev", tag="v2", commit_message="v2")
    generator = torch.Generator().manual_seed(0)
    series = [torch.randn(20, 12, generator=generator, dtype=torch.float64),
              torch.randn(29, 12, generator=generator, dtype=torch.float64)]
    pixel_values = torch.randn(2, 3, 32, 32, generator=generator)
    batch = ts_batch(runs.ts_folder, series)
    expected = {}
    with torch.no_grad():
        for key, folder in (("ts", runs.ts_folder), ("v2", v2)):
            model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
            expected[key] = model(**batch).logits
        vit = AutoModelForImageClassification.from_pretrained(runs.vit_folder).eval()
        expected["vit"] = vit(pixel_values).logits
    assert not torch.equal(expected["ts"], expected["v2"])
    yield Versions(v2, info.oid, {"series": series, "pixel_values": pixel_values, **batch}, expected)


# ------------------------------------------------------------------------------------------------ pushes


def test_trainer_push_holds_exactly_the_hub_ready_folder_and_our_card(runs: Runs) -> None:
    api = HfApi(endpoint=runs.hub.endpoint, token=runs.hub.token)
    files = runs.hub.files(runs.ts_trainer_repo)
    expected = published_files(runs.ts_folder, runs.ts_trainer_repo)
    assert set(files) == {*expected, ".gitattributes"}
    assert {path: files[path] for path in expected} == expected
    assert (runs.ts_folder / "training_args.bin").exists() and "training_args.bin" not in files  # pushed, then gone
    card = files["README.md"].decode()
    assert REPO_ID_PLACEHOLDER not in card and f'from_pretrained("{runs.ts_trainer_repo}"' in card
    assert "The following hyperparameters were used during training" not in card  # not the Trainer's card
    metrics = json.loads((runs.ts_folder / "training_metrics.json").read_text())
    result = ModelCard(card).data.eval_results[0]
    assert (result.task_type, result.dataset_split, result.metric_type) == (
        "tabular-classification", "test", "accuracy")  # a Hub task id (issue 21)
    assert result.metric_value == round(metrics["test_accuracy_final"], 4)
    titles = [commit.title for commit in api.list_repo_commits(runs.ts_trainer_repo)]
    assert titles[0] == "End of training" and "Training in progress, epoch 1" in titles

    # the image run: no namespace given (the token's user's), private, --hub_strategy checkpoint keeps last-checkpoint/
    info = api.model_info(runs.vit_trainer_repo)
    assert info.private is True
    files = runs.hub.files(runs.vit_trainer_repo)
    expected = published_files(runs.vit_folder, runs.vit_trainer_repo)
    assert {path: files[path] for path in expected} == expected
    extra = set(files) - set(expected) - {".gitattributes"}
    assert extra and all(path.startswith("last-checkpoint/") for path in extra)
    assert "last-checkpoint/trainer_state.json" in extra
    assert "pipeline_tag: image-classification" in files["README.md"].decode()


def test_push_script_publishes_the_folder_with_a_tag_and_card_tags(runs: Runs) -> None:
    assert f"Pushed {runs.ts_folder} to {runs.script_repo} (main): commit {runs.v1_sha}" in runs.script_stdout
    assert folder_hashes(runs.ts_folder) == runs.hashes_before_script  # only read
    files = runs.hub.files(runs.script_repo, "v1")
    expected = published_files(runs.ts_folder, runs.script_repo, ("japanese-vowels",))
    assert set(files) == {*expected, ".gitattributes"} and all(files[p] == expected[p] for p in expected)
    assert "- japanese-vowels" in files["README.md"].decode()
    api = HfApi(endpoint=runs.hub.endpoint, token=runs.hub.token)
    assert api.list_repo_commits(runs.script_repo, revision="v1")[0].title == "v1: one epoch"
    assert runs.hub.is_lfs(runs.script_repo, "model.safetensors")


def test_dry_run_lists_files_and_sizes_without_network(runs: Runs, capsys: pytest.CaptureFixture[str]) -> None:
    requests = len(runs.hub.requests)
    assert push_script.main([str(runs.ts_folder), "user/never-created", "--dry_run"]) == 0
    out = capsys.readouterr().out
    assert "nothing was sent" in out and "checkpoint-" not in out and "training_args.bin" not in out
    for file in list_push_files(runs.ts_folder):
        assert file.path_in_repo in out
    lines = push_output_folder(runs.ts_folder, "user/never-created", dry_run=True)
    weights = next(line for line in lines if line.startswith("model.safetensors\t"))
    assert int(weights.split("\t")[1]) == (runs.ts_folder / "model.safetensors").stat().st_size
    assert len(runs.hub.requests) == requests and not runs.hub.repo_exists("user/never-created")


def test_second_version_on_a_branch_with_a_tag(runs: Runs, versions: Versions) -> None:
    hub = runs.hub
    refs = HfApi(endpoint=hub.endpoint, token=hub.token).list_repo_refs(runs.script_repo)
    assert {b.name: b.target_commit for b in refs.branches} == {"main": runs.v1_sha, "dev": versions.v2_sha}
    assert {t.name: t.target_commit for t in refs.tags} == {"v1": runs.v1_sha, "v2": versions.v2_sha}
    assert hub.commit_ids(runs.script_repo, "dev")[1] == runs.v1_sha  # the branch started from main
    v2_weights = (versions.v2_folder / "model.safetensors").read_bytes()
    assert hub.files(runs.script_repo, "v2")["model.safetensors"] == v2_weights


# ------------------------------------------------------------------------------------------------ loading


LOADER = """
import json, torch
from transformers import (AutoFeatureExtractor, AutoImageProcessor, AutoModelForImageClassification,
                          AutoModelForSequenceClassification)
repos = json.load(open("repos.json"))
inputs = torch.load("inputs.pt")
outputs, kinds = {}, set()

def logits(auto_class, repo, revision=None, **batch):
    model = auto_class.from_pretrained(repo, revision=revision, trust_remote_code=True).eval()
    kinds.add(type(model).__module__.split(".")[0])
    with torch.no_grad():
        return model(**batch).logits

extractor = AutoFeatureExtractor.from_pretrained(repos["ts_trainer"], trust_remote_code=True)
kinds.add(type(extractor).__module__.split(".")[0])
batch = dict(extractor(inputs["series"]))
outputs["batch"] = batch
outputs["ts_trainer"] = logits(AutoModelForSequenceClassification, repos["ts_trainer"], **batch)
for revision in ("main", "v1", repos["v1_sha"], "dev", "v2", repos["v2_sha"]):
    outputs[revision] = logits(AutoModelForSequenceClassification, repos["script"], revision, **batch)
outputs["vit"] = logits(AutoModelForImageClassification, repos["vit_trainer"], pixel_values=inputs["pixel_values"])
processor = AutoImageProcessor.from_pretrained(repos["vit_trainer"])
outputs["processor"] = type(processor).__name__
torch.save(outputs, "outputs.pt")
print(json.dumps(sorted(kinds)))
"""


def test_pushed_models_load_without_the_package(runs: Runs, versions: Versions, tmp_path: Path) -> None:
    (tmp_path / "repos.json").write_text(json.dumps({
        "ts_trainer": runs.ts_trainer_repo, "vit_trainer": runs.vit_trainer_repo, "script": runs.script_repo,
        "v1_sha": runs.v1_sha, "v2_sha": versions.v2_sha,
    }))
    torch.save({"series": versions.inputs["series"], "pixel_values": versions.inputs["pixel_values"]},
               tmp_path / "inputs.pt")
    env = runs.hub.env(tmp_path / "loader")  # empty caches, a fresh interpreter, no hf_primaldual
    proc = run_client(WITHOUT_PACKAGE + LOADER, env, cwd=tmp_path)
    assert json.loads(proc.stdout.splitlines()[-1]) == ["transformers_modules"]  # the repos' own code
    outputs = torch.load(tmp_path / "outputs.pt")
    for name in ("past_values", "attention_mask"):
        assert torch.equal(outputs["batch"][name], versions.inputs[name])
    assert torch.equal(outputs["ts_trainer"], versions.expected["ts"])
    for revision in ("main", "v1", runs.v1_sha):
        assert torch.equal(outputs[revision], versions.expected["ts"]), revision
    for revision in ("dev", "v2", versions.v2_sha):
        assert torch.equal(outputs[revision], versions.expected["v2"]), revision
    assert torch.equal(outputs["vit"], versions.expected["vit"])
    assert outputs["processor"].startswith("ViTImageProcessor")


def test_pushed_models_load_with_the_package_by_revision(
    runs: Runs, versions: Versions, hub_env: HubEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    batch = {name: versions.inputs[name] for name in ("past_values", "attention_mask")}
    with torch.no_grad():
        for revision, key in (("v1", "ts"), ("dev", "v2"), (versions.v2_sha, "v2")):
            model = AutoModelForSequenceClassification.from_pretrained(runs.script_repo, revision=revision).eval()
            assert type(model).__module__.startswith("hf_primaldual.")
            assert torch.equal(model(**batch).logits, versions.expected[key]), revision
    extractor = AutoFeatureExtractor.from_pretrained(runs.script_repo, revision="v2")
    assert type(extractor).__module__.startswith("hf_primaldual.") and extractor.is_fitted

    with pytest.raises(OSError, match="no-such-branch"):  # 404 RevisionNotFound: no retries, a clear message
        AutoModelForSequenceClassification.from_pretrained(runs.script_repo, revision="no-such-branch")
    monkeypatch.setenv("HF_TOKEN", OTHER_TOKEN)
    with pytest.raises(OSError, match=runs.vit_trainer_repo):  # another user's private repo: 404 RepoNotFound
        AutoModelForImageClassification.from_pretrained(runs.vit_trainer_repo)


def test_download_half_through_olah(runs: Runs, versions: Versions, tmp_path: Path) -> None:
    pytest.importorskip("olah", reason="olah is not installed (pip install olah)")
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    from helpers.olah_mirror import OlahMirror

    repo_id = "mirror-org/ts-bn"
    files = published_files(runs.ts_folder, repo_id)
    weights = files.pop("model.safetensors")
    mirror = OlahMirror(tmp_path / "olah")
    sha = mirror.add_repo(repo_id, files, lfs={"model.safetensors": weights}, message="Add model", tag="v1")
    torch.save({"series": versions.inputs["series"]}, tmp_path / "inputs.pt")
    code = WITHOUT_PACKAGE + f"""
import json, torch
from transformers import AutoFeatureExtractor, AutoModelForSequenceClassification
series = torch.load("inputs.pt")["series"]
extractor = AutoFeatureExtractor.from_pretrained({repo_id!r}, revision="v1", trust_remote_code=True)
model = AutoModelForSequenceClassification.from_pretrained({repo_id!r}, revision={sha!r}, trust_remote_code=True)
assert type(model).__module__.startswith("transformers_modules."), type(model).__module__
with torch.no_grad():
    torch.save(model.eval()(**extractor(series)).logits, "logits.pt")
"""
    with mirror:
        env = {**runs.hub.env(tmp_path / "client", token=None), "HF_ENDPOINT": mirror.endpoint}
        run_client(code, env, cwd=tmp_path)
    assert torch.equal(torch.load(tmp_path / "logits.pt"), versions.expected["ts"])


# ------------------------------------------------------------------------------------------------ failures


def run_push(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = push_script.main(argv)
    captured = capsys.readouterr()
    return code, captured.err + captured.out


@pytest.fixture
def folder(runs: Runs, tmp_path: Path) -> Path:
    """A finished output folder of our own (checkpoints included), to push to fresh repos."""
    copy = tmp_path / "run"
    shutil.copytree(runs.ts_folder, copy)
    return copy


def test_unfinished_folders_are_refused(folder: Path, hub_env: HubEnv, capsys) -> None:
    requests = len(hub_env.hub.requests)
    # a checkpoint-N folder holds a whole model: published with a card rendered from its trainer_state.json
    checkpoint = next(folder.glob("checkpoint-*"))
    code, message = run_push([str(checkpoint), "user/x", "--dry_run"], capsys)
    assert code == 0 and "README.md" in message and "optimizer.pt" not in message, message
    # the run's folder with the training command's card but without its metrics: the final save did not finish
    (folder / "training_metrics.json").unlink()
    code, message = run_push([str(folder), "user/x"], capsys)
    assert code == 2 and "not a finished output folder" in message and "--resume_from_checkpoint" in message
    with pytest.raises(FolderNotReadyError):
        push_output_folder(folder / "missing", "user/x")
    (folder / "training_metrics.json").write_text("{}")
    (folder / "README.md").write_text("---\ntags: [unclosed\n---\n# card\n")
    with pytest.raises(FolderNotReadyError, match="invalid metadata"):
        push_output_folder(folder, "user/x")
    assert len(hub_env.hub.requests) == requests


def test_server_down_then_retry(folder: Path, hub_env: HubEnv, tmp_path: Path, monkeypatch, capsys) -> None:
    hashes = folder_hashes(folder)
    hub = HubServer().start()
    port = hub.port
    hub.stop()
    patch_hub_in_process(monkeypatch, hub.env(tmp_path / "down"))
    code, message = run_push([str(folder), "user/tiny"], capsys)
    assert code == 1 and f"Cannot reach the Hub at http://127.0.0.1:{port}" in message
    assert "HF_ENDPOINT" in message and "run the same command again" in message
    assert folder_hashes(folder) == hashes
    with HubServer(port=port) as back:  # the server is back: the same command works
        code, message = run_push([str(folder), "user/tiny"], capsys)
        assert code == 0, message
        assert back.files("user/tiny")["model.safetensors"] == (folder / "model.safetensors").read_bytes()
    assert folder_hashes(folder) == hashes


def test_bad_token_then_retry(folder: Path, hub_env: HubEnv, monkeypatch, capsys) -> None:
    hashes = folder_hashes(folder)
    repo_id = hub_env.hub.new_repo_id("token")
    monkeypatch.setenv("HF_TOKEN", "hf_not_a_valid_token")
    code, message = run_push([str(folder), repo_id], capsys)
    assert code == 1 and "401" in message and "HF_TOKEN" in message and "hf_not_a_valid_token" not in message
    assert not hub_env.hub.repo_exists(repo_id)
    monkeypatch.setenv("HF_TOKEN", hub_env.token)
    assert run_push([str(folder), repo_id], capsys)[0] == 0
    assert folder_hashes(folder) == hashes


def test_another_users_repo_a_tag_as_revision_and_an_existing_repo(
    runs: Runs, folder: Path, hub_env: HubEnv, capsys
) -> None:
    hashes = folder_hashes(folder)
    hub = hub_env.hub
    private = hub.new_repo_id("theirs", namespace="other")
    HfApi(token=OTHER_TOKEN).create_repo(private, private=True)
    public = hub.new_repo_id("theirs-public", namespace="other")
    HfApi(token=OTHER_TOKEN).create_repo(public)
    for repo_id in (private, public):
        code, message = run_push([str(folder), repo_id], capsys)
        assert code == 1 and "No write access" in message and "your own namespace" in message, message
        assert len(hub.commit_ids(repo_id)) == 1

    before = hub.commit_ids(runs.script_repo, "main")
    code, message = run_push([str(folder), runs.script_repo, "--revision", "v1"], capsys)
    assert code == 1 and "is a tag" in message and "--revision" in message

    code, message = run_push([str(folder), runs.script_repo, "--fail_if_exists"], capsys)
    assert code == 1 and "already exists" in message and "--fail_if_exists" in message
    code, message = run_push(  # exist_ok, the same files as main (no commit); the tag v1 is taken
        [str(folder), runs.script_repo, "--tag", "v1", "--card_tags", "japanese-vowels"], capsys)
    assert code == 1 and "Tag 'v1' already exists" in message
    assert hub.commit_ids(runs.script_repo, "main") == before  # the same files: no empty commit was made

    code, message = run_push([str(folder), runs.script_repo, "--create_pr"], capsys)  # not supported by the server
    assert code == 1 and "400: Pull requests" in message

    with pytest.raises(HubPushError, match="public"):  # a private model is never pushed into a public repo
        push_output_folder(folder, runs.ts_trainer_repo, private=True)
    assert folder_hashes(folder) == hashes


def test_failed_final_push_of_a_training_run_keeps_the_folder_and_names_the_command(
    folder: Path, hub_env: HubEnv, tmp_path: Path
) -> None:
    """The training scripts' --push_to_hub ends with `push_from_trainer`: when that push fails, the saved folder is
    untouched and the error says how to publish it later (the console script, there in any install)."""
    from transformers import Trainer, TrainingArguments

    hashes = folder_hashes(folder)
    repo_id = hub_env.hub.new_repo_id("trainer-push-fails")
    args = TrainingArguments(tmp_path / "trainer", push_to_hub=True, hub_model_id=repo_id, report_to="none")
    trainer = Trainer(model=AutoModelForSequenceClassification.from_pretrained(folder), args=args)  # creates the repo
    before = hub_env.hub.commit_ids(repo_id)
    hub_env.hub.fail_next(r"/commit/main$", status=500, message="storage backend unavailable")
    with pytest.raises(HubPushError) as error:
        push_from_trainer(trainer, folder)
    message = str(error.value)
    assert "500: storage backend unavailable" in message
    assert f"saved in {folder}" in message and f"hf-primaldual-push {folder} {repo_id}" in message
    assert hub_env.hub.commit_ids(repo_id) == before and folder_hashes(folder) == hashes


def test_interrupted_upload_then_retry(folder: Path, hub_env: HubEnv, capsys) -> None:
    shift_weights(folder, -0.01)  # weights the server has not stored yet: they go through the LFS upload
    hashes = folder_hashes(folder)
    hub = hub_env.hub
    repo_id = hub.new_repo_id("interrupted")
    HfApi().create_repo(repo_id)
    before = hub.commit_ids(repo_id)

    # the LFS upload of the weights is cut mid-body (the client retries it by itself), then the connection drops
    # while the commit is sent
    lfs = hub.fail_next(r"^/lfs/upload/", disconnect=True, method="PUT")
    hub.fail_next(r"/commit/main$", disconnect=True)
    code, message = run_push([str(folder), repo_id], capsys)
    assert code == 1 and "connection broke" in message and "run the same command again" in message
    assert lfs.hits == 1 and hub.commit_ids(repo_id) == before

    hub.fail_next(r"/commit/main$", status=500, message="storage backend unavailable")
    code, message = run_push([str(folder), repo_id], capsys)
    assert code == 1 and "500: storage backend unavailable" in message and "server-side" in message
    assert hub.commit_ids(repo_id) == before

    preupload = hub.fail_next(r"/preupload/main$", status=503)  # a transient 503: retried by the client
    code, message = run_push([str(folder), repo_id], capsys)
    assert code == 0, message
    assert preupload.hits == 1 and len(hub.commit_ids(repo_id)) == len(before) + 1
    files = hub.files(repo_id)
    assert files == {**published_files(folder, repo_id), ".gitattributes": files[".gitattributes"]}
    assert folder_hashes(folder) == hashes
