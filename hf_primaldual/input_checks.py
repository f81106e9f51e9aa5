"""Checks on model inputs shared by the models, with errors that say how to fix the input."""

from __future__ import annotations

import torch


def check_finite(tensor: torch.Tensor, name: str) -> None:
    """Raise if ``tensor`` holds NaN or inf (skipped under torch.compile, where the check would break the graph)."""
    if not torch.compiler.is_compiling() and not torch.isfinite(tensor).all():
        bad = (~torch.isfinite(tensor)).flatten(1).any(dim=1).nonzero().flatten().tolist()
        raise ValueError(
            f"{name} contains NaN or inf values (batch items {bad}): impute or drop them before calling the model."
        )


def check_key_mask(
    attention_mask: torch.Tensor | None, shape: tuple[int, int] | torch.Size, name: str = "attention_mask"
) -> torch.Tensor | None:
    """transformers' 2-D padding mask (1 = attend, 0 = padding; bool, integer or 0./1. floats) as the boolean
    ``(batch, tokens)`` key mask of the attention, or None when every token is real (the unmasked fast paths).

    An additive float mask (0 / -inf, the 4-D format some models pass between layers) or any other value is refused
    rather than guessed: read as booleans it would be inverted.
    """
    if attention_mask is None:
        return None
    if tuple(attention_mask.shape) != tuple(shape):
        raise ValueError(
            f"{name} must be (batch_size, sequence_length) = {tuple(shape)}, got {tuple(attention_mask.shape)}."
        )
    if attention_mask.dtype == torch.bool:
        mask = attention_mask
    else:
        if not torch.compiler.is_compiling() and not ((attention_mask == 0) | (attention_mask == 1)).all():
            raise ValueError(
                f"{name} must hold 1 (attend) and 0 (padding) only, as transformers' tokenizers and processors "
                f"produce it; got values such as {attention_mask.unique()[:4].tolist()}. An additive mask "
                "(0 / -inf) is not accepted here: pass (additive_mask == 0).long()."
            )
        mask = attention_mask != 0
    if torch.compiler.is_compiling():
        return mask
    if not mask.any(dim=1).all():
        raise ValueError(f"{name} has a sequence with no real token: drop empty sequences.")
    return None if mask.all() else mask


def check_labels(labels: torch.Tensor | None, batch_size: int, config) -> None:
    """Labels as transformers' classification losses take them, or an error saying what to pass instead.

    Integer class indices ``(batch,)`` in ``[0, num_labels)`` (``-100``: ignored, not all of them); float targets
    ``(batch, num_labels)`` for multi-label classification; floats ``(batch,)`` for regression (``num_labels=1``).
    """
    if labels is None or torch.compiler.is_compiling():
        return
    num_labels = config.num_labels
    if labels.shape[0] != batch_size:
        raise ValueError(f"labels has {labels.shape[0]} entries for a batch of {batch_size} inputs.")
    problem = config.problem_type
    if problem == "regression" or (problem is None and num_labels == 1):
        return
    if torch.is_floating_point(labels):
        if problem == "single_label_classification" or tuple(labels.shape) != (batch_size, num_labels):
            raise ValueError(
                f"labels are floats of shape {tuple(labels.shape)}: pass class indices as integers "
                f"(labels.long()), or multi-label targets of shape ({batch_size}, {num_labels})."
            )
        return
    if problem == "multi_label_classification":
        raise ValueError("problem_type is 'multi_label_classification': pass float targets (batch, num_labels).")
    if labels.dim() != 1:
        raise ValueError(
            f"labels must be class indices of shape ({batch_size},), got shape {tuple(labels.shape)}: for one-hot "
            "labels pass labels.argmax(-1)."
        )
    ignored = labels == -100
    if ignored.all():
        raise ValueError("Every label is -100 (ignored): the loss would be NaN. Pass at least one real label.")
    real = labels[~ignored]
    if (real < 0).any() or (real >= num_labels).any():
        bad = real[(real < 0) | (real >= num_labels)].unique()[:5].tolist()
        raise ValueError(
            f"labels {bad} are out of range for num_labels={num_labels}: labels are class indices in "
            f"[0, {num_labels - 1}] (-100 to ignore one); build the model with the dataset's number of classes."
        )
