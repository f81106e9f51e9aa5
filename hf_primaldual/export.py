"""Export for deployment: a model of the package, or a transformers model under a ``primaldual_<type>`` attention,
as a ``torch.export`` program or an ONNX file (through ``torch.onnx.export(dynamo=True)``), with dynamic batch and
sequence axes, for ONNX Runtime and other runtimes.

    from hf_primaldual.export import export_onnx
    export_onnx(model, {"past_values": x, "attention_mask": mask}, "model.onnx")   # logits out

Thin on purpose: what it adds to ``torch.onnx.export`` is the dynamic axes (batch on every input, the sequence on
the inputs that have one, bounded by the model's maximum length) and a model that returns the named outputs as a
tuple. ONNX needs the ``deploy`` extra (``pip install hf-primaldual[deploy]``: onnx, onnxscript, onnxruntime).
docs/DEPLOY.md says what an exported model checks and what it cannot.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .attention import AttentionOptions, default_head_scales, parse_attention_type
from .attention_interface import REGISTERED_ATTENTIONS, settings_of

#: Inputs whose axis 1 is the sequence (time steps, tokens); every other input is dynamic in its batch axis only
#: (images keep their size: a ViT's position embeddings fix it).
SEQUENCE_INPUTS = frozenset({"past_values", "input_ids", "attention_mask", "token_type_ids", "position_ids",
                             "inputs_embeds"})


class NamedOutputs(nn.Module):
    """``model`` called with positional tensors given to it as the keyword inputs ``input_names``, returning the
    tuple of the named fields of its output: an exported graph takes and returns tensors, not dicts of them."""

    def __init__(self, model: nn.Module, input_names: Sequence[str], output_names: Sequence[str] = ("logits",)) -> None:
        super().__init__()
        self.model = model
        self.input_names = tuple(input_names)
        self.output_names = tuple(output_names)

    def forward(self, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outputs = self.model(**dict(zip(self.input_names, tensors)), return_dict=True)
        missing = [name for name in self.output_names if outputs.get(name) is None]
        if missing:
            raise ValueError(
                f"The model returned no {missing} (it returned {list(outputs.keys())}): pass output_names from those."
            )
        return tuple(outputs[name] for name in self.output_names)


def max_sequence_length(model: nn.Module) -> int | None:
    """The longest sequence the model takes, from its config (time steps or position embeddings), or None."""
    config = getattr(model, "config", None)
    for name in ("max_sequence_length", "max_position_embeddings"):
        value = getattr(config, name, None)
        if isinstance(value, int):
            return value
    return None


def shortest_sequence(model: nn.Module) -> int:
    """The shortest sequence an export of ``model`` with a dynamic length holds for: with Attention-SH, one that
    leaves each head group more than one pooled key after a prefix token (``max(head_scales) + 2``; torch.export
    cannot keep a group's pooled-key count symbolic where it may be 1); 1 otherwise."""
    scales = []
    for module in model.modules():
        options = getattr(module, "options", None)  # the package's attention layers
        if isinstance(options, AttentionOptions) and options.spec.scaled_heads:
            scales.append(max(options.head_scales))
        config = getattr(module, "config", None)  # a stock model's (or a layer's own) config
        attention_type = REGISTERED_ATTENTIONS.get(getattr(config, "_attn_implementation", None) or "")
        if attention_type is not None and parse_attention_type(attention_type).scaled_heads:
            heads = getattr(config, "num_attention_heads", 1)
            scales.append(max(settings_of(config)["head_scales"] or default_head_scales(heads)))
    return max(scales) + 2 if scales else 1


def dynamic_shapes_for(
    inputs: Mapping[str, torch.Tensor], max_length: int | None = None, min_length: int = 1
) -> dict[str, dict[int, torch.export.Dim]]:
    """``torch.export`` dynamic shapes for keyword ``inputs``: axis 0 ``batch`` on each, axis 1 ``sequence`` (from
    ``min_length`` to ``max_length``) on those in :data:`SEQUENCE_INPUTS`. The names become the ONNX file's
    dimension names."""
    batch = torch.export.Dim("batch")
    sequence = torch.export.Dim("sequence", min=min_length, **({"max": max_length} if max_length else {}))
    shapes = {}
    for name, tensor in inputs.items():
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(f"Input {name!r} is a {type(tensor).__name__}: export takes tensors only.")
        axes = {0: batch}
        if name in SEQUENCE_INPUTS and tensor.dim() >= 2:
            if not min_length <= tensor.shape[1] <= (max_length or tensor.shape[1]):
                raise ValueError(
                    f"The example {name} has {tensor.shape[1]} steps, outside the lengths the export is for "
                    f"[{min_length}, {max_length}]: give an example of a length in that range."
                )
            axes[1] = sequence
        shapes[name] = axes
    return shapes


def _prepared(model: nn.Module, inputs: Mapping[str, torch.Tensor], output_names: Sequence[str],
              dynamic_shapes: Mapping[str, Any] | None) -> tuple[NamedOutputs, tuple, tuple]:
    if getattr(model, "training", False):
        raise ValueError("The model is in training mode: call model.eval() before exporting it (dropout, batch norm).")
    inputs = dict(inputs)
    if dynamic_shapes is None:
        dynamic_shapes = dynamic_shapes_for(inputs, max_sequence_length(model), shortest_sequence(model))
    unknown = set(dynamic_shapes) - set(inputs)
    if unknown:
        raise ValueError(f"dynamic_shapes names {sorted(unknown)}, which are not among the inputs {list(inputs)}.")
    # one entry, for forward's *tensors, holding one per input
    shapes = (tuple(dynamic_shapes.get(name) for name in inputs),)
    return NamedOutputs(model, list(inputs), output_names), tuple(inputs.values()), shapes


def export_program(
    model: nn.Module,
    inputs: Mapping[str, torch.Tensor],
    output_names: Sequence[str] = ("logits",),
    dynamic_shapes: Mapping[str, Any] | None = None,
) -> torch.export.ExportedProgram:
    """``torch.export.export`` of ``model`` (in eval mode) called with the keyword ``inputs`` (example tensors, e.g.
    ``past_values (B, T, C)`` and ``attention_mask (B, T)``), returning the tuple of ``output_names``; dynamic axes
    from :func:`dynamic_shapes_for` unless ``dynamic_shapes`` is given."""
    wrapped, args, shapes = _prepared(model, inputs, output_names, dynamic_shapes)
    return torch.export.export(wrapped, args, dynamic_shapes=shapes)


def export_onnx(
    model: nn.Module,
    inputs: Mapping[str, torch.Tensor],
    path: str | os.PathLike,
    output_names: Sequence[str] = ("logits",),
    dynamic_shapes: Mapping[str, Any] | None = None,
    opset_version: int | None = None,
) -> Path:
    """Write ``model`` as an ONNX file at ``path`` through ``torch.onnx.export(dynamo=True)``: inputs named as the
    keys of ``inputs``, outputs as ``output_names``, dynamic axes as in :func:`export_program`. Returns the path."""
    try:
        import onnxscript  # noqa: F401  (torch.onnx's dynamo exporter needs it, and onnx)
    except ImportError:
        raise ImportError(
            "Exporting to ONNX needs onnx and onnxscript: pip install 'hf-primaldual[deploy]'."
        ) from None
    # torch.export first, and its program to the ONNX exporter: given the model itself, torch.onnx.export falls back
    # to a draft export where torch.export refuses, and that drops the guards on the dynamic axes (a graph that is
    # wrong at other lengths).
    program = export_program(model, inputs, output_names, dynamic_shapes)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx_program = torch.onnx.export(
        program, input_names=list(inputs), output_names=list(output_names), opset_version=opset_version,
        dynamo=True,
    )
    onnx_program.save(str(path), external_data=False)
    return path


__all__ = ["NamedOutputs", "SEQUENCE_INPUTS", "dynamic_shapes_for", "export_onnx", "export_program",
           "max_sequence_length", "shortest_sequence"]
