"""The primal-dual attention family of Nguyen et al., "A Primal-Dual Framework for Transformers and Neural
Networks" (ICLR 2023, arXiv:2406.13781): one contract, one registry, one composer.

An attention is a **kernel** composed with two primal choices:

* a kernel (:class:`AttentionKernel`) gives the attention matrix of queries and keys: its reference formula
  (:mod:`.attention_reference`) and, optionally, a fast implementation (:mod:`.attention_kernels`) that need not
  form the matrix. Registered once with :func:`register_kernel`, which names the ``attention_type``\\ s it gives
  (``linear``, ``linear_bn``, ``linear_sh``, ``linear_bn_sh``; the softmax kernel's are ``softmax``, ``bn``, ``sh``,
  ``bn_sh``) and registers them wherever the family is served (transformers' ``AttentionInterface``);
* **Attention-BN**, a transform of queries and keys by the statistics of the keys each query may see;
* **Attention-SH**, a combinator: each group of heads that shares a pooling factor attends to its keys and values
  pooled by that factor.

:func:`primal_dual_attention` composes them, for the package's layer and for the registered functions alike, with
key masks (padding) or per-query masks (causal models), the formula (``"eager"``) or the fast path (``"sdpa"``).
The settings (:class:`AttentionSettings`) are declared once here; the model configs, the stock-model settings and
the command-line arguments derive from them.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Protocol, get_args

import torch
import torch.nn.functional as F

# Imported by name (not `from . import module`): transformers copies a checkpoint's code by following
# `from .module import` lines only.
from .attention_kernels import (
    FAST_PATHS,
    batch_normalize_for_dot_product,
    linear_attention,
    local_window_attention,
    softmax_attention,
)
from .attention_kernels import pool_keys_values as pool_windows
from .attention_reference import (
    TokenLayout,
    batch_normalize_queries_keys,
    linear_kernel,
    local_window_kernel,
    slot_of_token,
    softmax_kernel,
    spread_over_members,
)
from .attention_reference import pool_keys_values as pool_by_membership

ATTENTION_IMPLEMENTATIONS = ("eager", "sdpa")
ShPooling = Literal["mean", "max"]
SH_POOLING_MODES: tuple[str, ...] = get_args(ShPooling)


# ----------------------------------------------------------------------------------------------------------------
# Kernels and the attention types they give
# ----------------------------------------------------------------------------------------------------------------


class ReferenceKernel(Protocol):
    def __call__(
        self, query: torch.Tensor, key: torch.Tensor, allowed: torch.Tensor | None, options: AttentionOptions
    ) -> torch.Tensor:
        """``(B, H, N_q, D)`` queries, ``(B, H, N_k, D)`` keys -> the ``(B, H, N_q, N_k)`` attention matrix; each
        query's weights sum to 1 over the keys it is ``allowed`` (boolean, broadcastable to that shape, or None)."""


class FastKernel(Protocol):
    def __call__(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        allowed: torch.Tensor | None,
        dropout_p: float,
        options: AttentionOptions,
    ) -> torch.Tensor:
        """The reference's ``A @ V`` (with attention dropout ``dropout_p`` on ``A`` where the kernel takes it),
        ``(B, H, N_q, D_v)``, without forming ``A`` where the maths allows."""


@dataclass(frozen=True)
class AttentionKernel:
    """A kernel of the family and what it composes with.

    Attributes:
        name: the kernel's name, which prefixes the names of its compositions (``linear_bn``).
        reference: the formula (:class:`ReferenceKernel`), what ``"eager"`` runs and returns as attentions.
        fast: the fast implementation (:class:`FastKernel`); None: ``"sdpa"`` runs the reference too.
        type_name: the ``attention_type`` of the kernel alone (default: ``name``).
        batch_norm: composes with Attention-BN.
        scaled_heads: composes with Attention-SH.
        dot_product: the kernel sees queries and keys only through ``q_i^T k_j`` and is unchanged by adding a
            constant to one query's scores (softmax); BN's scale can then go on the queries alone, and BN on a
            causal model (each query its own statistics) is defined.
        attention_dropout: attention dropout applies to its matrix (the linear kernel's fast form never forms it).
    """

    name: str
    reference: ReferenceKernel
    fast: FastKernel | None = None
    type_name: str | None = None
    batch_norm: bool = True
    scaled_heads: bool = True
    dot_product: bool = False
    attention_dropout: bool = True

    def attention_types(self) -> dict[str, AttentionSpec]:
        """The ``attention_type`` names this kernel gives: itself, and its compositions with BN and SH."""
        stem = "" if self.name == DEFAULT_KERNEL else f"{self.name}_"
        types = {self.type_name or self.name: AttentionSpec(self.name)}
        if self.batch_norm:
            types[f"{stem}bn"] = AttentionSpec(self.name, batch_norm=True)
        if self.scaled_heads:
            types[f"{stem}sh"] = AttentionSpec(self.name, scaled_heads=True)
        if self.batch_norm and self.scaled_heads:
            types[f"{stem}bn_sh"] = AttentionSpec(self.name, batch_norm=True, scaled_heads=True)
        return types


