"""Train (or fine-tune) a PrimalDualViT image classifier with the HF Trainer (Accelerate underneath).

The dataset is a folder of Fashion-MNIST IDX files, a folder or zip laid out split/class/file (the CIFAR-10 JPEG
copy), or a `datasets` Hub name. Images are augmented (random crop with padding, horizontal flip) and normalised by
a `ViTImageProcessorPil` whose mean and std are measured on the training images and saved with the model.

    hf-primaldual-train-image --dataset ../shared/data/images/fashion-mnist --attention_type bn
    python scripts/train_image.py --dataset ../shared/data/images/fashion-mnist --attention_type bn  # a checkout
    python scripts/train_image.py --dataset ../shared/data/images/cifar10-jpg/CIFAR-10-images.zip \
        --attention_type bn_sh --head_scales 1 2 4
    # fine-tune a transformers ViT / DeiT checkpoint, switched to Attention-BN
    python scripts/train_image.py --dataset ... --model_name_or_path path/to/vit --attention_type bn
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
from transformers import AutoImageProcessor, SchedulerType, ViTImageProcessorPil

from hf_primaldual import PrimalDualViTConfig, PrimalDualViTForImageClassification
from hf_primaldual.checkpoints import CheckpointError, load_image_checkpoint
from hf_primaldual.data.images import build_transforms, load_image_dataset, measure_normalisation
from hf_primaldual.training import (
    AttentionArguments,
    EpochTrainingArguments,
    TrainingTask,
    UsageError,
    encoder_config_kwargs,
    run_script,
    run_training,
)

DEFAULT_IMAGE_SIZE = 32
MODEL_SHAPE = ("image_size", "patch_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
               "intermediate_size")
JPEG_NOTE = (
    "The CIFAR-10 copy used here is a JPEG re-encoding (quality 75) of the original images: accuracies are close "
    "to, but not exactly comparable with, published CIFAR-10 numbers."
)


@dataclass
class ModelArguments:
    model_name_or_path: str | None = field(
        default=None, metadata={"help": "a ViT / DeiT / PrimalDualViT checkpoint to fine-tune (default: from scratch)"}
    )
    model_revision: str | None = field(
        default=None, metadata={"help": "branch, tag or commit of a Hub --model_name_or_path (named in the card)"}
    )
    image_size: int | None = field(
        default=None,
        metadata={"help": "image side: 32 from scratch; with a checkpoint its own, or this one with the position "
                          "embeddings resampled to it"},
    )
    patch_size: int = 4
    hidden_size: int = 192
    num_hidden_layers: int = 6
    num_attention_heads: int = 3
    intermediate_size: int = 384
    dropout: float = 0.0


@dataclass
class DataArguments:
    dataset: str = field(metadata={"help": "Fashion-MNIST IDX folder, image folder/zip, or a datasets Hub name"})
    validation_fraction: float = field(
        default=0.0, metadata={"help": "carve a stratified validation split from train to select the best epoch"}
    )
    max_train_samples: int | None = None
    max_eval_samples: int | None = None
    random_crop_padding: int = 4
    horizontal_flip: bool = True
    normalisation_samples: int = field(
        default=5000, metadata={"help": "training images the processor's mean and std are measured on"}
    )

    def __post_init__(self) -> None:
        for option in ("max_train_samples", "max_eval_samples", "normalisation_samples"):
            value = getattr(self, option)
            if value is not None and value < 1:  # 0 would otherwise read as "no limit"
                raise UsageError(f"--{option} {value}: give a number of images >= 1, or leave it out to use all.")


@dataclass
class ImageTrainingArguments(EpochTrainingArguments):
    num_train_epochs: float = 10
    learning_rate: float = 1e-3
    weight_decay: float = 0.05
    warmup_steps: float = 0.1
    lr_scheduler_type: SchedulerType | str = "cosine"
    per_device_train_batch_size: int = 128
    per_device_eval_batch_size: int = 256
    remove_unused_columns: bool = False  # the transform reads the `image` column
    seed: int = 42


class ImageClassificationTask(TrainingTask):
    """A `PrimalDualViTForImageClassification`, from scratch (its processor's normalisation measured on the training
    images) or fine-tuned from a ViT / DeiT / PrimalDualViT checkpoint; augmented with random crops and flips."""

    arguments = (AttentionArguments, ModelArguments, DataArguments, ImageTrainingArguments)
    family = "primaldual-vit"

    @property
    def run_name(self) -> str:
        return f"image-{Path(self.data.dataset.rstrip('/')).stem}-{self.attention.attention_type}"

    def load(self) -> datasets.DatasetDict:
        splits = load_image_dataset(self.data.dataset)
        seed = self.training.seed
        limits = {"train": self.data.max_train_samples, "test": self.data.max_eval_samples}
        return datasets.DatasetDict({
            name: split.shuffle(seed=seed).select(range(min(limits[name], len(split)))) if limits[name] else split
            for name, split in ((name, splits[name]) for name in ("train", "test"))
        })

    def build(self, train: datasets.Dataset, test: datasets.Dataset) -> tuple[PrimalDualViTForImageClassification, Any]:
        class_names = train.features["label"].names
        labels = {"id2label": dict(enumerate(class_names)), "label2id": {n: i for i, n in enumerate(class_names)}}
        attention = self.attention.config_kwargs()
        model_args = self.model_arguments
        if model_args.model_name_or_path:
            try:
                model = load_image_checkpoint(
                    model_args.model_name_or_path, image_size=model_args.image_size, **attention, **labels,
                    num_labels=len(class_names), ignore_mismatched_sizes=True,  # a new classifier for these classes
                    revision=model_args.model_revision,
                )
            except CheckpointError as err:
                raise UsageError(str(err)) from None
            processor = AutoImageProcessor.from_pretrained(
                model_args.model_name_or_path, revision=model_args.model_revision
            )
            if model_args.image_size:
                processor.size = {"height": model_args.image_size, "width": model_args.image_size}
            self.processor = processor
            return model, processor
        image_size = model_args.image_size or DEFAULT_IMAGE_SIZE
        sample = train.select(range(min(self.data.normalisation_samples, len(train))))["image"]
        mean, std = measure_normalisation(sample)
        processor = ViTImageProcessorPil(size={"height": image_size, "width": image_size}, image_mean=mean, image_std=std)
        config = PrimalDualViTConfig(
            image_size=image_size,
            patch_size=model_args.patch_size,
            num_channels=3,
            **encoder_config_kwargs(model_args),
            **attention,
            **labels,
        )
        self.processor = processor
        return PrimalDualViTForImageClassification(config), processor

    def prepare(self, split: datasets.Dataset, *, training: bool) -> datasets.Dataset:
        return split.with_transform(build_transforms(
            self.processor, train=training, random_crop_padding=self.data.random_crop_padding,
            horizontal_flip=training and self.data.horizontal_flip,
        ))

    def describe(self, model, train: datasets.Dataset, test: datasets.Dataset) -> dict[str, Any]:
        name = self.dataset_name(train)
        is_cifar = "cifar" in name.lower()
        args = self.training
        return {
            "dataset_name": name,
            "dataset_description": (
                f"{name}: {len(train)} training and {len(test)} test images, {len(train.features['label'].names)} "
                f"classes, resized to {model.config.image_size} px; random crops (padding "
                f"{self.data.random_crop_padding}){' and horizontal flips' if self.data.horizontal_flip else ''} for "
                "training." + (f" {JPEG_NOTE}" if is_cifar else "")
            ),
            "hyperparameters": {
                # the model saved, whatever the arguments asked (a checkpoint brings its own shape)
                **{key: getattr(model.config, key) for key in MODEL_SHAPE},
                "dropout": model.config.hidden_dropout_prob,
                "optimizer": "AdamW",
                "weight_decay": args.weight_decay,
                "lr_scheduler": args.lr_scheduler_type,
            },
            "limitations": JPEG_NOTE if is_cifar else "",
            "base_model": self.model_arguments.model_name_or_path,
            "base_model_revision": self.model_arguments.model_revision,
        }


def run(argv: Sequence[str]) -> dict:
    """Train, test and save the hub-ready folder (`hf_primaldual.training.run_training`); the metrics."""
    return run_training(ImageClassificationTask, argv)


def main(argv: list[str] | None = None) -> int:
    """The command's exit status (see `hf_primaldual.training.run_script`)."""
    return run_script(run, argv)


if __name__ == "__main__":
    sys.exit(main())
