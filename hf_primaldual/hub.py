"""Model cards for the Hub: the templates of `model_cards/` rendered with huggingface_hub's ModelCard, the
evaluation results as `model-index` entries."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from .attention import parse_attention_type

MODEL_CARD_TEMPLATES = Path(__file__).resolve().parent.parent / "model_cards"

_KERNEL_FORMULAS = {
    "softmax": "A_ij = softmax_j(q_i . k_j / sqrt(D))",
    "linear": "A_ij = Phi(q_i) . Phi(k_j) / sum_l Phi(q_i) . Phi(k_l), Phi = elu + 1 (O(N))",
}


def attention_formula(attention_type: str, config: Any | None = None) -> str:
    """One line saying what ``attention_type`` computes (with its settings, when ``config`` is given)."""
    spec = parse_attention_type(attention_type)
    parts = [_KERNEL_FORMULAS[spec.kernel]]
    if spec.local_window:
        window = getattr(config, "attention_window", "w")
        parts.append(f"over the keys with |i - j| <= {window} only (sparse)")
    if spec.batch_norm:
        beta = getattr(config, "bn_mean_weight", 1.0)
        scale = " and divided by the keys' standard deviation" if getattr(config, "bn_use_std", True) else ""
        parts.append(f"with q and k shifted by {beta} x the keys' mean{scale} (Attention-BN)")
    if spec.scaled_heads:
        scales = getattr(config, "head_scales", None) or "the default"
        parts.append(f"with head h seeing keys and values {getattr(config, 'sh_pooling', 'mean')}-pooled by "
                     f"head_scales = {scales} (Attention-SH)")
    return ", ".join(parts) + "."


@dataclass
class EvaluationRow:
    split: str
    metric: str
    value: float


def render_model_card(
    family: str,
    *,
    model_name: str,
    config: Any,
    dataset_name: str,
    dataset_description: str,
    hyperparameters: Mapping[str, Any],
    results: list[EvaluationRow],
    task_type: str,
    repo_id: str = "your-name/your-model",
    protocol_note: str = "",
    limitations: str = "",
    tags: list[str] | None = None,
    base_model: str | None = None,
) -> ModelCard:
    """Render ``model_cards/<family>.md`` for a trained model.

    Args:
        family: ``"primaldual-vit"`` or ``"primaldual-timeseries"`` (the template's name).
        results: the evaluation results; each becomes a `model-index` entry.
        task_type: the Hub task id of the results, e.g. ``"image-classification"``.
    """
    eval_results = [
        EvalResult(
            task_type=task_type,
            dataset_type=dataset_name,
            dataset_name=dataset_name,
            dataset_split=row.split,
            metric_type=row.metric,
            metric_name=row.metric,
            metric_value=row.value,
        )
        for row in results
    ]
    card_data = ModelCardData(
        model_name=model_name,
        library_name="transformers",
        license="apache-2.0",
        tags=["hf-primaldual", "primal-dual-attention", f"attention-{config.attention_type}", *(tags or [])],
        pipeline_tag=task_type if task_type == "image-classification" else None,
        base_model=base_model,
        eval_results=eval_results or None,
    )
    return ModelCard.from_template(
        card_data,
        template_path=str(MODEL_CARD_TEMPLATES / f"{family}.md"),
        model_name=model_name,
        attention_type=config.attention_type,
        attention_formula=attention_formula(config.attention_type, config),
        dataset_description=dataset_description,
        hyperparameters=dict(hyperparameters),
        results=results,
        repo_id=repo_id,
        num_channels=getattr(config, "num_input_channels", None),
        protocol_note=protocol_note,
        limitations=limitations or "Trained on one small dataset; check accuracy on your own data before use.",
    )