@dataclass(frozen=True)
class AttentionSpec:
    """The composable parts an ``attention_type`` name stands for: a kernel, with or without BN and SH."""

    kernel: str
    batch_norm: bool = False
    scaled_heads: bool = False

    def __post_init__(self) -> None:
        kernel = KERNELS.get(self.kernel)
        if kernel is None:
            raise ValueError(f"Unknown attention kernel {self.kernel!r}: choose one of {', '.join(KERNELS)}.")
        if (self.batch_norm and not kernel.batch_norm) or (self.scaled_heads and not kernel.scaled_heads):
            part = "Attention-BN" if self.batch_norm and not kernel.batch_norm else "Attention-SH"
            composing = [k.name for k in KERNELS.values() if (k.batch_norm or not self.batch_norm)
                         and (k.scaled_heads or not self.scaled_heads)]
            raise ValueError(
                f"The {self.kernel} kernel ({kernel.type_name or kernel.name}) does not compose with {part}: use the "
                f"{' or '.join(composing)} kernel for that."
            )


DEFAULT_KERNEL = "softmax"
KERNELS: dict[str, AttentionKernel] = {}
ATTENTION_TYPES: dict[str, AttentionSpec] = {}
# Called with the new attention_type names whenever a kernel is registered (transformers' AttentionInterface).
_TYPE_LISTENERS: list[Callable[[list[str]], None]] = []


def register_kernel(kernel: AttentionKernel) -> list[str]:
    """Add a kernel to the family: its ``attention_type``\\ s become valid in the configs, in
    :func:`primal_dual_attention` and as ``primaldual_<type>`` attention functions. Returns the new names."""
    previous = KERNELS.get(kernel.name)
    KERNELS[kernel.name] = kernel  # the specs below check their kernel against the registry
    types = kernel.attention_types()
    taken = {name for name in types if name in ATTENTION_TYPES and ATTENTION_TYPES[name].kernel != kernel.name}
    if taken:
        if previous is None:
            del KERNELS[kernel.name]
        else:
            KERNELS[kernel.name] = previous
        raise ValueError(f"attention_type names {sorted(taken)} belong to another kernel already.")
    ATTENTION_TYPES.update(types)
    for listener in _TYPE_LISTENERS:
        listener(list(types))
    return list(types)


def on_attention_types_added(listener: Callable[[list[str]], None]) -> None:
    """Call ``listener(names)`` for the types of every kernel registered from now on."""
    _TYPE_LISTENERS.append(listener)


def parse_attention_type(name: str) -> AttentionSpec:
    """The :class:`AttentionSpec` of an ``attention_type`` name; a clear error for an unknown one."""
    try:
        return ATTENTION_TYPES[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"Unknown attention_type {name!r}. Choose one of: {', '.join(ATTENTION_TYPES)}."
        ) from None


