"""Does Attention-BN help another architecture? transformers' own `PatchTSTForClassification` on the UEA protocol
of this package (same loader, train-split standardisation, RAdam 1e-3, batch 16, 100 epochs, the test split
evaluated after every epoch), with its attention chosen by `attn_implementation`: transformers' `sdpa` (softmax)
or the family's registered `primaldual_<type>` (see :mod:`.attention_interface`).

PatchTST settings (fixed before any run): d_model 64, 3 layers, 8 heads, feed-forward 256, dropout 0.1,
non-overlapping patches of 8 steps (4 for series shorter than 32 steps), mean pooling, per-series std scaling
(its default). Padded steps of unequal-length sets (JapaneseVowels) are marked unobserved (`past_observed_mask`).
"""

from __future__ import annotations

import os
from typing import Any

import torch
from transformers import PatchTSTConfig, PatchTSTForClassification, Trainer, TrainingArguments, set_seed

from hf_primaldual.attention_interface import register_primal_dual_attentions
from hf_primaldual.data.uea import load_uea
from hf_primaldual.feature_extraction_primaldual_timeseries import (
    DataCollatorForTimeSeriesClassification,
    PrimalDualTimeSeriesFeatureExtractor,
)
from hf_primaldual.training import accuracy_metric

#: attention_type of the results table -> attn_implementation of PatchTST
PATCHTST_ATTENTIONS = {"softmax": "sdpa", "bn": "primaldual_bn", "bn_sh": "primaldual_bn_sh"}


def patchtst_config(num_channels: int, length: int, num_labels: int) -> PatchTSTConfig:
    patch = 8 if length >= 32 else 4
    return PatchTSTConfig(
        num_input_channels=num_channels, context_length=length, patch_length=patch, patch_stride=patch,
        d_model=64, num_hidden_layers=3, num_attention_heads=8, ffn_dim=256, attention_dropout=0.1,
        positional_dropout=0.1, ff_dropout=0.1, head_dropout=0.1, num_targets=num_labels, pooling_type="mean",
    )


class PatchTSTCollator(DataCollatorForTimeSeriesClassification):
    """The package's collator, padded to the context length and renamed for PatchTST: padded steps unobserved."""

    def __call__(self, features):
        batch = super().__call__(features)
        observed = batch.pop("attention_mask").bool()[..., None].expand_as(batch["past_values"])
        return {"past_values": batch["past_values"], "past_observed_mask": observed,
                "target_values": batch.pop("labels")}


def train_patchtst(
    dataset: str,
    attention_type: str,
    seed: int,
    output_dir: str | os.PathLike,
    *,
    data_dir: str | os.PathLike | None = None,
    epochs: int = 100,
    device: str = "cpu",
    model: PatchTSTForClassification | None = None,
    learning_rate: float = 1e-3,
    save_to: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """One protocol run; returns the final and best-epoch test accuracy, the runtime and the per-epoch history.

    ``model``: train this model (fine-tuning; its attention as it is set, ``attention_type`` only labels the
    record) instead of a new one; with ``epochs=0`` it is only evaluated. ``save_to``: save the trained model there.
    """
    if model is None and attention_type not in PATCHTST_ATTENTIONS:
        raise ValueError(f"attention_type must be one of {sorted(PATCHTST_ATTENTIONS)}, got {attention_type!r}.")
    register_primal_dual_attentions()
    set_seed(seed)
    splits = load_uea(dataset, data_dir=data_dir)
    labels = splits["train"].features["label"].names
    extractor = PrimalDualTimeSeriesFeatureExtractor().fit(splits["train"]["past_values"])
    length = max(max(splits[split]["length"]) for split in ("train", "test"))
    num_channels = len(splits["train"][0]["past_values"][0])
    if model is None:
        model = PatchTSTForClassification(patchtst_config(num_channels, length, len(labels)))
        model.set_attn_implementation(PATCHTST_ATTENTIONS[attention_type])
    args = TrainingArguments(
        output_dir=str(output_dir), num_train_epochs=epochs, per_device_train_batch_size=16,
        per_device_eval_batch_size=64, learning_rate=learning_rate, lr_scheduler_type="constant", eval_strategy="epoch",
        save_strategy="no", logging_strategy="epoch", report_to="none", seed=seed, disable_tqdm=True,
        label_names=["target_values"], remove_unused_columns=False, use_cpu=device == "cpu", dataloader_num_workers=0,
    )
    trainer = Trainer(
        model=model, args=args, train_dataset=splits["train"], eval_dataset=splits["test"],
        data_collator=PatchTSTCollator(extractor, padding="max_length", max_length=length),
        compute_metrics=accuracy_metric(),
        optimizer_cls_and_kwargs=(torch.optim.RAdam, {"lr": learning_rate}),
    )
    if epochs > 0:
        runtime = trainer.train().metrics["train_runtime"]
        history = [entry for entry in trainer.state.log_history if "eval_accuracy" in entry]
    else:  # the model as it is
        runtime, history = 0.0, [trainer.evaluate()]
    if save_to is not None:
        trainer.save_model(str(save_to))
    return {
        "dataset": dataset, "model": "PatchTST", "attention_type": attention_type, "seed": seed, "epochs": epochs,
        "test_accuracy_final": history[-1]["eval_accuracy"],
        "test_accuracy_best_epoch": max(entry["eval_accuracy"] for entry in history),
        "train_runtime_s": runtime,
        "eval_history": [entry["eval_accuracy"] for entry in history],
    }


__all__ = ["PATCHTST_ATTENTIONS", "patchtst_config", "train_patchtst"]
