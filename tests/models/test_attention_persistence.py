"""The attention stays what you chose (issue 21): a converted BERT and a stock ViT run with
``attn_implementation="primaldual_bn"``, fine-tuned with transformers' Trainer (epoch checkpoints,
``load_best_model_at_end``, ``save_model``), reload from every folder the Trainer saved with the primal-dual
attention and the settings they were trained with: with the package, and without it from the checkpoint's own
code (``trust_remote_code=True``); without either, transformers refuses the attention by name. The reference is
the model in memory after training, and the same weights run with transformers' own ``sdpa`` differ from it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import (
    AutoModelForImageClassification,
    AutoModelForSequenceClassification,
    BertConfig,
    BertForSequenceClassification,
    Trainer,
    TrainingArguments,
    ViTConfig,
    ViTForImageClassification,
)

from helpers.without_package import run_without_package
from hf_primaldual.conversion import convert_checkpoint

pytestmark = pytest.mark.slow  # two Trainer runs and a fresh interpreter: about a minute on 2 cores

SETTINGS = {"bn_mean_weight": 0.5, "bn_eps": 1e-4}
CODE_FILES = ("configuration_primaldual_registration.py", "attention_interface.py", "attention.py")


class Rows(torch.utils.data.Dataset):
    def __init__(self, inputs: dict[str, torch.Tensor], labels: torch.Tensor) -> None:
        self.inputs, self.labels = inputs, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {**{name: value[index] for name, value in self.inputs.items()}, "labels": self.labels[index]}


def bert_inputs() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return {"input_ids": torch.randint(1, 60, (8, 12), generator=generator)}


def vit_inputs() -> dict[str, torch.Tensor]:
    return {"pixel_values": torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(0))}


def converted_bert(folder: Path):
    """A random BERT converted to primaldual_bn (with settings) by hf-primaldual-convert, loaded with the package."""
    torch.manual_seed(0)
    config = BertConfig(vocab_size=64, hidden_size=24, num_hidden_layers=2, num_attention_heads=3,
                        intermediate_size=48, num_labels=3, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    BertForSequenceClassification(config).save_pretrained(folder / "stock")
    convert_checkpoint(folder / "stock", "bn", folder / "converted", SETTINGS)
    return AutoModelForSequenceClassification.from_pretrained(folder / "converted"), AutoModelForSequenceClassification


def stock_vit(folder: Path):
    """A random transformers ViT loaded with attn_implementation="primaldual_bn" and given settings."""
    torch.manual_seed(0)
    config = ViTConfig(image_size=32, patch_size=8, hidden_size=24, num_hidden_layers=2, num_attention_heads=3,
                       intermediate_size=48, num_labels=3)
    ViTForImageClassification(config).save_pretrained(folder / "stock")
    model = ViTForImageClassification.from_pretrained(folder / "stock", attn_implementation="primaldual_bn")
    model.config.primaldual_attention = dict(SETTINGS)
    return model, AutoModelForImageClassification


MODELS = {"bert": (converted_bert, bert_inputs), "vit": (stock_vit, vit_inputs)}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Each model fine-tuned by the Trainer under primaldual_bn: its folders, the inputs and the in-memory logits."""
    base = tmp_path_factory.mktemp("persistence")
    runs = {}
    for name, (build, inputs_of) in MODELS.items():
        model, auto_class = build(base / name)
        assert model.config._attn_implementation == "primaldual_bn"
        inputs = inputs_of()
        rows = Rows(inputs, torch.tensor([0, 1, 2, 0, 1, 2, 0, 1]))
        args = TrainingArguments(
            output_dir=str(base / name / "run"), num_train_epochs=2, per_device_train_batch_size=4,
            learning_rate=1e-2, eval_strategy="epoch", save_strategy="epoch", load_best_model_at_end=True,
            metric_for_best_model="loss", use_cpu=True, report_to=[], disable_tqdm=True, seed=0,
        )
        trainer = Trainer(model=model, args=args, train_dataset=rows, eval_dataset=rows)
        trainer.train()
        trainer.save_model(str(base / name / "final"))
        model.eval()
        with torch.no_grad():
            logits = model(**inputs).logits
        torch.save(inputs, base / name / "inputs.pt")
        torch.save(logits, base / name / "expected.pt")
        folders = [base / name / "final", *sorted((base / name / "run").glob("checkpoint-*"))]
        assert len(folders) == 3 and trainer.state.best_model_checkpoint is not None
        runs[name] = (folders, auto_class, inputs, logits)
    return base, runs


