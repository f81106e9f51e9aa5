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