# ----------------------------------------------------------------------------------------------------------------
# The settings, declared once
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class AttentionSettings:
    """The settings of the family's attentions, with their defaults and allowed values: the fields of every model
    config (:class:`~hf_primaldual.configuration_attention.PrimalDualAttentionConfig`), the
    ``primaldual_attention`` settings of a stock model, and the training commands' arguments. The annotations are
    what a command line takes (one type per option); :meth:`check_settings` also admits an integer for a float and
    a tuple for ``head_scales``, as Python callers write them."""

    attention_type: str = field(
        default=DEFAULT_KERNEL, metadata={"help": "the kernel composed with BN and/or SH: softmax, bn, sh, bn_sh, linear, linear_bn, linear_sh, linear_bn_sh, or sparse (a local window)"}
    )
    head_scales: list[int] | None = field(
        default=None,
        metadata={"help": "SH: the pooling factor of each head's keys and values, one integer >= 1 per head, at least "
                          "one of them 1 (default: the heads split into up to three groups at scales 1, 2 and 4)"},
    )
    sh_pooling: Literal["mean", "max"] = field(default="mean", metadata={"help": "SH: how keys and values are pooled"})
    attention_window: int = field(default=16, metadata={"help": "sparse: keys on each side of a query"})
    bn_eps: float = field(default=1e-5, metadata={"help": "BN: added to the keys' variance before the square root"})
    bn_mean_weight: float = field(
        default=1.0, metadata={"help": "BN: weight of the keys' mean subtracted (1: the derivation; 0: no re-centring)"}
    )
    bn_use_std: bool = field(default=True, metadata={"help": "BN: divide by the keys' standard deviation"})

    #: The bounds a setting is checked against, beyond its type: a hostile or mistyped config fails here.
    LIMITS: ClassVar[dict[str, tuple[float, float]]] = {"attention_window": (1, 1 << 20), "head_scale": (1, 1 << 16), "bn_eps": (0.0, 1.0),
              "bn_mean_weight": (-1e3, 1e3)}

    def check_settings(self, num_heads: int | None = None) -> None:
        """Raise an :class:`InvalidSetting` naming the setting and the fix where a value is mistyped, not finite or
        out of range (``num_heads``: check ``head_scales`` against the model's heads too)."""
        try:
            parse_attention_type(self.attention_type)
        except ValueError as err:
            raise InvalidSetting("attention_type", str(err)) from None
        if self.sh_pooling not in SH_POOLING_MODES:
            raise InvalidSetting("sh_pooling", f"must be one of {SH_POOLING_MODES}, got {self.sh_pooling!r}.")
        if not isinstance(self.bn_use_std, bool):
            raise InvalidSetting("bn_use_std", f"must be true or false, got {self.bn_use_std!r}.")
        low, high = self.LIMITS["attention_window"]
        if not _is_integer(self.attention_window) or not low <= self.attention_window <= high:
            raise InvalidSetting(
                "attention_window",
                f"must be an integer in [{low}, {high}] (keys on each side of a query), got {self.attention_window!r}.",
            )
        for name in ("bn_eps", "bn_mean_weight"):
            value = getattr(self, name)
            low, high = self.LIMITS[name]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                    or not low <= value <= high or (name == "bn_eps" and value <= 0):
                bounds = f"in ({low}, {high}]" if name == "bn_eps" else f"in [{low}, {high}]"
                raise InvalidSetting(name, f"must be a finite number {bounds}, got {value!r}.")
        if self.head_scales is None:
            return
        scales = list(self.head_scales)
        low, high = self.LIMITS["head_scale"]
        if any(not _is_integer(s) or not low <= s <= high for s in scales):
            raise InvalidSetting("head_scales", f"must be integers in [{low}, {high}] (1 = no pooling), got {scales}.")
        if num_heads is not None and len(scales) != num_heads:
            raise InvalidSetting(
                "head_scales", f"needs one factor per head: got {len(scales)} ({scales}) for {num_heads} heads."
            )
        if 1 not in scales:
            raise InvalidSetting(
                "head_scales",
                f"needs at least one head at scale 1 (full resolution), got {scales}: set one of them to 1.",
            )

    @classmethod
    def names(cls) -> list[str]:
        # Read once, at import: torch.compile cannot trace dataclasses.fields (a graph break in every attention call
        # of a stock model, which reads its settings per call).
        return list(_SETTING_NAMES)


_SETTING_NAMES: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(AttentionSettings))


class InvalidSetting(ValueError):
    """A setting of :class:`AttentionSettings` that cannot be taken; ``setting`` names it."""

    def __init__(self, setting: str, problem: str) -> None:
        self.setting = setting
        super().__init__(problem if problem.startswith("Unknown") else f"{setting} {problem}")