@pytest.mark.parametrize("name", MODELS)
def test_every_saved_folder_names_the_attention_its_settings_and_holds_its_code(trained, name):
    _, runs = trained
    folders, *_ = runs[name]
    for folder in folders:
        config = json.loads((folder / "config.json").read_text())
        assert config["attn_implementation"] == "primaldual_bn", folder
        assert {k: config["primaldual_attention"][k] for k in SETTINGS} == SETTINGS, folder
        assert all(v.startswith("configuration_primaldual_registration.") for v in config["auto_map"].values())
        assert all((folder / code).is_file() for code in CODE_FILES), folder


@pytest.mark.parametrize("name", MODELS)
def test_reloaded_with_the_package_runs_the_attention_it_was_trained_with(trained, name):
    _, runs = trained
    folders, auto_class, inputs, expected = runs[name]
    for folder in folders:
        model = auto_class.from_pretrained(folder).eval()
        assert model.config._attn_implementation == "primaldual_bn", folder
        assert model.config.primaldual_attention["bn_mean_weight"] == SETTINGS["bn_mean_weight"]
    with torch.no_grad():
        torch.testing.assert_close(model(**inputs).logits, expected, atol=1e-6, rtol=0)  # the final folder's
        softmax = auto_class.from_pretrained(folders[0], attn_implementation="sdpa").eval()
        assert not torch.allclose(softmax(**inputs).logits, expected, atol=1e-3)


def test_reloaded_without_the_package_from_the_checkpoints_code(trained):
    base, runs = trained
    run_without_package(
        """
        import json
        from pathlib import Path
        import torch
        from transformers import AutoModelForImageClassification, AutoModelForSequenceClassification
        results = {}
        classes = (("bert", AutoModelForSequenceClassification), ("vit", AutoModelForImageClassification))
        for name, auto_class in classes:  # first, while no remote code has registered the attention here
            try:
                auto_class.from_pretrained(f"{name}/final")
            except ValueError as error:
                results[name] = str(error)
        for name, auto_class in classes:
            for folder in [*sorted(Path(name).glob("run/checkpoint-*")), Path(name, "final")]:
                model = auto_class.from_pretrained(folder, trust_remote_code=True).eval()
                assert "hf_primaldual" not in type(model).__module__
                assert model.config._attn_implementation == "primaldual_bn", model.config._attn_implementation
                assert model.config.primaldual_attention["bn_mean_weight"] == 0.5
            with torch.no_grad():
                logits = model(**torch.load(f"{name}/inputs.pt")).logits
            torch.testing.assert_close(logits, torch.load(f"{name}/expected.pt"), atol=1e-6, rtol=0)
            # saved again here, without the package: the attention is still written
            model.save_pretrained(f"{name}/saved-without-package")
        json.dump(results, open("refusals.json", "w"))
        """,
        base,
    )
    refusals = json.loads((base / "refusals.json").read_text())
    for name, (_, auto_class, inputs, expected) in runs.items():
        # a stock config read by transformers alone: refused by name, never run with another attention
        assert 'attn_implementation="primaldual_bn"' in refusals[name] and "not supported" in refusals[name]
        again = auto_class.from_pretrained(base / name / "saved-without-package").eval()
        assert again.config._attn_implementation == "primaldual_bn"
        with torch.no_grad():
            torch.testing.assert_close(again(**inputs).logits, expected, atol=1e-6, rtol=0)


def test_a_model_saved_after_switching_back_to_sdpa_is_saved_as_sdpa(tmp_path):
    model, auto_class = stock_vit(tmp_path)
    model.set_attn_implementation("sdpa")
    model.save_pretrained(tmp_path / "sdpa")
    config = json.loads((tmp_path / "sdpa" / "config.json").read_text())
    assert "attn_implementation" not in config and "auto_map" not in config
    assert auto_class.from_pretrained(tmp_path / "sdpa").config._attn_implementation == "sdpa"
    assert "attn_implementation" not in model.config.__dict__  # the config object is left as it was
