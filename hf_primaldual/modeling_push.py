"""``push_to_hub`` of the package's models with the project's model card.

transformers' ``push_to_hub`` uploads its "Model Card for Model ID" stub when the repo has no card. The package's
models push through `hf_primaldual.hub.push_model` instead, which renders the project's card from what the model
saves. The package is imported by name, not relatively: transformers copies a checkpoint's code by following its
relative imports, and the Hub code has no place there. Run from a checkpoint's own code without the package, the
models push as transformers' do.
"""

from __future__ import annotations

import importlib
from typing import Any


class ProjectCardPushMixin:
    """Gives a `PreTrainedModel` the project's card on ``push_to_hub`` (see the module's docstring)."""

    def push_to_hub(self, repo_id: str, **kwargs: Any) -> Any:
        """transformers' ``push_to_hub`` (same arguments), with the project's card rendered from the saved model
        (its config, shape and attention) in place of transformers' stub; a repo that already has a card of this
        project keeps it. Returns the commit's `CommitInfo`."""
        try:
            hub = importlib.import_module("hf_primaldual.hub")
        except ImportError:  # this file runs from a checkpoint, without the package
            return super().push_to_hub(repo_id, **kwargs)
        return hub.push_model(self, repo_id, **kwargs)


__all__ = ["ProjectCardPushMixin"]
