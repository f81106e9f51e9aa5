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
from dataclasses import asdict, dataclass, field
from pathlib import Path

from transformers import AutoImageProcessor, HfArgumentParser, SchedulerType, Trainer, ViTImageProcessorPil, set_seed

from hf_primaldual import PrimalDualViTConfig, PrimalDualViTForImageClassification
from hf_primaldual.checkpoints import CheckpointError, load_image_checkpoint
from hf_primaldual.data.images import build_transforms, load_image_dataset, measure_normalisation
from hf_primaldual.hub import EvaluationRow, render_model_card
from hf_primaldual.training import (
    AttentionArguments,
    EpochTrainingArguments,
    StopOnNonFinite,
    UsageError,
    accuracy_metric,
    check_checkpoint_matches,
    check_run_arguments,
    publish_run,
    run_script,
    selection_arguments,
    set_default_output_dir,
    split_for_selection,
    train_and_test,
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


def run(argv: list[str]) -> dict:
    """Train, test and save the hub-ready folder; the metrics. `UsageError` on wrong arguments, before any data
    is read."""
    parser = HfArgumentParser((AttentionArguments, ModelArguments, DataArguments, ImageTrainingArguments))
    attention_args, model_args, data_args, training_args = parser.parse_args_into_dataclasses(args=argv)
    dataset_name = Path(data_args.dataset.rstrip("/")).stem
    set_default_output_dir(training_args, f"image-{dataset_name}-{attention_args.attention_type}")
    check_run_arguments(training_args, validation_fraction=data_args.validation_fraction)
    set_seed(training_args.seed)

    splits = load_image_dataset(data_args.dataset)
    test = splits["test"]
    if data_args.max_eval_samples:
        test = test.shuffle(seed=training_args.seed).select(range(min(data_args.max_eval_samples, len(test))))
    train = splits["train"]
    if data_args.max_train_samples:
        train = train.shuffle(seed=training_args.seed).select(range(min(data_args.max_train_samples, len(train))))
    train, validation = split_for_selection(train, data_args.validation_fraction, training_args.seed)
    selection_arguments(training_args, validation)
    class_names = train.features["label"].names
    labels = {"id2label": dict(enumerate(class_names)), "label2id": {n: i for i, n in enumerate(class_names)}}
    attention = attention_args.config_kwargs()

    if model_args.model_name_or_path:
        try:
            model = load_image_checkpoint(
                model_args.model_name_or_path, image_size=model_args.image_size, **attention, **labels,
                num_labels=len(class_names), ignore_mismatched_sizes=True,  # a new classifier for these classes
            )
        except CheckpointError as err:
            raise UsageError(str(err)) from None
        image_processor = AutoImageProcessor.from_pretrained(model_args.model_name_or_path)
        if model_args.image_size:
            image_processor.size = {"height": model_args.image_size, "width": model_args.image_size}
    else:
        image_size = model_args.image_size or DEFAULT_IMAGE_SIZE
        sample = train.select(range(min(data_args.normalisation_samples, len(train))))["image"]
        mean, std = measure_normalisation(sample)
        image_processor = ViTImageProcessorPil(
            size={"height": image_size, "width": image_size}, image_mean=mean, image_std=std
        )
        config = PrimalDualViTConfig(
            image_size=image_size,
            patch_size=model_args.patch_size,
            num_channels=3,
            hidden_size=model_args.hidden_size,
            num_hidden_layers=model_args.num_hidden_layers,
            num_attention_heads=model_args.num_attention_heads,
            intermediate_size=model_args.intermediate_size,
            hidden_dropout_prob=model_args.dropout,
            attention_probs_dropout_prob=model_args.dropout,
            **attention,
            **labels,
        )
        model = PrimalDualViTForImageClassification(config)
    check_checkpoint_matches(model.config, training_args.resume_from_checkpoint)

    train_transform = build_transforms(
        image_processor, train=True, random_crop_padding=data_args.random_crop_padding,
        horizontal_flip=data_args.horizontal_flip,
    )
    eval_transform = build_transforms(image_processor, train=False, horizontal_flip=False)
    train = train.with_transform(train_transform)
    test = test.with_transform(eval_transform)
    validation = validation.with_transform(eval_transform) if validation is not None else None

    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=train,
        eval_dataset=validation if validation is not None else test,
        processing_class=image_processor,
        compute_metrics=accuracy_metric(),
        callbacks=[StopOnNonFinite()],
    )
    metrics = {
        "dataset": dataset_name,
        "attention_type": model.config.attention_type,
        **train_and_test(trainer, test),
    }

    is_cifar = "cifar" in dataset_name.lower()
    card = render_model_card(
        "primaldual-vit",
        model_name=Path(training_args.output_dir).name,
        config=model.config,
        dataset_name=dataset_name,
        dataset_description=(
            f"{dataset_name}: {len(train)} training and {len(test)} test images, {len(class_names)} classes, "
            f"resized to {model.config.image_size} px; random crops (padding {data_args.random_crop_padding})"
            f"{' and horizontal flips' if data_args.horizontal_flip else ''} for training."
            + (f" {JPEG_NOTE}" if is_cifar else "")
        ),
        hyperparameters={
            # the model saved, whatever the arguments asked (a checkpoint brings its own shape)
            **{k: v for k, v in asdict(attention_args).items() if v is not None},
            **{k: getattr(model.config, k) for k in MODEL_SHAPE},
            "dropout": model.config.hidden_dropout_prob,
            "optimizer": "AdamW",
            "learning_rate": training_args.learning_rate,
            "weight_decay": training_args.weight_decay,
            "lr_scheduler": getattr(training_args.lr_scheduler_type, "value", training_args.lr_scheduler_type),
            "batch_size": training_args.per_device_train_batch_size * training_args.world_size,
            "epochs": training_args.num_train_epochs,
            "seed": training_args.seed,
        },
        results=[EvaluationRow("test", "accuracy", round(metrics["test_accuracy_final"], 4))],
        task_type="image-classification",
        protocol_note=f"Model selection: {metrics['selection']}.",
        limitations=JPEG_NOTE if is_cifar else "",
        base_model=model_args.model_name_or_path,
    )
    publish_run(trainer, metrics, str(card), image_processor)
    return metrics


def main(argv: list[str] | None = None) -> int:
    """The command's exit status (see `hf_primaldual.training.run_script`)."""
    return run_script(run, argv)


if __name__ == "__main__":
    sys.exit(main())
