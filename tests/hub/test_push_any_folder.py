"""Your own Trainer run is first-class (issue 21): ``hf-primaldual-push`` publishes a folder written by a plain
``Trainer.save_model`` (or one of its checkpoints) of a package model or of a stock model run with a primal-dual
attention, with the project's card rendered from what the folder holds (config, the Trainer's evaluation history,
the processor; unknowns said); it refuses what cannot be a model, non-finite weights and a missing classifier head;
``--include_logs`` publishes TensorBoard event files; a package model's own ``push_to_hub`` uploads the project's
card instead of transformers' stub. Card metadata is read back with huggingface_hub's ModelCard."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from huggingface_hub import HfApi, ModelCard
from safetensors.torch import load_file, save_file
from transformers import (
    AutoModelForImageClassification,
    Trainer,
    TrainingArguments,
    ViTConfig,
    ViTForImageClassification,
    ViTImageProcessorPil,
)

from helpers.hub_clients import HubEnv, load_script
from hf_primaldual import PrimalDualViTConfig, PrimalDualViTForImageClassification
from hf_primaldual.hub import plan_push

push_script = load_script("push_to_hub")
TINY = dict(image_size=32, patch_size=8, hidden_size=24, num_hidden_layers=2, num_attention_heads=3,
            intermediate_size=48)
CLASSES = ["ant", "bee", "cat"]
STUB = "Model Card for Model ID"


class Images(torch.utils.data.Dataset):
    def __init__(self, count: int = 12) -> None:
        generator = torch.Generator().manual_seed(0)
        self.pixels = torch.randn(count, 3, 32, 32, generator=generator)
        self.labels = torch.arange(count) % len(CLASSES)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"pixel_values": self.pixels[index], "labels": self.labels[index]}


def train(model, folder: Path) -> Trainer:
    """Two epochs with evaluation and checkpoints, then ``trainer.save_model()`` and ``trainer.save_state()`` into
    the run's folder, as transformers' examples end."""
    args = TrainingArguments(
        output_dir=str(folder), num_train_epochs=2, per_device_train_batch_size=4, eval_strategy="epoch",
        save_strategy="epoch", use_cpu=True, report_to=[], disable_tqdm=True, seed=0, learning_rate=1e-3,
    )
    processor = ViTImageProcessorPil(size={"height": 32, "width": 32})
    trainer = Trainer(model=model, args=args, train_dataset=Images(), eval_dataset=Images(6),
                      processing_class=processor)
    trainer.train()
    trainer.save_model()
    trainer.save_state()  # trainer_state.json at the top of the run's folder
    return trainer


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A PrimalDualViT (bn) and a stock ViT under primaldual_bn, each trained by a plain Trainer."""
    base = tmp_path_factory.mktemp("plain-trainer")
    labels = {"id2label": dict(enumerate(CLASSES)), "label2id": {c: i for i, c in enumerate(CLASSES)}}
    torch.manual_seed(0)
    train(PrimalDualViTForImageClassification(PrimalDualViTConfig(**TINY, attention_type="bn", **labels)),
          base / "package")
    torch.manual_seed(0)
    ViTForImageClassification(ViTConfig(**TINY, **labels)).save_pretrained(base / "stock-source")
    stock = ViTForImageClassification.from_pretrained(base / "stock-source", attn_implementation="primaldual_bn")
    train(stock, base / "stock")
    return base


def run_push(argv: list[str], capsys) -> tuple[int, str]:
    code = push_script.main(argv)
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def rendered_card(folder: Path, **kwargs) -> ModelCard:
    readme = next(file for file in plan_push(folder, **kwargs).files if file.path_in_repo == "README.md")
    assert readme.local_path is None  # rendered for the push, not written into the folder
    return ModelCard(readme.read_bytes().decode())


def test_a_plain_trainer_save_model_folder_gets_the_projects_card(runs):
    folder = runs / "package"
    assert not (folder / "README.md").exists() and not (folder / "training_metrics.json").exists()
    assert (folder / "trainer_state.json").is_file() and (folder / "training_args.bin").is_file()
    card = rendered_card(folder)
    data = card.data.to_dict()
    assert data["pipeline_tag"] == "image-classification" and data["library_name"] == "transformers"
    assert {"hf-primaldual", "attention-bn", "vision"} <= set(data["tags"])
    assert "model-index" not in data and "datasets" not in data  # the data set is not recorded: not made up
    text = card.text
    assert "| hidden_size | 24 |" in text and "| num_hidden_layers | 2 |" in text  # the saved model's shape
    assert "trainer_state.json" in text and "| epoch | step |" in text  # the Trainer's evaluation history
    assert "unknown here: the training data" in text and "training_args.bin" in text
    assert "trust_remote_code=True" in text and STUB not in text
    assert not (folder / "README.md").exists()


def test_a_trainer_checkpoint_folder_is_published_with_its_own_history(runs, capsys):
    checkpoint = sorted((runs / "package").glob("checkpoint-*"))[0]
    code, out = run_push([str(checkpoint), "user/never-created", "--dry_run"], capsys)
    assert code == 0, out
    assert "README.md" in out and "model.safetensors" in out and "optimizer.pt" not in out
    assert f"`{checkpoint.name}/trainer_state.json`" not in rendered_card(checkpoint).text  # its own state file
    assert "`trainer_state.json`" in rendered_card(checkpoint).text


