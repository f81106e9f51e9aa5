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
