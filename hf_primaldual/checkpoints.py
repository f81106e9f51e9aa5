"""Fine-tuning from a checkpoint: a transformers ViT or DeiT checkpoint (or a PrimalDualViT one) loaded into
`PrimalDualViTForImageClassification` with every encoder weight, or refused.

transformers' `from_pretrained` only warns about weights it could not place and initialises them at random, so a
checkpoint of another family (or a renamed one) would be fine-tuned from scratch without a word. The training
commands load checkpoints through :func:`load_image_checkpoint`, which refuses one whose encoder weights are
missing, unexpected or of another shape (:class:`CheckpointError`, naming them), and resizes a checkpoint to another
image size by resampling its position embeddings (:func:`~.modeling_primaldual_vit.resample_position_embeddings`).
A new classifier (other classes) is expected and allowed.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from typing import Any

from transformers.utils.loading_report import update_key_name

from .modeling_primaldual_vit import PrimalDualViTForImageClassification, resample_position_embeddings

#: Weights of the encoder (embeddings, blocks, final LayerNorm): the checkpoint must give every one of them.
ENCODER_PREFIX = "vit."
#: Encoder weights a checkpoint may carry that the classifier does not use: the pooler of `ViTModel` / `DeiTModel`
#: and the mask token of the masked-image-modelling classes (SimMIM pre-training).
UNUSED_ENCODER_WEIGHTS = (r"^vit\.pooler\.", r"^vit\.embeddings\.mask_token$")


class CheckpointError(ValueError):
    """A checkpoint cannot be fine-tuned as asked; the message names the weights or the size and the fix."""


def encoder_mismatches(loading_info: Mapping[str, Iterable[Any]]) -> dict[str, list[str]]:
    """The encoder weights ``from_pretrained(..., output_loading_info=True)`` could not load as saved: ``missing``
    (left at their random initialisation), ``unexpected`` (in the checkpoint, not in the model) and ``mismatched``
    (another shape), each sorted; the classifier and the weights of `UNUSED_ENCODER_WEIGHTS` are left out."""

    def encoder(names: Iterable[str]) -> list[str]:
        return sorted(
            name for name in names
            if name.startswith(ENCODER_PREFIX) and not any(re.search(p, name) for p in UNUSED_ENCODER_WEIGHTS)
        )

    mismatched = [entry[0] if isinstance(entry, tuple) else entry for entry in loading_info.get("mismatched_keys", ())]
    unexpected = list(loading_info.get("unexpected_keys", ()))
    return {
        "missing": encoder(loading_info.get("missing_keys", ())),
        # Unexpected weights outside the encoder (another family's prefix, e.g. beit.*) are listed too: they say
        # what the checkpoint is.
        "unexpected": sorted(n for n in unexpected if not any(re.search(p, n) for p in UNUSED_ENCODER_WEIGHTS)),
        "mismatched": encoder(mismatched),
    }


def check_encoder_weights(loading_info: Mapping[str, Iterable[Any]], source: str | os.PathLike) -> None:
    """Raise :class:`CheckpointError` naming the encoder weights that ``source`` left missing, unexpected or of
    another shape (see :func:`encoder_mismatches`); return quietly when it gave every one of them."""
    found = encoder_mismatches(loading_info)
    # Unexpected weights outside the encoder alone are another task's head (a decoder...), which fine-tuning drops.
    if not (found["missing"] or found["mismatched"] or any(n.startswith(ENCODER_PREFIX) for n in found["unexpected"])):
        return
    parts = []
    for what, names in found.items():
        if names:
            shown = sorted(update_key_name(names))
            parts.append(f"{len(names)} {what} ({', '.join(shown[:6])}{', ...' if len(shown) > 6 else ''})")
    raise CheckpointError(
        f"{source} is not a checkpoint PrimalDualViT can fine-tune: its encoder weights do not match the model's: "
        f"{'; '.join(parts)}. Fine-tuning would start those weights from random values. Give a transformers ViT or "
        "DeiT checkpoint (ViTModel, ViTForImageClassification, DeiTModel, DeiTForImageClassification, "
        "DeiTForImageClassificationWithTeacher) or a PrimalDualViT one, or leave --model_name_or_path out to train "
        "from scratch."
    )


def load_image_checkpoint(
    model_name_or_path: str | os.PathLike,
    *,
    image_size: int | tuple[int, int] | None = None,
    **kwargs: Any,
) -> PrimalDualViTForImageClassification:
    """A ViT, DeiT or PrimalDualViT checkpoint (local folder or Hub id) as a `PrimalDualViTForImageClassification`
    with every encoder weight of the checkpoint, at ``image_size``.

    Args:
        image_size: the image side (or ``(height, width)``) to fine-tune at; the checkpoint's position embeddings
            are resampled to it (and the model saves at that size). None keeps the checkpoint's.
        kwargs: for `from_pretrained`: the attention settings (``attention_type=...``), ``id2label`` /
            ``num_labels`` with ``ignore_mismatched_sizes=True`` for a new classifier, ``revision``, ``token``...

    Raises:
        CheckpointError: the checkpoint leaves encoder weights missing, unexpected or of another shape, or cannot
            be resized to ``image_size``; the message names them and the fix.
    """
    model, loading_info = PrimalDualViTForImageClassification.from_pretrained(
        model_name_or_path, output_loading_info=True, **kwargs
    )
    check_encoder_weights(loading_info, model_name_or_path)
    if image_size is not None:
        try:
            resample_position_embeddings(model, image_size)
        except ValueError as err:
            raise CheckpointError(f"--image_size {image_size} with {model_name_or_path}: {err}") from None
    return model


__all__ = [
    "CheckpointError",
    "check_encoder_weights",
    "encoder_mismatches",
    "load_image_checkpoint",
]