def test_a_stock_model_run_with_a_primal_dual_attention_gets_its_card(runs):
    card = rendered_card(runs / "stock")
    data = card.data.to_dict()
    assert data["pipeline_tag"] == "image-classification" and "attention-bn" in data["tags"]
    assert "`ViTForImageClassification` (vit)" in card.text and "primaldual_bn" in card.text
    assert "AutoModelForImageClassification.from_pretrained" in card.text and "trust_remote_code=True" in card.text


def test_push_of_a_plain_trainer_folder_reloads_from_the_hub(runs, hub_env: HubEnv, capsys):
    folder = runs / "package"
    repo_id = hub_env.hub.new_repo_id("plain-trainer")
    code, out = run_push([str(folder), repo_id], capsys)
    assert code == 0, out
    files = hub_env.hub.files(repo_id)
    assert {"README.md", "config.json", "model.safetensors", "preprocessor_config.json",
            "modeling_primaldual_vit.py"} <= set(files)
    assert "training_args.bin" not in files
    card = ModelCard(files["README.md"].decode())
    assert repo_id in card.text and "your-name/your-model" not in card.text
    model = AutoModelForImageClassification.from_pretrained(repo_id).eval()
    local = PrimalDualViTForImageClassification.from_pretrained(folder).eval()
    pixels = Images(2).pixels
    with torch.no_grad():
        torch.testing.assert_close(model(pixels).logits, local(pixels).logits, atol=0, rtol=0)


def test_include_logs_publishes_the_tensorboard_runs(runs, tmp_path, capsys):
    folder = tmp_path / "with-logs"
    shutil.copytree(runs / "package", folder, ignore=shutil.ignore_patterns("checkpoint-*"))
    event = folder / "runs" / "May01_12-00-00_host" / "events.out.tfevents.1714560000.host.1.0"
    event.parent.mkdir(parents=True)
    event.write_bytes(b"\x00" * 64)  # TensorBoard's files are opaque here: their place and name are what count
    checkpoint_event = folder / "checkpoint-3" / "runs" / "events.out.tfevents.1.host"
    checkpoint_event.parent.mkdir(parents=True)
    checkpoint_event.write_bytes(b"\x00")
    without = {file.path_in_repo for file in plan_push(folder).files}
    with_logs = {file.path_in_repo for file in plan_push(folder, include_logs=True).files}
    assert with_logs - without == {"runs/May01_12-00-00_host/events.out.tfevents.1714560000.host.1.0"}
    code, out = run_push([str(folder), "user/never-created", "--dry_run", "--include_logs"], capsys)
    assert code == 0 and "runs/May01_12-00-00_host/events.out.tfevents" in out


@pytest.mark.parametrize(
    "break_folder, message",
    [
        (lambda folder: (folder / "config.json").unlink(), "holds no config.json: it is not a saved model"),
        (lambda folder: [p.unlink() for p in folder.glob("*.safetensors")], "no safetensors weights"),
        (lambda folder: _edit_weights(folder, lambda name, t: t.fill_(float("nan")) if name == "vit.layernorm.weight" else t),
         "NaN or infinite values"),
        (lambda folder: _edit_weights(folder, lambda name, t: None if name.startswith("classifier") else t),
         "leave its classifier head of PrimalDualViTForImageClassification out"),
    ],
    ids=["no-config", "no-weights", "nan-weights", "no-classifier"],
)
def test_what_cannot_be_a_published_model_is_refused(runs, tmp_path, capsys, break_folder, message):
    folder = tmp_path / "broken"
    shutil.copytree(runs / "package", folder, ignore=shutil.ignore_patterns("checkpoint-*"))
    break_folder(folder)
    code, out = run_push([str(folder), "user/x", "--dry_run"], capsys)
    assert code == 2 and message in out, out


def test_a_stock_model_without_a_primal_dual_attention_is_refused(runs, capsys):
    code, out = run_push([str(runs / "stock-source"), "user/x", "--dry_run"], capsys)
    assert code == 2 and "runs no primal-dual attention" in out and "hf-primaldual-convert" in out


def _edit_weights(folder: Path, edit) -> None:
    tensors = load_file(folder / "model.safetensors")
    edited = {name: edit(name, tensor.clone()) for name, tensor in tensors.items()}
    save_file({name: t for name, t in edited.items() if t is not None}, folder / "model.safetensors",
              metadata={"format": "pt"})


def test_model_push_to_hub_uploads_the_projects_card_not_the_stub(runs, hub_env: HubEnv):
    model = PrimalDualViTForImageClassification.from_pretrained(runs / "package")
    repo_id = hub_env.hub.new_repo_id("model-push")
    model.push_to_hub(repo_id)
    card = ModelCard(hub_env.hub.files(repo_id)["README.md"].decode())
    assert STUB not in card.text and "hf-primaldual" in card.data.tags
    assert card.data.pipeline_tag == "image-classification"
    assert "| hidden_size | 24 |" in card.text
    # a card of the project already in the repo (here edited by its author) is kept, as transformers keeps one
    edited = str(card).replace("## Limitations", "## Limitations\n\nA line the author wrote.")
    HfApi().upload_file(path_or_fileobj=edited.encode(), path_in_repo="README.md", repo_id=repo_id)
    model.push_to_hub(repo_id)
    assert "A line the author wrote." in hub_env.hub.files(repo_id)["README.md"].decode()
    assert json.loads(hub_env.hub.files(repo_id)["config.json"])["attention_type"] == "bn"
