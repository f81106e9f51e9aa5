"""Checks on model inputs shared by the models, with errors that say how to fix the input.

Under torch.compile a check that depends on the values cannot branch in Python without breaking the graph: it
becomes an assertion inside the graph (``torch._assert_async``), so that a compiled model refuses what the eager
one refuses, with the same message (as a RuntimeError, without the eager message's details such as batch items).
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def _refuse_unless(holds: torch.Tensor, message: str, details: Callable[[], str] | None = None) -> None:
    """Raise ``ValueError(message)`` unless the boolean scalar ``holds``; eagerly, ``{details}`` in the message
    becomes `` (details())`` (under compile, nothing: the graph cannot format values)."""
    if torch.compiler.is_compiling():
        torch._assert_async(holds, message.format(details=""))
    elif not bool(holds):
        raise ValueError(message.format(details="" if details is None else f" ({details()})"))


def check_finite(tensor: torch.Tensor, name: str) -> None:
    """Raise if ``tensor`` holds NaN or inf."""
    _refuse_unless(
        torch.isfinite(tensor).all(),
        f"{name} contains NaN or inf values{{details}}: impute or drop them before calling the model.",
        lambda: f"batch items {(~torch.isfinite(tensor)).flatten(1).any(dim=1).nonzero().flatten().tolist()}",
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
        _refuse_unless(
            ((attention_mask == 0) | (attention_mask == 1)).all(),
            f"{name} must hold 1 (attend) and 0 (padding) only{{details}}, as transformers' tokenizers and "
            "processors produce it. An additive mask (0 / -inf) is not accepted here: pass (additive_mask == 0).long().",
            lambda: f"got values such as {attention_mask.unique()[:4].tolist()}",
        )
        mask = attention_mask != 0
    _refuse_unless(mask.any(dim=1).all(), f"{name} has a sequence with no real token{{details}}: drop empty sequences.")
    if torch.compiler.is_compiling():
        return mask  # no data-dependent choice of the unmasked fast path inside a graph
    return None if mask.all() else mask


def check_labels(labels: torch.Tensor | None, batch_size: int, config) -> None:
    """Labels as transformers' classification losses take them, or an error saying what to pass instead.

    Integer class indices ``(batch,)`` in ``[0, num_labels)`` (``-100``: ignored, not all of them); float targets
    ``(batch, num_labels)`` for multi-label classification; floats ``(batch,)`` for regression (``num_labels=1``).
    """
    if labels is None:
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
    _refuse_unless(
        ~ignored.all(), "Every label is -100 (ignored){details}: the loss would be NaN. Pass at least one real label."
    )
    out_of_range = ~ignored & ((labels < 0) | (labels >= num_labels))
    _refuse_unless(
        ~out_of_range.any(),
        f"labels{{details}} are out of range for num_labels={num_labels}: labels are class indices in "
        f"[0, {num_labels - 1}] (-100 to ignore one); build the model with the dataset's number of classes.",
        lambda: f"{labels[out_of_range].unique()[:5].tolist()}",
    )