def _is_integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def default_head_scales(num_heads: int) -> list[int]:
    """Attention-SH's default factors: the heads split into up to three equal groups at scales 1, 2 and 4.

    Three heads (DeiT-tiny) give ``[1, 2, 4]``, eight give ``[1, 1, 1, 2, 2, 2, 4, 4]``.
    """
    return [2 ** min(2, (3 * head) // num_heads) for head in range(num_heads)]


@dataclass(frozen=True)
class AttentionOptions:
    """Everything about an attention that is fixed by the model: its spec, its settings resolved for its heads,
    its dropout and its score scale."""

    spec: AttentionSpec
    head_scales: tuple[int, ...]
    sh_pooling: Literal["mean", "max"] = "mean"
    bn_eps: float = 1e-5
    bn_mean_weight: float = 1.0
    bn_use_std: bool = True
    attention_window: int = 16
    dropout: float = 0.0
    #: the softmax kernel's score scale; None: ``1 / sqrt(D)`` (models that scale otherwise pass their own)
    scaling: float | None = None

    @classmethod
    def from_settings(
        cls, settings: Any, num_heads: int, dropout: float = 0.0, scaling: float | None = None
    ) -> AttentionOptions:
        """From anything holding the :class:`AttentionSettings` fields (a model config, a settings object)."""
        return cls(
            spec=parse_attention_type(settings.attention_type),
            head_scales=tuple(int(s) for s in (settings.head_scales or default_head_scales(num_heads))),
            sh_pooling=settings.sh_pooling,
            bn_eps=float(settings.bn_eps),
            bn_mean_weight=float(settings.bn_mean_weight),
            bn_use_std=bool(settings.bn_use_std),
            attention_window=int(settings.attention_window),
            dropout=dropout,
            scaling=scaling,
        )

    @classmethod
    def from_config(cls, config: Any) -> AttentionOptions:
        """Read the attention fields of a :class:`PrimalDualAttentionConfig`."""
        return cls.from_settings(config, config.num_attention_heads, config.attention_probs_dropout_prob)

    @property
    def kernel(self) -> AttentionKernel:
        return KERNELS[self.spec.kernel]

    def head_groups(self) -> list[tuple[int, list[int]]]:
        """The heads that share a pooling factor, ``[(scale, heads), ...]``, one entry per distinct scale."""
        if not self.spec.scaled_heads:
            return [(1, list(range(len(self.head_scales))))]
        groups: dict[int, list[int]] = {}
        for head, scale in enumerate(self.head_scales):
            groups.setdefault(scale, []).append(head)
        return sorted(groups.items())


def safe_compute_dtype(spec: AttentionSpec, dtype: torch.dtype) -> torch.dtype:
    """The dtype an attention runs in for inputs of ``dtype``.

    float16 cannot hold BN's ``1 / (var + eps)`` for a (near) constant key feature (1e5 > 65504) nor the linear
    kernel's sums over the keys: those types run in float32 and return float16. bfloat16 has float32's range.
    """
    if dtype == torch.float16 and (spec.batch_norm or spec.kernel == "linear"):
        return torch.float32
    return dtype


# ----------------------------------------------------------------------------------------------------------------
# The built-in kernels
# ----------------------------------------------------------------------------------------------------------------

register_kernel(AttentionKernel(
    "softmax",
    reference=lambda q, k, allowed, options: softmax_kernel(q, k, allowed, options.scaling),
    fast=lambda q, k, v, allowed, p, options: softmax_attention(q, k, v, allowed, p, options.scaling),
    dot_product=True,
))
register_kernel(AttentionKernel(
    "linear",
    reference=lambda q, k, allowed, options: linear_kernel(q, k, allowed),
    fast=lambda q, k, v, allowed, p, options: linear_attention(q, k, v, allowed),
    attention_dropout=False,
))
# The SVR fitted on a subset of the keys. BN's statistics and SH's pooled keys are defined over the whole sequence,
# a window's keys are per query: the compositions are not the paper's and are not defined.
register_kernel(AttentionKernel(
    "local_window",
    type_name="sparse",
    reference=lambda q, k, allowed, options: local_window_kernel(
        q, k, allowed, options.attention_window, options.scaling
    ),
    fast=lambda q, k, v, allowed, p, options: local_window_attention(
        q, k, v, options.attention_window, allowed, p, options.scaling
    ),
    batch_norm=False,
    scaled_heads=False,
))


# ----------------------------------------------------------------------------------------------------------------
# The composer
# ----------------------------------------------------------------------------------------------------------------


def primal_dual_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    options: AttentionOptions,
    mask: torch.Tensor | None = None,
    layout: TokenLayout = TokenLayout(),
    implementation: str = "sdpa",
    dropout_p: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Multi-head attention of any type of the family.

    Per group of heads sharing an SH scale: keys and values pooled (SH), queries and keys batch-normalised with the
    statistics of the keys each query may see (BN), then the kernel, as its formula (``"eager"``, which also returns
    the matrix) or its fast implementation (``"sdpa"``).

    Args:
        query, key, value: ``(B, H, N_q, D)``, ``(B, H, N_k, D)``, ``(B, H, N_k, D_v)``.
        options: the attention type and its settings (:class:`AttentionOptions`).
        mask: None (every key), a boolean key mask ``(B, N_k)``, ``True`` for real keys, which every query sees
            (padding: padded keys take no weight and are left out of BN statistics and SH pooling), or a boolean
            per-query mask ``(B, 1, N_q, N_k)``, ``True`` where query ``i`` may attend to key ``j`` (a causal model:
            BN then uses each query's own keys' statistics; SH is refused, a pooled slot would mix keys that some
            queries may not see).
        layout: prefix tokens and 2-D grid, for SH pooling.
        implementation: ``"eager"`` or ``"sdpa"``.
        dropout_p: attention dropout (0 in evaluation).

    Returns:
        ``(output, weights)``: ``(B, H, N_q, D_v)``, and for ``"eager"`` the ``(B, H, N_q, N_k)`` attention matrix
        over the original keys (for SH heads each pooled slot's weight spread over its members), for ``"sdpa"``
        None.
    """
    if implementation not in ATTENTION_IMPLEMENTATIONS:
        raise ValueError(
            f"attn_implementation={implementation!r} is not available for the primal-dual attentions: use "
            f"{' or '.join(map(repr, ATTENTION_IMPLEMENTATIONS))} (the attention itself is chosen by attention_type)."
        )
    spec, kernel = options.spec, options.kernel
    per_query = mask is not None and mask.dim() == 4
    key_mask = None if per_query else mask
    allowed = mask if per_query else (None if mask is None else mask[:, None, None, :])
    if per_query:
        _check_per_query_composition(spec, kernel)
    eager = implementation == "eager"

    dtype = query.dtype
    compute_dtype = safe_compute_dtype(spec, dtype)
    if compute_dtype != dtype:
        query, key, value = (x.to(compute_dtype) for x in (query, key, value))

    def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: int) -> tuple[torch.Tensor, ...]:
        """One group of heads: ``(output,)``, or for ``"eager"`` ``(weights, values)`` over the original keys."""
        pooled_mask, pooled_allowed = key_mask, allowed
        if scale > 1:
            # torch.export with a dynamic length cannot take the windows' reshapes (their padding and count are
            # integer arithmetic on the length): the membership matrix there, the same numbers.
            pool = pool_by_membership if eager or torch.compiler.is_exporting() else pool_windows
            k, v, pooled_mask = pool(k, v, key_mask, scale, layout, options.sh_pooling)
            pooled_allowed = None if pooled_mask is None else pooled_mask[:, None, None, :]
        if spec.batch_norm:
            q, k = _batch_normalize(q, k, pooled_allowed, options, per_query or (not eager and kernel.dot_product))
        if not eager and kernel.fast is not None:
            return (kernel.fast(q, k, v, pooled_allowed, dropout_p if kernel.attention_dropout else 0.0, options),)
        weights = kernel.reference(q, k, pooled_allowed, options)
        if kernel.attention_dropout:
            weights = F.dropout(weights, p=dropout_p, training=dropout_p > 0)
        if not eager:
            return (torch.matmul(weights, v),)
        if scale > 1:
            slots = slot_of_token(key.shape[-2], scale, layout, q.device)
            weights, v = spread_over_members(weights, slots, key_mask), v[..., slots, :]
        return weights, v

    parts = _over_head_groups(attend, query, key, value, options)
    # Eager: the output is computed from the very weights returned, so that attributions through them reach the
    # inputs.
    output, weights = (torch.matmul(*parts), parts[0]) if eager else (parts[0], None)
    if compute_dtype != dtype:
        output = output.to(dtype)
        weights = None if weights is None else weights.to(dtype)
    return output, weights


def _check_per_query_composition(spec: AttentionSpec, kernel: AttentionKernel) -> None:
    if spec.scaled_heads:
        raise ValueError(
            "Attention-SH needs every query to see the same keys, but this model's queries see different ones (a "
            "causal or windowed mask): a pooled slot would mix keys that some queries may not see. Use an attention "
            "without SH (primaldual_bn or primaldual_softmax) on this model."
        )
    if spec.batch_norm and not kernel.dot_product:
        raise ValueError(
            f"{kernel.name}_bn where queries see different keys (a causal or windowed mask) would normalise the keys "
            f"once per query (O(N^2 D) memory): use bn (the softmax kernel) or {kernel.type_name or kernel.name}."
        )


def _batch_normalize(
    query: torch.Tensor, key: torch.Tensor, allowed: torch.Tensor | None, options: AttentionOptions,
    for_dot_product: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention-BN: the paper's transform of both sides, or, for a dot-product kernel, the same scores with the
    scale on the queries (the only form where each query has its own statistics)."""
    settings = (options.bn_eps, options.bn_mean_weight, options.bn_use_std)
    if for_dot_product and (FAST_PATHS.bn_scale_on_queries or (allowed is not None and allowed.shape[-2] != 1)):
        return batch_normalize_for_dot_product(query, key, allowed, *settings)
    return batch_normalize_queries_keys(query, key, allowed, *settings)


def _over_head_groups(
    attend: Callable[..., tuple[torch.Tensor, ...]],
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    options: AttentionOptions,
) -> tuple[torch.Tensor, ...]:
    """Run ``attend(q, k, v, scale)`` once per group of heads sharing an SH scale, and put the heads of what it
    returns (``(B, H_group, ...)`` tensors) back in order."""
    groups = options.head_groups()
    if len(groups) == 1:
        return attend(query, key, value, groups[0][0])
    num_heads = query.shape[1]
    in_head_order = sorted(groups, key=lambda group: group[1][0])
    if FAST_PATHS.head_split_view and [h for _, heads in in_head_order for h in heads] == list(range(num_heads)):
        # Each scale's heads are a consecutive range (the default layout): split the heads on the (B, N, H, D) view
        # the projections produce, so that the backward pass gathers the gradients of q, k and v with one cat each,
        # in that layout, and the outputs are written side by side in it too (the caller's
        # transpose(1, 2).reshape(B, N, H * D) is then a view).
        sizes = [len(heads) for _, heads in in_head_order]

        def split(x: torch.Tensor) -> list[torch.Tensor]:
            return [part.transpose(1, 2) for part in x.transpose(1, 2).split(sizes, dim=2)]

        parts = [attend(q, k, v, scale)
                 for (scale, _), q, k, v in zip(in_head_order, split(query), split(key), split(value))]
        return tuple(torch.cat([x.transpose(1, 2) for x in same], dim=2).transpose(1, 2) for same in zip(*parts))

    parts = []
    for scale, heads in groups:
        # Heads sharing a scale are contiguous in the default layout: a slice is a view, not a copy.
        index = slice(heads[0], heads[-1] + 1) if heads == list(range(heads[0], heads[-1] + 1)) else heads
        parts.append(attend(query[:, index], key[:, index], value[:, index], scale))
    order = torch.tensor([head for _, heads in groups for head in heads], device=query.device).argsort()
    return tuple(torch.cat(same, dim=1)[:, order] for same in zip(*parts))


__all__ = [
    "ATTENTION_IMPLEMENTATIONS",
    "ATTENTION_TYPES",
    "AttentionKernel",
    "AttentionOptions",
    "AttentionSettings",
    "AttentionSpec",
    "InvalidSetting",
    "KERNELS",
    "TokenLayout",
    "default_head_scales",
    "on_attention_types_added",
    "parse_attention_type",
    "primal_dual_attention",
    "register_kernel",
]
