"""Speed and memory of the primal-dual attention family on the machine it runs on, side by side in one process.

    python scripts/benchmark.py                  # everything; writes docs/benchmark/ (tables, JSON, plots)
    python scripts/benchmark.py --smoke          # a seconds-long version (tiny sizes, 1 repetition) for CI
    python scripts/benchmark.py --sections vit stock --threads 1 --clock cpu --output_dir /tmp/bench
    python scripts/benchmark.py --device cuda --dtype bfloat16 --sections vit attention stock

(``scripts/benchmark.py`` is the same command.) Sections (each also a function of this module that returns its
rows):

* ``vit`` (:func:`benchmark_vit_training`): a training step (forward, backward, AdamW step) of
  ``PrimalDualViTForImageClassification`` for every ``attention_type`` against transformers'
  ``ViTForImageClassification`` with ``attn_implementation="sdpa"``, all with the same weights (the transformers
  model is saved and loaded into each PrimalDualViT), at DeiT-tiny 224 px (hidden 192, 12 layers, 3 heads,
  patch 16) and at 32 px / patch 4. SH types use ``head_scales`` (1, 2, 4).
* ``stock`` (:func:`benchmark_stock_models`): transformers' own models, unchanged, under ``sdpa`` and under each
  registered ``primaldual_<type>`` (``set_attn_implementation`` on a copy with the same weights), training step:
  ``ViTForImageClassification`` at the ``vit`` section's two shapes, and ``BertForSequenceClassification`` at a
  BERT-small shape (hidden 512, 4 layers, 8 heads, FFN 2048, vocabulary 30522) at sequence lengths 512 and 1024.
  SH uses the family's default head scales for the model (3 heads: 1, 2, 4; 8 heads: 1, 1, 1, 2, 2, 2, 4, 4).
* ``attention`` (:func:`benchmark_attention`): ``primal_dual_attention`` alone, forward (no autograd) and forward +
  backward, for every type over sequence lengths 64 to 4096 at time-series shapes: batch 8, 8 heads, head dim 8
  (the classifier's d_model 64 over 8 heads), no padding; SH types use ``head_scales`` (1, 1, 2, 2, 4, 4, 8, 8),
  i.e. scales 1, 2, 4, 8 over 8 heads; ``sparse`` a window of 16. With the analytic FLOPs (:func:`attention_flops`).
* ``dropout`` (:func:`benchmark_attention` with ``dropout=True``): the attention layer in training mode with
  attention dropout 0.1 at N = 1024 and 2048 (softmax, bn, sh, bn_sh), against PyTorch's own
  ``scaled_dot_product_attention(dropout_p=0.1)``, which on CPU leaves its fused kernel for its math kernel.
* ``timeseries`` (:func:`benchmark_timeseries_training`): the time-series classifier's training step at
  SelfRegulationSCP2's length (1152 steps, 7 channels, d_model 64, 8 heads, 3 layers, batch 16, the config's
  defaults otherwise: dropout 0.1, batch norm, flattened output), per type, SH scales as in ``attention``.
* ``uea`` (:func:`benchmark_uea_training`): the same classifier's training step at the shapes of the six UEA sets
  of the three-seed grid (each set's longest series, its channels and classes; batch 16, the protocol's model),
  for every type with attention dropout, with the family's fused CPU dropout against PyTorch's
  ``scaled_dot_product_attention(dropout_p=0.1)`` (:func:`~hf_primaldual.attention_kernels.fast_paths`
  ``(fused_cpu_dropout=False)``: the code path before the fused dropout): the per-step speed-up behind the grid's CPU-hours.
* ``cpu_dropout`` (:func:`benchmark_cpu_dropout_kernel`, issue 24): attention dropout inside the compiled CPU
  kernel (:mod:`hf_primaldual.cpu_attention`) against the fused-kernel path before it, at SelfRegulationSCP2's
  shape (the ``timeseries`` section's model): softmax with attention dropout 0.1 (also with the activation
  dropouts drawn by PyTorch instead of the kernel) and 0, bn, SH with scales
  1, 1, 1, 2, 2, 2, 4, 4, plain PyTorch's ``nn.TransformerEncoder`` of the same shape, and softmax under bfloat16
  autocast; then transformers' BERT-small (N = 512, batch 2, attention dropout 0.1) under ``sdpa`` and
  ``primaldual_softmax`` with and without the kernel. Every comparison timed round-robin in one process.
* ``compile`` (:func:`check_graph_breaks`, and compiled rows in ``vit`` and ``attention``): graph breaks of the
  attention function and of both models under ``torch._dynamo.explain``, and ``torch.compile``d timings of the
  ViT training step (transformers' ViT, softmax, bn, sh, bn_sh; both sizes) and of the attention layer at
  N = 1024 (softmax, linear, bn, sh, bn_sh). Compiling takes about a minute per model on 2 cores.

How it measures:

* Device and precision: ``--device cpu|cuda`` puts models and inputs there; ``--dtype bfloat16`` runs the models'
  forward under ``torch.autocast`` (weights and optimizer stay float32, as in mixed-precision training) and the
  attention layer on bfloat16 inputs. ``--threads`` is a CPU setting and is refused with ``--device cuda``.
* Time: every variant of a comparison lives in the same process and is timed round-robin: a warm-up call each
  (twice for models), then ``repeats`` rounds that time every variant once, the order rotating from round to
  round, so that a concurrent load or a frequency change hits all variants alike. A fast call is repeated
  within a timing (calibrated to ~50 ms). The figure is the median over rounds. ``--clock wall`` (default) uses
  ``time.perf_counter``; ``--clock cpu`` the process's CPU time (``time.process_time``), which another job on
  the machine disturbs much less -- with one thread (``--threads 1``) the two agree on an idle machine. On CUDA
  the device is synchronised before a timing starts and before it ends (kernels are launched asynchronously), and
  only the wall clock is meaningful.
* Memory: on CPU, the peak, during one call, of the bytes of tensors allocated through torch's CPU allocator since
  the call began (minus those of them freed), from ``torch.profiler``'s memory events (``profile_memory=True``):
  so activations, gradients, temporaries and workspaces -- what the step adds on top of the weights, optimizer
  state and inputs that were live before it (gradients are dropped after each step, so they count). It does not
  see memory that is not a torch tensor (Python objects, the allocator's caching, kernels' stack buffers).
  ``tracemalloc`` would see none of torch's allocations, and RSS high-water marks include the allocator's and
  the OS's behaviour; this measure is exact and deterministic (a separate, untimed call). On CUDA, the same
  quantity from the caching allocator: ``torch.cuda.max_memory_allocated`` during the call minus
  ``memory_allocated`` before it.
* FLOPs: analytic counts of what each attention must compute, see :func:`attention_flops`.

Targets (issues 5 and 13) are computed from one run's rows by :func:`targets` and printed at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import gc
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
import torch._dynamo

from hf_primaldual.attention import ATTENTION_TYPES, AttentionOptions, TokenLayout, parse_attention_type
from hf_primaldual.attention_interface import PREFIX
from hf_primaldual.attention_kernels import fast_paths
from hf_primaldual.configuration_primaldual_timeseries import PrimalDualTimeSeriesConfig
from hf_primaldual.configuration_primaldual_vit import PrimalDualViTConfig
from hf_primaldual.attention import primal_dual_attention
from hf_primaldual.modeling_primaldual_timeseries import PrimalDualTimeSeriesForClassification
from hf_primaldual.modeling_primaldual_vit import PrimalDualViTForImageClassification

from . import REPO

ALL_TYPES = tuple(ATTENTION_TYPES)
VIT_REFERENCE = "transformers ViT (sdpa)"
STOCK_REFERENCE = "sdpa"
VIT_HEAD_SCALES = (1, 2, 4)
SERIES_HEAD_SCALES = (1, 1, 2, 2, 4, 4, 8, 8)
DEVICES = ("cpu", "cuda")
DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "bfloat16": torch.bfloat16}
# The figures go where docs/PERFORMANCE.md links them.
DEFAULT_OUTPUT = REPO / "docs" / "benchmark"


@dataclass(frozen=True)
class Settings:
    """Everything a run's sizes, device and precision depend on: the full run's defaults, or :meth:`smoke`'s."""

    device: str = "cpu"
    dtype: str = "float32"
    vit_sizes: tuple[tuple[str, int, int, int], ...] = (  # (name, image size, patch size, batch)
        ("32px", 32, 4, 32),
        ("224px", 224, 16, 8),
    )
    vit_hidden: int = 192
    vit_layers: int = 12
    vit_heads: int = 3
    vit_intermediate: int = 768
    text_sizes: tuple[tuple[str, int, int], ...] = (  # (name, sequence length, batch)
        ("N=512", 512, 2),
        ("N=1024", 1024, 1),
    )
    text_hidden: int = 512
    text_layers: int = 4
    text_heads: int = 8
    text_intermediate: int = 2048
    text_vocab: int = 30522
    # BERT's default 0.1 would compare PyTorch's CPU dropout (its math kernel) against the family's fused dropout
    # (the ``dropout`` section), not the attention types.
    text_attention_dropout: float = 0.0
    attention_lengths: tuple[int, ...] = (64, 128, 256, 512, 1024, 2048, 4096)
    attention_batch: int = 8
    attention_heads: int = 8
    attention_head_dim: int = 8
    attention_head_scales: tuple[int, ...] = SERIES_HEAD_SCALES
    attention_dropout: float = 0.1
    dropout_attention_types: tuple[str, ...] = ("softmax", "bn", "sh", "bn_sh")
    dropout_min_length: int = 1024
    dropout_max_length: int = 2048
    compiled_attention_length: int = 1024
    compiled_attention_types: tuple[str, ...] = ("softmax", "linear", "bn", "sh", "bn_sh")
    compiled_vit_types: tuple[str, ...] = (VIT_REFERENCE, "softmax", "bn", "sh", "bn_sh")
    compiled_vit_sizes: tuple[str, ...] = ("32px", "224px")
    series_length: int = 1152
    series_channels: int = 7
    series_batch: int = 16
    series_hidden: int = 64
    series_heads: int = 8
    series_layers: int = 3
    series_intermediate: int = 256
    # (set, longest series, channels, classes) of the UEA grid's sets, as read from ../shared/data/uea
    uea_shapes: tuple[tuple[str, int, int, int], ...] = (
        ("JapaneseVowels", 29, 12, 9),
        ("NATOPS", 51, 24, 6),
        ("Epilepsy", 206, 3, 4),
        ("ArticularyWordRecognition", 144, 9, 25),
        ("Handwriting", 152, 3, 26),
        ("UWaveGestureLibrary", 315, 3, 8),
    )
    uea_attention_types: tuple[str, ...] = ("softmax", "bn", "sh", "bn_sh")
    model_repeats: int = 5
    attention_repeats: int = 5
    min_timing_s: float = 0.05

    @classmethod
    def smoke(cls, **overrides) -> Settings:
        """Tiny sizes and one repetition: every code path in seconds, numbers meaningless."""
        return cls(**{**dict(
            vit_sizes=(("32px", 32, 8, 2),),
            vit_hidden=24,
            vit_layers=1,
            vit_heads=3,
            vit_intermediate=48,
            text_sizes=(("N=32", 32, 2),),
            text_hidden=32,
            text_layers=1,
            text_heads=8,
            text_intermediate=64,
            text_vocab=100,
            attention_lengths=(16, 32),
            attention_batch=2,
            attention_heads=8,
            attention_head_dim=4,
            dropout_min_length=16,
            dropout_max_length=16,
            compiled_attention_length=32,
            compiled_attention_types=("softmax",),
            compiled_vit_types=("softmax",),
            series_length=24,
            series_channels=3,
            series_batch=2,
            series_hidden=16,
            series_heads=8,
            series_layers=1,
            series_intermediate=32,
            uea_shapes=(("tiny", 16, 3, 2),),
            model_repeats=1,
            attention_repeats=1,
            min_timing_s=0.0,
        ), **overrides})

    @property
    def torch_device(self) -> torch.device:
        return torch.device(self.device)

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]


def check_device(settings: Settings, clock: str = "wall", threads: int | None = None) -> None:
    """Refuse what cannot be measured as asked, before anything is built (``ValueError``)."""
    if settings.device not in DEVICES:
        raise ValueError(f"device {settings.device!r}: use one of {', '.join(DEVICES)}.")
    if settings.dtype not in DTYPES:
        raise ValueError(f"dtype {settings.dtype!r}: use one of {', '.join(DTYPES)}.")
    if settings.device == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("--device cuda: torch sees no CUDA device on this machine (torch.cuda.is_available()).")
        if clock != "wall":
            raise ValueError("--clock cpu measures the process's CPU time, which does not see the GPU's work: use wall.")
        if threads:
            raise ValueError("--threads sets torch's CPU threads, a CPU-run setting: leave it out with --device cuda.")


# ------------------------------------------------------------------------------------------------------------------
# Measuring
# ------------------------------------------------------------------------------------------------------------------

CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.process_time}


def synchronize(device: torch.device) -> None:
    """Wait for the kernels queued on ``device``: a CUDA call returns at launch, so a clock read without this would
    time the launches, not the work. Nothing to wait for on CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved_times(
    functions: dict[str, Callable[[], object]],
    repeats: int,
    warmup: int = 1,
    clock: str = "wall",
    min_timing_s: float = 0.05,
    device: torch.device = torch.device("cpu"),
) -> dict[str, list[float]]:
    """Seconds per call of each function, ``repeats`` samples each, measured round-robin (see the module doc)."""
    now = CLOCKS[clock]

    def timed(function: Callable[[], object], number: int) -> float:
        synchronize(device)
        start = now()
        for _ in range(number):
            function()
        synchronize(device)
        return (now() - start) / number

    calls = {}
    for name, function in functions.items():
        first = timed(function, max(1, warmup))
        calls[name] = max(1, math.ceil(min_timing_s / first)) if first > 0 else 1
    names = list(functions)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(repeats):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            samples[name].append(timed(functions[name], calls[name]))
    return samples


def peak_memory_bytes(function: Callable[[], object], device: torch.device = torch.device("cpu")) -> int:
    """Peak bytes of tensors allocated (and not yet freed) during one call on ``device``: on CPU from
    torch.profiler's memory events, on CUDA from the caching allocator's statistics."""
    gc.collect()
    if device.type == "cuda":
        synchronize(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        function()
        synchronize(device)
        return torch.cuda.max_memory_allocated(device) - before
    with warnings.catch_warnings(), _native_stderr_silenced():
        warnings.simplefilter("ignore")
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True) as prof:
            function()
    cpu = torch._C._autograd.DeviceType.CPU
    events = [
        event
        for event in prof.profiler.kineto_results.events()
        if event.name() == "[memory]" and event.device_type() == cpu
    ]
    events.sort(key=lambda event: event.start_ns())
    live = peak = 0
    for event in events:
        live += event.nbytes()
        peak = max(peak, live)
    return peak


@contextlib.contextmanager
def _native_stderr_silenced():
    """Send file descriptor 2 to /dev/null: kineto prints a line to it each time a profiler starts and stops."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def _median(samples: Sequence[float]) -> float:
    return statistics.median(samples) if samples else float("nan")


def _spread(samples: Sequence[float]) -> float:
    """Half the interquartile range relative to the median: the noise of a figure."""
    if len(samples) < 4:
        return float("nan")
    quartiles = statistics.quantiles(samples, n=4)
    return (quartiles[2] - quartiles[0]) / 2 / statistics.median(samples)


@contextlib.contextmanager
def _quiet_transformers():
    import transformers

    verbosity = transformers.logging.get_verbosity()
    bars = transformers.utils.logging.is_progress_bar_enabled()
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    try:
        yield
    finally:
        transformers.logging.set_verbosity(verbosity)
        if bars:
            transformers.utils.logging.enable_progress_bar()


# ------------------------------------------------------------------------------------------------------------------
# Attention alone
# ------------------------------------------------------------------------------------------------------------------


def attention_flops(
    attention_type: str,
    length: int,
    head_dim: int,
    head_scales: Sequence[int],
    window: int = 16,
    batch: int = 1,
) -> float:
    """Forward FLOPs an attention of ``attention_type`` must do over ``batch`` sequences of ``length`` tokens with
    ``len(head_scales)`` heads of dimension ``D = head_dim`` (a multiply-add is 2 FLOPs; exp, division and
    comparison 1). Per head, with ``N`` queries and ``M`` keys:

    * softmax kernel: ``q k^T`` 2NMD, softmax 5NM (max, subtract, exp, sum, divide), ``P v`` 2NMD:
      ``4NMD + 5NM``, with ``M = N``;
    * ``sparse``: the softmax kernel over the ``M = 2 * window + 1`` keys around each query (fewer at the ends
      are ignored; the blocked kernel also computes the masked corners of its blocks, not counted);
    * SH (``sh``, ``bn_sh``): ``M = ceil(N / s_h)`` pooled keys for head ``h``, plus pooling keys and values,
      ``2ND``;
    * BN (``bn``, ``bn_sh``, ``linear_bn``, ``linear_bn_sh``): the keys' mean and variance ``4MD``, normalising
      queries and keys ``2(N + M)D``;
    * linear kernel: feature maps ``elu(x) + 1`` ``3(N + M)D``, ``sum_j phi(k_j) v_j^T`` ``2MD^2``,
      ``sum_j phi(k_j)`` ``MD``, numerator ``2ND^2``, normaliser ``2ND``, division ``ND``:
      ``4NMD``-free, ``2(N + M)D^2 + ...`` -- O(N) in the length.

    Forward + backward is counted as 3x the forward (each matmul's backward makes two of the same size), the
    usual convention; the fused softmax kernel also recomputes the scores in its backward (+ ``2NMD``).
    """
    spec = parse_attention_type(attention_type)
    total = 0.0
    n, d = length, head_dim
    for scale in head_scales if spec.scaled_heads else [1] * len(head_scales):
        m = math.ceil(n / scale)
        flops = 2 * n * d * 2 if scale > 1 else 0.0
        if spec.batch_norm:
            flops += 4 * m * d + 2 * (n + m) * d
        if spec.kernel == "local_window":
            m = min(n, 2 * window + 1)
        if spec.kernel != "linear":
            flops += 4 * n * m * d + 5 * n * m
        else:
            flops += 3 * (n + m) * d + 2 * m * d * d + m * d + 2 * n * d * d + 2 * n * d + n * d
        total += flops
    return batch * total


def _random(shape: Sequence[int], seed: int, settings: Settings) -> torch.Tensor:
    """Normal values drawn on the CPU (the same on every device, whatever its generator), then moved."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=generator).to(settings.torch_device, settings.torch_dtype)


def _attention_inputs(
    batch: int, heads: int, length: int, head_dim: int, seed: int = 0, settings: Settings = Settings()
) -> list[torch.Tensor]:
    """q, k, v as the projections give them: (B, H, N, D) views of (B, N, H*D) tensors; leaves needing grad."""
    return [
        _random((batch, length, heads, head_dim), seed + index, settings).transpose(1, 2).requires_grad_()
        for index in range(3)
    ]


def _attention_calls(
    inputs: list[torch.Tensor], options: AttentionOptions | None, compiled: bool = False, dropout_p: float = 0.0
) -> tuple[Callable[[], object], Callable[[], object]]:
    """(forward without autograd, forward + backward) of one attention on fixed inputs (training mode);
    ``options=None``: PyTorch's ``scaled_dot_product_attention`` with ``dropout_p``."""
    query, key, value = inputs
    # the (B, N, H, D) layout a following o_proj gives the gradient
    grad = torch.randn(query.transpose(1, 2).shape, generator=torch.Generator().manual_seed(1))
    grad = grad.to(query.device, query.dtype).transpose(1, 2)

    def attend(q, k, v):
        if options is None:  # the baseline: PyTorch's SDPA
            return torch.nn.functional.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p)
        return primal_dual_attention(q, k, v, options, dropout_p=options.dropout)[0]

    function = torch.compile(attend, fullgraph=True, dynamic=False) if compiled else attend

    def forward():
        with torch.no_grad():
            return function(query, key, value)

    def forward_backward():
        output = function(query, key, value)
        return torch.autograd.grad(output, (query, key, value), grad)

    return forward, forward_backward


def attention_options(
    attention_type: str, head_scales: Sequence[int], window: int = 16, dropout: float = 0.0
) -> AttentionOptions:
    return AttentionOptions(
        spec=parse_attention_type(attention_type), head_scales=tuple(head_scales), attention_window=window,
        dropout=dropout,
    )


# The dropout run's baseline: torch's own SDPA with dropout_p, on the softmax kernel.
TORCH_SDPA = "torch SDPA"


@dataclass(frozen=True)
class _Variant:
    attention_type: str
    compiled: bool = False
    dropout: float = 0.0

    @property
    def name(self) -> str:
        return self.attention_type + (" (compiled)" if self.compiled else "") + (
            f" (dropout {self.dropout})" if self.dropout else "")


def benchmark_attention(
    settings: Settings = Settings(),
    attention_types: Iterable[str] = ALL_TYPES,
    clock: str = "wall",
    compiled: bool = False,
    log: Callable[[str], None] = print,
    dropout: bool = False,
) -> list[dict]:
    """Time, peak memory and FLOPs of ``primal_dual_attention`` per type and length (see the module doc).

    One row per (length, variant): ``attention_type``, ``compiled``, ``dropout``, ``run`` ("sweep": every type
    over ``settings.attention_lengths``; "dropout": with ``dropout``, ``settings.dropout_attention_types`` and
    PyTorch's own SDPA (``TORCH_SDPA``, its math kernel on CPU) with attention dropout ``settings.attention_dropout``
    from ``settings.dropout_min_length`` to ``settings.dropout_max_length``; "compile": with ``compiled``, the types in
    ``settings.compiled_attention_types`` at ``settings.compiled_attention_length``, eager and
    ``torch.compile(fullgraph=True)``), ``forward_ms``, ``forward_backward_ms`` (medians), their ``*_spread``,
    ``forward_peak_mb``, ``forward_backward_peak_mb``, ``forward_gflop``, and against softmax of the same run,
    length, compilation and dropout: ``speedup_vs_softmax`` (forward + backward) and ``memory_vs_softmax``
    (forward + backward peak); ``compile_s`` for compiled rows.
    """
    attention_types = list(attention_types)
    s = settings
    plan: list[tuple[str, int, list[_Variant]]] = []
    if compiled:
        chosen = [t for t in s.compiled_attention_types if t in attention_types]
        plan.append(("compile", s.compiled_attention_length,
                     [_Variant(t, c) for t in chosen for c in (False, True)]))
        # One code object (the closure in _attention_calls) compiled per type and grad mode: each is a
        # "recompile" to dynamo.
        torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 4 * len(chosen))
    elif dropout:
        variants = [_Variant(t, dropout=s.attention_dropout)
                    for t in (TORCH_SDPA, *[t for t in s.dropout_attention_types if t in attention_types])]
        for length in s.attention_lengths:
            if s.dropout_min_length <= length <= s.dropout_max_length:
                plan.append(("dropout", length, variants))
    else:
        for length in s.attention_lengths:
            plan.append(("sweep", length, [_Variant(t) for t in attention_types]))

    rows = []
    for run_name, length, variants in plan:
        inputs = _attention_inputs(s.attention_batch, s.attention_heads, length, s.attention_head_dim, settings=s)
        calls, compile_s = {}, {}
        for variant in variants:
            options = None if variant.attention_type == TORCH_SDPA else attention_options(
                variant.attention_type, s.attention_head_scales, dropout=variant.dropout)
            calls[variant] = _attention_calls(inputs, options, variant.compiled, variant.dropout)
            if variant.compiled:  # compile outside the timings (the forward and the forward + backward graphs)
                start = time.perf_counter()
                calls[variant][0]()
                calls[variant][1]()
                compile_s[variant] = time.perf_counter() - start
        forward, forward_backward = (
            interleaved_times({v: c[i] for v, c in calls.items()}, s.attention_repeats, 1, clock, s.min_timing_s,
                              s.torch_device)
            for i in (0, 1)
        )
        new_rows = []
        for variant in variants:
            row = {
                "run": run_name,
                "length": length,
                "attention_type": variant.attention_type,
                "compiled": variant.compiled,
                "dropout": variant.dropout,
                "forward_ms": 1e3 * _median(forward[variant]),
                "forward_spread": _spread(forward[variant]),
                "forward_backward_ms": 1e3 * _median(forward_backward[variant]),
                "forward_backward_spread": _spread(forward_backward[variant]),
                "forward_peak_mb": peak_memory_bytes(calls[variant][0], s.torch_device) / 2**20,
                "forward_backward_peak_mb": peak_memory_bytes(calls[variant][1], s.torch_device) / 2**20,
                "forward_gflop": attention_flops(
                    "softmax" if variant.attention_type == TORCH_SDPA else variant.attention_type, length,
                    s.attention_head_dim, s.attention_head_scales, batch=s.attention_batch,
                ) / 1e9,
            }
            if variant.compiled:
                row["compile_s"] = compile_s[variant]
            new_rows.append(row)
        for row in new_rows:
            base = next((r for r in new_rows if r["attention_type"] == "softmax" and r["compiled"] == row["compiled"]),
                        None)
            if base is not None:
                row["speedup_vs_softmax"] = base["forward_backward_ms"] / row["forward_backward_ms"]
                row["memory_vs_softmax"] = row["forward_backward_peak_mb"] / base["forward_backward_peak_mb"]
            torch_sdpa = next((r for r in new_rows if r["attention_type"] == TORCH_SDPA), None)
            if torch_sdpa is not None:
                row["speedup_vs_torch_sdpa"] = torch_sdpa["forward_backward_ms"] / row["forward_backward_ms"]
        rows += new_rows
        log(f"attention ({run_name}) N={length}: " + ", ".join(
            f"{v.name} {1e3 * _median(forward_backward[v]):.1f} ms" for v in variants))
    return rows


# ------------------------------------------------------------------------------------------------------------------
# Models
# ------------------------------------------------------------------------------------------------------------------


def _precision(settings: Settings) -> contextlib.AbstractContextManager:
    """The forward's precision: float32 as is, bfloat16 through autocast (float32 weights and optimizer state)."""
    if settings.torch_dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(settings.torch_device.type, dtype=settings.torch_dtype)


def _train_step(
    model: torch.nn.Module, optimizer: torch.optim.Optimizer, inputs: dict, settings: Settings
) -> Callable[[], None]:
    def step() -> None:
        with _precision(settings):
            loss = model(**inputs).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def _time_models(
    models: dict[str, torch.nn.Module],
    inputs: dict,
    settings: Settings,
    clock: str,
    compiled_names: Iterable[str] = (),
) -> dict[str, dict]:
    """Train-step median time and peak memory of each model (a fresh AdamW each), models and inputs moved to the
    settings' device; compiled ones under ``"<name> (compiled)"``."""
    device = settings.torch_device
    inputs = {key: value.to(device) for key, value in inputs.items()}
    steps, compile_s = {}, {}
    for name, model in models.items():
        model.to(device).train()
        steps[name] = _train_step(model, torch.optim.AdamW(model.parameters(), lr=1e-5), inputs, settings)
    compiled_names = list(compiled_names)
    if compiled_names:
        # transformers' output wrappers (can_return_tuple, ...) are one code object shared by every model, and its
        # classification loss sets config.problem_type on the first call: each compiled model costs dynamo about
        # two "recompiles" of the same frames, and past recompile_limit (8) it silently runs them eagerly.
        torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 4 * len(compiled_names) + 8)
    for name in compiled_names:
        model = models[name]
        compiled_model = torch.compile(model)
        step = _train_step(compiled_model, torch.optim.AdamW(model.parameters(), lr=1e-5), inputs, settings)
        start = time.perf_counter()
        step()  # compiles the forward and backward graphs
        synchronize(device)
        compile_s[f"{name} (compiled)"] = time.perf_counter() - start
        steps[f"{name} (compiled)"] = step
    samples = interleaved_times(steps, settings.model_repeats, warmup=2, clock=clock, min_timing_s=0.0, device=device)
    results = {}
    for name, step in steps.items():
        results[name] = {
            "step_ms": 1e3 * _median(samples[name]),
            "spread": _spread(samples[name]),
            "peak_mb": peak_memory_bytes(step, device) / 2**20,
            **({"compile_s": compile_s[name]} if name in compile_s else {}),
        }
    return results


def _ratio(reference: dict | None, result: dict) -> float:
    """Throughput of ``result`` over ``reference``'s (> 1: faster); NaN when the reference was not run."""
    return reference["step_ms"] / result["step_ms"] if reference else float("nan")


def stock_vit(settings: Settings, image_size: int, patch_size: int, num_labels: int = 10) -> torch.nn.Module:
    """transformers' ViTForImageClassification (sdpa) at the settings' ViT shape, seeded weights."""
    from transformers import ViTConfig, ViTForImageClassification

    s = settings
    config = ViTConfig(
        hidden_size=s.vit_hidden, num_hidden_layers=s.vit_layers, num_attention_heads=s.vit_heads,
        intermediate_size=s.vit_intermediate, image_size=image_size, patch_size=patch_size, num_labels=num_labels,
        qkv_bias=True,
    )
    torch.manual_seed(0)
    return ViTForImageClassification._from_config(config, attn_implementation="sdpa")


def stock_bert(settings: Settings, length: int, num_labels: int = 2) -> torch.nn.Module:
    """transformers' BertForSequenceClassification (sdpa) at the settings' BERT-small-like shape, seeded weights."""
    from transformers import BertConfig, BertForSequenceClassification

    s = settings
    config = BertConfig(
        vocab_size=s.text_vocab, hidden_size=s.text_hidden, num_hidden_layers=s.text_layers,
        num_attention_heads=s.text_heads, intermediate_size=s.text_intermediate,
        max_position_embeddings=max(512, length), attention_probs_dropout_prob=s.text_attention_dropout,
        num_labels=num_labels,
    )
    torch.manual_seed(0)
    return BertForSequenceClassification._from_config(config, attn_implementation="sdpa")


def build_vit_models(
    image_size: int,
    patch_size: int,
    attention_types: Iterable[str],
    settings: Settings = Settings(),
    num_labels: int = 10,
) -> dict[str, torch.nn.Module]:
    """transformers' ViTForImageClassification (sdpa) and a PrimalDualViTForImageClassification per type, all with
    the same weights: the transformers model is saved and each PrimalDualViT loads that checkpoint."""
    reference = stock_vit(settings, image_size, patch_size, num_labels)
    models: dict[str, torch.nn.Module] = {VIT_REFERENCE: reference}
    with tempfile.TemporaryDirectory() as folder, _quiet_transformers():
        reference.save_pretrained(folder)
        for attention_type in attention_types:
            scales = {"head_scales": list(VIT_HEAD_SCALES[: settings.vit_heads])} if "sh" in attention_type else {}
            models[attention_type] = PrimalDualViTForImageClassification.from_pretrained(
                folder, attention_type=attention_type, **scales
            )
    return models


def _image_inputs(image_size: int, batch: int, num_labels: int = 10) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return {
        "pixel_values": torch.randn(batch, 3, image_size, image_size, generator=generator),
        "labels": torch.randint(0, num_labels, (batch,), generator=generator),
    }


def benchmark_vit_training(
    settings: Settings = Settings(),
    attention_types: Iterable[str] = ALL_TYPES,
    clock: str = "wall",
    compile_models: bool = False,
    log: Callable[[str], None] = print,
) -> list[dict]:
    """Training-step throughput and peak memory of PrimalDualViT per type against transformers' ViT (sdpa).

    One row per (size, model[, compiled]): ``images_per_s``, ``step_ms``, ``spread``, ``peak_mb``,
    ``vs_transformers`` and ``vs_softmax`` (throughput ratios; compiled rows against compiled references).
    """
    attention_types = list(attention_types)
    rows = []
    for size_name, image_size, patch_size, batch in settings.vit_sizes:
        models = build_vit_models(image_size, patch_size, attention_types, settings)
        compiled = [n for n in settings.compiled_vit_types if n in models] if (
            compile_models and size_name in settings.compiled_vit_sizes
        ) else []
        results = _time_models(models, _image_inputs(image_size, batch), settings, clock, compiled)
        for name, result in results.items():
            base_name = name.removesuffix(" (compiled)")
            suffix = name[len(base_name):]
            rows.append({
                "size": size_name,
                "image_size": image_size,
                "patch_size": patch_size,
                "tokens": 1 + (image_size // patch_size) ** 2,
                "batch": batch,
                "model": base_name,
                "compiled": bool(suffix),
                "images_per_s": batch / (result["step_ms"] / 1e3),
                **result,
                "vs_transformers": _ratio(results.get(VIT_REFERENCE + suffix), result),
                "vs_softmax": _ratio(results.get("softmax" + suffix), result),
            })
        log(
            f"vit {size_name}: "
            + ", ".join(f"{r['model']}{' (compiled)' if r['compiled'] else ''} {r['images_per_s']:.1f} img/s"
                        for r in rows if r["size"] == size_name)
        )
        del models
        gc.collect()
    return rows


def build_stock_models(reference: torch.nn.Module, attention_types: Iterable[str]) -> dict[str, torch.nn.Module]:
    """``reference`` (under sdpa) and a copy of it, same weights, under ``primaldual_<type>`` per type."""
    models = {STOCK_REFERENCE: reference}
    for attention_type in attention_types:
        model = copy.deepcopy(reference)
        model.set_attn_implementation(PREFIX + attention_type)
        models[PREFIX + attention_type] = model
    return models


def stock_cases(settings: Settings) -> list[tuple[str, str, int, int, Callable[[], torch.nn.Module], dict]]:
    """The stock section's comparisons: (model, size, tokens, batch, builder of the sdpa model, inputs)."""
    cases = []
    for size_name, image_size, patch_size, batch in settings.vit_sizes:
        cases.append((
            "ViTForImageClassification", size_name, 1 + (image_size // patch_size) ** 2, batch,
            lambda image_size=image_size, patch_size=patch_size: stock_vit(settings, image_size, patch_size),
            _image_inputs(image_size, batch),
        ))
    for size_name, length, batch in settings.text_sizes:
        generator = torch.Generator().manual_seed(0)
        inputs = {
            "input_ids": torch.randint(0, settings.text_vocab, (batch, length), generator=generator),
            "attention_mask": torch.ones(batch, length, dtype=torch.long),
            "labels": torch.randint(0, 2, (batch,), generator=generator),
        }
        cases.append(("BertForSequenceClassification", size_name, length, batch,
                      lambda length=length: stock_bert(settings, length), inputs))
    return cases


def benchmark_stock_models(
    settings: Settings = Settings(),
    attention_types: Iterable[str] = ALL_TYPES,
    clock: str = "wall",
    log: Callable[[str], None] = print,
) -> list[dict]:
    """Training step of transformers' own models under ``sdpa`` and under each ``primaldual_<type>`` (see the
    module doc). One row per (model, size, attention): ``attn_implementation``, ``tokens``, ``batch``,
    ``samples_per_s``, ``step_ms``, ``spread``, ``peak_mb``, ``vs_sdpa`` (throughput ratio against the same model
    under sdpa, timed round-robin with it)."""
    attention_types = list(attention_types)
    rows = []
    for model_name, size_name, tokens, batch, build, inputs in stock_cases(settings):
        models = build_stock_models(build(), attention_types)
        results = _time_models(models, inputs, settings, clock)
        new_rows = [{
            "model": model_name,
            "size": size_name,
            "tokens": tokens,
            "batch": batch,
            "attn_implementation": name,
            "samples_per_s": batch / (result["step_ms"] / 1e3),
            **result,
            "vs_sdpa": _ratio(results[STOCK_REFERENCE], result),
        } for name, result in results.items()]
        rows += new_rows
        log(f"stock {model_name} {size_name}: " + ", ".join(
            f"{r['attn_implementation']} {r['vs_sdpa']:.3f}x" for r in new_rows))
        del models
        gc.collect()
    return rows


def _series_classifier(
    settings: Settings, attention_type: str, length: int, channels: int, num_labels: int, **config: object
) -> PrimalDualTimeSeriesForClassification:
    """The time-series classifier at the settings' model size, seeded weights; ``config`` overrides fields."""
    torch.manual_seed(0)
    return PrimalDualTimeSeriesForClassification(PrimalDualTimeSeriesConfig(
        num_input_channels=channels, max_sequence_length=length, num_labels=num_labels,
        hidden_size=settings.series_hidden, num_attention_heads=settings.series_heads,
        num_hidden_layers=settings.series_layers, intermediate_size=settings.series_intermediate,
        attention_type=attention_type, **config,
    ))


def _series_inputs(settings: Settings, length: int, channels: int, num_labels: int) -> dict[str, torch.Tensor]:
    """A seeded random batch of ``settings.series_batch`` full-length series and their labels."""
    generator = torch.Generator().manual_seed(0)
    return {
        "past_values": torch.randn(settings.series_batch, length, channels, generator=generator),
        "labels": torch.randint(0, num_labels, (settings.series_batch,), generator=generator),
    }


def benchmark_timeseries_training(
    settings: Settings = Settings(),
    attention_types: Iterable[str] = ALL_TYPES,
    clock: str = "wall",
    log: Callable[[str], None] = print,
    no_dropout_types: Iterable[str] = ("softmax", "bn", "sh", "bn_sh"),
) -> list[dict]:
    """Training-step time and peak memory of the time-series classifier per type (see the module doc).

    The config's default attention dropout (0.1, as mvts-transformer) needs an (N, N) dropout mask (on CPU, the
    family's fused dropout path); the types in ``no_dropout_types`` are also measured with
    ``attention_probs_dropout_prob=0``, where nothing of size N x N exists. One row per variant: ``attention_type``,
    ``attention_dropout``, ``series_per_s``, ``step_ms``, ``spread``, ``peak_mb``, ``vs_softmax`` (against softmax
    with the same dropout).
    """
    s = settings
    attention_types = list(attention_types)
    variants = [(t, None) for t in attention_types] + [(t, 0.0) for t in no_dropout_types if t in attention_types]
    models = {}
    for attention_type, dropout in variants:
        model = _series_classifier(
            s, attention_type, s.series_length, s.series_channels, num_labels=2,
            head_scales=list(s.attention_head_scales[: s.series_heads]) if "sh" in attention_type else None,
            **({} if dropout is None else {"attention_probs_dropout_prob": dropout}),
        )
        name = attention_type if dropout is None else f"{attention_type} (attention dropout 0)"
        models[name] = (attention_type, model.config.attention_probs_dropout_prob, model)
    inputs = _series_inputs(s, s.series_length, s.series_channels, num_labels=2)
    results = _time_models({name: model for name, (_, _, model) in models.items()}, inputs, s, clock)
    rows = []
    for name, result in results.items():
        attention_type, dropout, _ = models[name]
        softmax = results.get("softmax" if name == attention_type else "softmax (attention dropout 0)")
        rows.append({
            "variant": name,
            "attention_type": attention_type,
            "attention_dropout": dropout,
            "length": s.series_length,
            "batch": s.series_batch,
            "series_per_s": s.series_batch / (result["step_ms"] / 1e3),
            **result,
            "vs_softmax": _ratio(softmax, result),
        })
    log("timeseries: " + ", ".join(f"{r['variant']} {r['step_ms']:.0f} ms" for r in rows))
    return rows


class _ForwardWithin(torch.nn.Module):
    """``model`` whose forward runs inside ``context()`` (the backward replays what the forward chose)."""

    def __init__(self, model: torch.nn.Module, context: Callable[[], contextlib.AbstractContextManager]):
        super().__init__()
        self.model, self.context = model, context

    def forward(self, **inputs):
        with self.context():
            return self.model(**inputs)


UEA_FUSED, UEA_BEFORE = "fused dropout", "PyTorch SDPA dropout (before)"


def benchmark_uea_training(
    settings: Settings = Settings(),
    attention_types: Iterable[str] = ALL_TYPES,
    clock: str = "wall",
    log: Callable[[str], None] = print,
) -> list[dict]:
    """Training-step time of the time-series classifier at each UEA grid set's shape (see the module doc), the
    fused CPU dropout against the path before it, one process per set, both with the same weights and inputs.

    One row per (set, type, path): ``dataset``, ``length``, ``channels``, ``attention_type``, ``path``,
    ``step_ms``, ``spread``, ``peak_mb``, ``speedup_vs_before`` (the fused path's throughput over the other's).
    """
    s = settings
    attention_types = [t for t in s.uea_attention_types if t in set(attention_types)]
    rows = []
    for dataset, length, channels, classes in s.uea_shapes:
        models = {}
        for attention_type in attention_types:
            model = _series_classifier(s, attention_type, length, channels, num_labels=classes)
            models[(attention_type, UEA_FUSED)] = model
            models[(attention_type, UEA_BEFORE)] = _ForwardWithin(
                copy.deepcopy(model), lambda: fast_paths(fused_cpu_dropout=False)
            )
        inputs = _series_inputs(s, length, channels, num_labels=classes)
        results = _time_models({f"{t} / {path}": m for (t, path), m in models.items()}, inputs, s, clock)
        for attention_type, path in models:
            result = results[f"{attention_type} / {path}"]
            rows.append({
                "dataset": dataset, "length": length, "channels": channels, "attention_type": attention_type,
                "path": path, **result,
                "speedup_vs_before": _ratio(results[f"{attention_type} / {UEA_BEFORE}"], result),
            })
        log(f"uea {dataset}: " + ", ".join(
            f"{r['attention_type']} {r['speedup_vs_before']:.2f}x" for r in rows[-len(models):] if r["path"] == UEA_FUSED))
    return rows


KERNEL_SH_SCALES = (1, 1, 1, 2, 2, 2, 4, 4)
KERNEL_REFERENCE = "softmax, dropout 0.1"


class _PlainTransformerClassifier(torch.nn.Module):
    """plain PyTorch's ``nn.TransformerEncoder`` at the time-series classifier's shape: input projection, the
    encoder (post-norm, ReLU, dropout everywhere), flattened output to a linear classifier."""

    def __init__(self, settings: Settings, length: int, channels: int, num_labels: int, dropout: float = 0.1):
        super().__init__()
        torch.manual_seed(0)
        s = settings
        self.project = torch.nn.Linear(channels, s.series_hidden)
        layer = torch.nn.TransformerEncoderLayer(s.series_hidden, s.series_heads, s.series_intermediate, dropout,
                                                 batch_first=True)
        self.encoder = torch.nn.TransformerEncoder(layer, s.series_layers, enable_nested_tensor=False)
        self.classifier = torch.nn.Linear(s.series_hidden * length, num_labels)

    def forward(self, past_values: torch.Tensor, labels: torch.Tensor):
        logits = self.classifier(self.encoder(self.project(past_values)).flatten(1))
        return type("Output", (), {"loss": torch.nn.functional.cross_entropy(logits, labels)})()


def _without_kernel(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``model`` whose attention dropout takes the fused-kernel path (the code before the kernel)."""
    return _ForwardWithin(copy.deepcopy(model), lambda: fast_paths(cpu_dropout_kernel=False))


def _in_bfloat16(model: torch.nn.Module) -> torch.nn.Module:
    return _ForwardWithin(model, lambda: torch.autocast("cpu", dtype=torch.bfloat16))


def benchmark_cpu_dropout_kernel(
    settings: Settings = Settings(), clock: str = "wall", log: Callable[[str], None] = print
) -> list[dict]:
    """Training steps with attention dropout through the compiled CPU kernel, against the path before it and the
    references of issue 24 (see the module doc), in one process.

    One row per variant: ``comparison`` (``series`` or ``bert``), ``variant``, ``step_ms``, ``spread``,
    ``peak_mb``, ``speedup`` (the comparison's reference step time over this one: > 1 is faster; the reference is
    softmax with dropout 0.1 on the kernel for ``series``, ``sdpa`` for ``bert``).
    """
    s = settings
    length, channels = s.series_length, s.series_channels

    def classifier(attention_type: str, dropout: float = 0.1, **config: object) -> torch.nn.Module:
        return _series_classifier(s, attention_type, length, channels, 2, attention_probs_dropout_prob=dropout,
                                  **config)

    softmax = classifier("softmax")
    sh = classifier("sh", head_scales=list(KERNEL_SH_SCALES[: s.series_heads]))
    series = {
        KERNEL_REFERENCE: softmax,
        "softmax, dropout 0.1, before (fused path)": _without_kernel(softmax),
        "softmax, dropout 0.1, activation dropouts by PyTorch": _ForwardWithin(
            copy.deepcopy(softmax), lambda: fast_paths(cpu_activation_dropout=False)),
        "softmax, dropout 0": classifier("softmax", 0.0),
        "bn, dropout 0.1": classifier("bn"),
        "sh 1,1,1,2,2,2,4,4, dropout 0.1": sh,
        "sh 1,1,1,2,2,2,4,4, dropout 0.1, before (fused path)": _without_kernel(sh),
        "nn.TransformerEncoder, dropout 0.1": _PlainTransformerClassifier(s, length, channels, 2),
        "softmax, dropout 0.1, bf16 autocast": _in_bfloat16(classifier("softmax")),
        "softmax, dropout 0.1, bf16 autocast, before (fused path)": _in_bfloat16(_without_kernel(softmax)),
        "softmax, dropout 0, bf16 autocast": _in_bfloat16(classifier("softmax", 0.0)),
    }
    rows = []
    for comparison, models, inputs, reference in (
        ("series", series, _series_inputs(s, length, channels, num_labels=2), KERNEL_REFERENCE),
        ("bert", None, None, STOCK_REFERENCE),
    ):
        if models is None:  # BERT-small with BERT's default attention dropout 0.1
            size_name, tokens, batch = s.text_sizes[0]
            bert = stock_bert(replace(s, text_attention_dropout=0.1), tokens)
            models = build_stock_models(bert, ["softmax"])
            models[PREFIX + "softmax, before (fused path)"] = _without_kernel(models[PREFIX + "softmax"])
            generator = torch.Generator().manual_seed(0)
            inputs = {
                "input_ids": torch.randint(0, s.text_vocab, (batch, tokens), generator=generator),
                "attention_mask": torch.ones(batch, tokens, dtype=torch.long),
                "labels": torch.randint(0, 2, (batch,), generator=generator),
            }
        results = _time_models(models, inputs, s, clock)
        new_rows = [{"comparison": comparison, "variant": name, **result,
                     "speedup": _ratio(results[reference], result)} for name, result in results.items()]
        log(f"cpu_dropout {comparison}: " + ", ".join(f"{r['variant']} {r['step_ms']:.0f} ms" for r in new_rows))
        rows += new_rows
        del models
        gc.collect()
    return rows


def _cpu_dropout_targets(rows: list[dict]) -> list[tuple[str, float, float, bool]]:
    """Issue 24's targets from :func:`benchmark_cpu_dropout_kernel`'s rows: (name, measured, required,
    higher_is_better)."""
    step = {(r["comparison"], r["variant"]): r["step_ms"] for r in rows}
    kernel = step.get(("series", KERNEL_REFERENCE), float("nan"))
    out = [
        ("series: step with dropout 0.1 / step with dropout 0 (time)",
         kernel / step.get(("series", "softmax, dropout 0"), float("nan")), 1.2, False),
        ("series: nn.TransformerEncoder step / softmax step, dropout 0.1",
         step.get(("series", "nn.TransformerEncoder, dropout 0.1"), float("nan")) / kernel, 5.0, True),
        ("series: softmax step / sh (1,1,1,2,2,2,4,4) step, dropout 0.1",
         kernel / step.get(("series", "sh 1,1,1,2,2,2,4,4, dropout 0.1"), float("nan")), 1.8, True),
        ("bert-small (the stock section's first text size), dropout 0.1: sdpa step / primaldual_softmax step",
         step.get(("bert", STOCK_REFERENCE), float("nan")) / step.get(("bert", PREFIX + "softmax"), float("nan")),
         1.15, True),
    ]
    return out


# ------------------------------------------------------------------------------------------------------------------
# torch.compile
# ------------------------------------------------------------------------------------------------------------------


def _padded_series_inputs(settings: Settings, length: int, channels: int, num_labels: int) -> dict[str, torch.Tensor]:
    """:func:`_series_inputs` with a padding mask: every other series padded over its last quarter."""
    inputs = _series_inputs(settings, length, channels, num_labels)
    mask = torch.ones(settings.series_batch, length, dtype=torch.long)
    mask[::2, length - max(1, length // 4):] = 0
    return {**inputs, "attention_mask": mask}


def benchmark_compiled_training(
    settings: Settings = Settings(),
    attention_types: Iterable[str] = ALL_TYPES,
    clock: str = "wall",
    log: Callable[[str], None] = print,
) -> list[dict]:
    """The time-series classifier's training step (forward, backward, AdamW), eager against ``torch.compile``
    (inductor) of the same model, per type, round-robin in one process, at the first UEA grid set's shape
    (JapaneseVowels: 29 steps, 12 channels, 9 classes; the README's main job) with the protocol's model, attention
    dropout 0.1 and a padding mask (every other series padded over its last quarter).

    One row per type: ``eager_ms``, ``compiled_ms``, their spreads, ``compile_s`` and ``speedup`` (eager time over
    compiled time: > 1, compiling pays).
    """
    s = settings
    _, length, channels, classes = s.uea_shapes[0]
    attention_types = list(attention_types)
    models = {t: _series_classifier(s, t, length, channels, num_labels=classes) for t in attention_types}
    inputs = _padded_series_inputs(s, length, channels, classes)
    torch._dynamo.reset()
    results = _time_models(models, inputs, s, clock, compiled_names=attention_types)
    rows = []
    for t in attention_types:
        eager, compiled = results[t], results[f"{t} (compiled)"]
        rows.append({"attention_type": t, "length": length, "channels": channels, "batch": s.series_batch,
                     "eager_ms": eager["step_ms"], "eager_spread": eager["spread"],
                     "compiled_ms": compiled["step_ms"], "compiled_spread": compiled["spread"],
                     "compile_s": compiled["compile_s"], "speedup": eager["step_ms"] / compiled["step_ms"]})
    log("compiled training: " + ", ".join(f"{r['attention_type']} {r['speedup']:.2f}x" for r in rows))
    return rows


def benchmark_onnxruntime(
    settings: Settings = Settings(),
    attention_types: Iterable[str] = ("softmax", "bn"),
    clock: str = "wall",
    log: Callable[[str], None] = print,
) -> list[dict]:
    """Inference of the time-series classifier (eval mode, a batch of ``settings.series_batch`` series with a
    padding mask) at the first UEA grid set's shape, eager PyTorch (``torch.inference_mode``) against ONNX Runtime
    (CPU, as many threads as torch) on its export (:func:`hf_primaldual.export.export_onnx`), round-robin in one
    process. One row per type: ``torch_ms``, ``onnxruntime_ms``, spreads, ``speedup`` (torch time over ONNX
    Runtime's) and ``max_abs_diff`` of the logits."""
    import tempfile

    import numpy as np
    import onnxruntime

    from hf_primaldual.export import export_onnx

    s = settings
    _, length, channels, classes = s.uea_shapes[0]
    inputs = _padded_series_inputs(s, length, channels, classes)
    inputs.pop("labels")
    arrays = {name: tensor.numpy() for name, tensor in inputs.items()}
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.inter_op_num_threads = 1
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        calls, diffs = {}, {}
        for t in attention_types:
            model = _series_classifier(s, t, length, channels, num_labels=classes).eval()
            path = export_onnx(model, inputs, Path(folder) / f"{t}.onnx")
            session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

            def eager(model=model):
                with torch.inference_mode():
                    return model(**inputs).logits

            calls[f"{t} torch"] = eager
            calls[f"{t} onnxruntime"] = lambda session=session: session.run(["logits"], arrays)
            diffs[t] = float(np.abs(session.run(["logits"], arrays)[0] - eager().numpy()).max())
        samples = interleaved_times(calls, s.model_repeats, warmup=2, clock=clock, min_timing_s=s.min_timing_s)
    for t in attention_types:
        torch_s, ort_s = samples[f"{t} torch"], samples[f"{t} onnxruntime"]
        rows.append({"attention_type": t, "length": length, "channels": channels, "batch": s.series_batch,
                     "torch_ms": 1e3 * _median(torch_s), "torch_spread": _spread(torch_s),
                     "onnxruntime_ms": 1e3 * _median(ort_s), "onnxruntime_spread": _spread(ort_s),
                     "speedup": _median(torch_s) / _median(ort_s), "max_abs_diff": diffs[t]})
    log("onnxruntime: " + ", ".join(f"{r['attention_type']} {r['speedup']:.2f}x" for r in rows))
    return rows



def _explain(function: Callable, *args, **kwargs) -> dict:
    torch._dynamo.reset()
    explanation = torch._dynamo.explain(function)(*args, **kwargs)
    reasons = []
    for reason in explanation.break_reasons:
        frame = reason.user_stack[-1] if reason.user_stack else None
        where = f"{Path(frame.filename).name}:{frame.lineno}" if frame else "?"
        reasons.append(f"{where}: {reason.reason}")
    return {
        "graphs": explanation.graph_count,
        "graph_breaks": explanation.graph_break_count,
        "reasons": sorted(set(reasons)),
    }


def check_graph_breaks(
    attention_types: Iterable[str] = ALL_TYPES, log: Callable[[str], None] = print, settings: Settings = Settings()
) -> list[dict]:
    """``torch._dynamo.explain`` of the attention function and of both models' training forward (with labels), per
    type, on small shapes (graph breaks do not depend on sizes): one row per (target, type) with ``graphs``,
    ``graph_breaks`` and the distinct ``reasons``. The time-series model is checked with and without a padding
    mask. On the settings' device and dtype: what dynamo traces depends on them (the CPU-only kernels)."""
    device = settings.torch_device
    rows = []
    for attention_type in attention_types:
        options = attention_options(attention_type, SERIES_HEAD_SCALES)
        q, k, v = _attention_inputs(2, 8, 40, 4, settings=settings)
        rows.append({"target": "primal_dual_attention (sequence)", "attention_type": attention_type,
                     **_explain(primal_dual_attention, q, k, v, options, dropout_p=options.dropout)})
        key_mask = (torch.arange(40)[None, :] < torch.tensor([[40], [29]])).to(device)
        rows.append({"target": "primal_dual_attention (sequence, padding mask)", "attention_type": attention_type,
                     **_explain(primal_dual_attention, q, k, v, options, key_mask, dropout_p=options.dropout)})
        q, k, v = _attention_inputs(2, 3, 17, 4, settings=settings)
        grid_options = attention_options(attention_type, VIT_HEAD_SCALES)
        rows.append({"target": "primal_dual_attention (grid + class token)", "attention_type": attention_type,
                     **_explain(primal_dual_attention, q, k, v, grid_options, layout=TokenLayout(1, (4, 4)))})

        torch.manual_seed(0)
        vit = PrimalDualViTForImageClassification(PrimalDualViTConfig(
            hidden_size=24, num_hidden_layers=2, num_attention_heads=3, intermediate_size=48, image_size=32,
            patch_size=8, num_labels=5, attention_type=attention_type,
            head_scales=list(VIT_HEAD_SCALES) if "sh" in attention_type else None,
        )).to(device).train()
        labels = torch.tensor([0, 1], device=device)
        with _precision(settings):
            rows.append({"target": "PrimalDualViTForImageClassification", "attention_type": attention_type,
                         **_explain(vit, pixel_values=torch.randn(2, 3, 32, 32, device=device), labels=labels)})

        series = PrimalDualTimeSeriesForClassification(PrimalDualTimeSeriesConfig(
            num_input_channels=3, max_sequence_length=24, hidden_size=16, num_hidden_layers=2,
            num_attention_heads=8, intermediate_size=32, num_labels=2, attention_type=attention_type,
            head_scales=list(SERIES_HEAD_SCALES) if "sh" in attention_type else None,
        )).to(device).train()
        values = torch.randn(2, 24, 3, device=device)
        mask = torch.ones(2, 24, dtype=torch.long, device=device)
        mask[1, 17:] = 0
        with _precision(settings):
            rows.append({"target": "PrimalDualTimeSeriesForClassification", "attention_type": attention_type,
                         **_explain(series, past_values=values, labels=labels)})
            rows.append({"target": "PrimalDualTimeSeriesForClassification (padding mask)",
                         "attention_type": attention_type,
                         **_explain(series, past_values=values, attention_mask=mask, labels=labels)})
    breaks = [r for r in rows if r["graph_breaks"]]
    log(f"compile: {len(rows)} explained, {len(breaks)} with graph breaks")
    return rows


# ------------------------------------------------------------------------------------------------------------------
# Targets, tables, plots
# ------------------------------------------------------------------------------------------------------------------


def targets(results: dict) -> list[dict]:
    """Issues 5 and 13's targets as measured ratios: ``name``, ``measured``, ``required``, ``met`` (None: not measured)."""
    out = []

    def add(name, measured, required, higher_is_better=True):
        if measured is not None and isinstance(measured, float) and math.isnan(measured):
            return  # the comparison was not part of this run
        met = None if measured is None or math.isnan(measured) else (
            measured >= required if higher_is_better else measured < required
        )
        out.append({"name": name, "measured": measured, "required": required, "met": met})

    vit = results.get("vit", [])
    for compiled in (False, True):
        for size in dict.fromkeys(r["size"] for r in vit):
            by_model = {r["model"]: r for r in vit if r["size"] == size and r["compiled"] == compiled}
            how = f"ViT {size} train{' (compiled)' if compiled else ''}"
            if "softmax" in by_model:
                add(f"{how}: softmax / transformers ViT (sdpa) throughput", by_model["softmax"]["vs_transformers"], 1.0)
            if "bn" in by_model:
                add(f"{how}: bn / softmax throughput", by_model["bn"]["vs_softmax"], 0.95)
            if size == "224px":
                for attention_type in ("sh", "bn_sh"):
                    if attention_type in by_model:
                        add(f"{how}: {attention_type} / softmax throughput (scales 1, 2, 4)",
                            by_model[attention_type]["vs_softmax"], 1.0)
    for row in results.get("attention", []):
        if row["run"] == "sweep" and row["attention_type"] == "sh" and row["length"] >= 1024:
            add(f"attention N={row['length']}: sh fwd+bwd speed-up over softmax (scales 1, 2, 4, 8)",
                row["speedup_vs_softmax"], 1.6)
            add(f"attention N={row['length']}: sh / softmax fwd+bwd peak memory (fused kernel)",
                row["memory_vs_softmax"], 1.0, higher_is_better=False)
        if row["run"] == "dropout" and row["attention_type"] == "sh" and row["length"] >= 1024:
            add(f"attention N={row['length']}, dropout {row['dropout']}: sh fwd+bwd speed-up over softmax",
                row["speedup_vs_softmax"], 1.6)
            add(f"attention N={row['length']}, dropout {row['dropout']}: sh / softmax fwd+bwd peak memory",
                row["memory_vs_softmax"], 1.0, higher_is_better=False)
        if row["run"] == "sweep" and row["attention_type"] == "linear" and row["length"] == 4096:
            add("attention N=4096: linear fwd+bwd speed-up over softmax", row["speedup_vs_softmax"], 5.0)
    for name, measured, required, higher_is_better in _cpu_dropout_targets(results.get("cpu_dropout", [])):
        add(name, measured, required, higher_is_better)
    for row in results.get("stock", []):
        how = f"stock {row['model']} {row['size']} train: {row['attn_implementation']} / sdpa throughput"
        if row["attn_implementation"] == PREFIX + "bn":
            add(how, row["vs_sdpa"], 0.95)
        if row["attn_implementation"] == PREFIX + "sh" and row["tokens"] >= 512:
            add(how, row["vs_sdpa"], 1.0)
    return out


def _fmt(value, digits=2) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        return f"{value:.{digits}f}"
    return str(value)


def _table(rows: list[dict], columns: list[tuple[str, str, int]]) -> str:
    header = "| " + " | ".join(title for title, _, _ in columns) + " |"
    rule = "|" + "|".join("---" for _ in columns) + "|"
    lines = [header, rule]
    for row in rows:
        lines.append("| " + " | ".join(_fmt(row.get(key), digits) for _, key, digits in columns) + " |")
    return "\n".join(lines)


def markdown_report(results: dict) -> str:
    """The run's tables as markdown (what ``results.md`` holds)."""
    meta = results["machine"]
    parts = [
        "# Benchmark results",
        "",
        f"Machine: {meta['cpu']} ({meta['cores']} cores), {meta['threads']} torch thread(s), device "
        f"{meta['device']} ({meta['gpu']}), {meta['dtype']}, torch "
        f"{meta['torch']}, transformers {meta['transformers']}, Python {meta['python']}. Clock: {meta['clock']}. "
        f"Load average before / after: {meta['load_before']} / {meta['load_after']}. "
        f"Command: `{meta['command']}`{' (smoke: numbers meaningless)' if meta['smoke'] else ''}.",
        "",
        "Times are medians over interleaved repetitions; `spread` is half the interquartile range over the median. "
        "Peak memory: torch tensor bytes allocated during one step above what was live before it.",
    ]
    if results.get("vit"):
        parts += ["", "## ViT training step (forward, backward, AdamW)", "",
                  _table(results["vit"], [
                      ("size", "size", 0), ("batch", "batch", 0), ("model", "model", 0), ("compiled", "compiled", 0),
                      ("images/s", "images_per_s", 1), ("step ms", "step_ms", 0), ("spread", "spread", 3),
                      ("peak MB", "peak_mb", 0), ("vs transformers", "vs_transformers", 3),
                      ("vs softmax", "vs_softmax", 3), ("compile s", "compile_s", 0),
                  ])]
    if results.get("stock"):
        parts += ["", "## Stock transformers models under sdpa and under primaldual_<type> (training step)", "",
                  "The same model (weights copied) with `set_attn_implementation`; `vs sdpa` is the throughput "
                  "ratio against the model under sdpa, timed round-robin with it. BERT without attention dropout.",
                  "",
                  _table(results["stock"], [
                      ("model", "model", 0), ("size", "size", 0), ("tokens", "tokens", 0), ("batch", "batch", 0),
                      ("attention", "attn_implementation", 0), ("samples/s", "samples_per_s", 2),
                      ("step ms", "step_ms", 0), ("spread", "spread", 3), ("peak MB", "peak_mb", 0),
                      ("vs sdpa", "vs_sdpa", 3),
                  ])]
    if results.get("attention"):
        parts += ["", "## Attention layer (`primal_dual_attention`)", "",
                  "Batch {b}, {h} heads, head dim {d}, SH scales {s}, sparse window 16. Runs: `sweep` every type "
                  "on its fast path (fused SDPA); `dropout` in training mode with attention dropout, against "
                  "PyTorch's SDPA with `dropout_p`, which on CPU runs its math kernel (the attention matrix "
                  "materialised); `compile` eager against "
                  "`torch.compile(fullgraph=True)`.".format(
                      b=results["settings"]["attention_batch"], h=results["settings"]["attention_heads"],
                      d=results["settings"]["attention_head_dim"],
                      s=tuple(results["settings"]["attention_head_scales"])),
                  "",
                  _table(results["attention"], [
                      ("run", "run", 0), ("N", "length", 0), ("type", "attention_type", 0),
                      ("compiled", "compiled", 0), ("dropout", "dropout", 1),
                      ("fwd ms", "forward_ms", 2), ("fwd+bwd ms", "forward_backward_ms", 2),
                      ("spread", "forward_backward_spread", 3), ("fwd peak MB", "forward_peak_mb", 1),
                      ("fwd+bwd peak MB", "forward_backward_peak_mb", 1), ("fwd GFLOP", "forward_gflop", 3),
                      ("speed-up vs softmax", "speedup_vs_softmax", 2), ("memory vs softmax", "memory_vs_softmax", 2),
                      ("speed-up vs torch SDPA", "speedup_vs_torch_sdpa", 2), ("compile s", "compile_s", 0),
                  ])]
    if results.get("timeseries"):
        parts += ["", "## Time-series classifier training step", "",
                  _table(results["timeseries"], [
                      ("type", "attention_type", 0), ("attention dropout", "attention_dropout", 1),
                      ("length", "length", 0), ("batch", "batch", 0),
                      ("series/s", "series_per_s", 2), ("step ms", "step_ms", 0), ("spread", "spread", 3),
                      ("peak MB", "peak_mb", 0), ("vs softmax", "vs_softmax", 3),
                  ])]
    if results.get("cpu_dropout"):
        parts += ["", "## Attention dropout in the compiled CPU kernel (issue 24)", "",
                  "`speedup`: the comparison's reference step time over the row's (series: softmax, dropout 0.1, "
                  "on the kernel; bert: sdpa).", "",
                  _table(results["cpu_dropout"], [
                      ("comparison", "comparison", 0), ("variant", "variant", 0), ("step ms", "step_ms", 0),
                      ("spread", "spread", 3), ("peak MB", "peak_mb", 0), ("speedup", "speedup", 3),
                  ])]
    if results.get("uea"):
        parts += ["", "## Time-series training step at the UEA grid's shapes: fused dropout vs the path before", "",
                  f"Batch {results['settings']['series_batch']}, attention dropout 0.1; `speed-up` is the fused "
                  "path's throughput over PyTorch's SDPA with `dropout_p` in the same process.", "",
                  _table(results["uea"], [
                      ("set", "dataset", 0), ("N", "length", 0), ("channels", "channels", 0),
                      ("type", "attention_type", 0), ("path", "path", 0), ("step ms", "step_ms", 1),
                      ("spread", "spread", 3), ("peak MB", "peak_mb", 0), ("speed-up", "speedup_vs_before", 2),
                  ])]
    if results.get("graph_breaks"):
        parts += ["", "## torch.compile graph breaks (`torch._dynamo.explain`)", "",
                  _table(results["graph_breaks"], [
                      ("target", "target", 0), ("type", "attention_type", 0), ("graphs", "graphs", 0),
                      ("graph breaks", "graph_breaks", 0),
                  ])]
        reasons = sorted({reason for row in results["graph_breaks"] for reason in row["reasons"]})
        parts += ["", "Reasons:" if reasons else "No graph breaks.", *[f"- {reason}" for reason in reasons]]
    if results.get("targets"):
        parts += ["", "## Targets", "",
                  _table(results["targets"], [
                      ("target", "name", 0), ("measured", "measured", 3), ("required", "required", 2),
                      ("met", "met", 0),
                  ])]
    if results.get("plots"):
        parts += ["", "## Plots", "", *[f"![{Path(p).stem}]({Path(p).name})" for p in results["plots"]]]
    return "\n".join(parts) + "\n"


def plot_attention(rows: list[dict], output_dir: Path) -> list[Path]:
    """attention_time.png and attention_memory.png: forward and forward + backward against N, one line per type."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in rows if r["run"] == "sweep"]
    if not rows:
        return []
    types = list(dict.fromkeys(r["attention_type"] for r in rows))
    paths = []
    for kind, keys, unit in [
        ("time", ("forward_ms", "forward_backward_ms"), "ms"),
        ("memory", ("forward_peak_mb", "forward_backward_peak_mb"), "MB"),
    ]:
        figure, axes = plt.subplots(1, 2, figsize=(12, 4.8))
        for axis, key, title in zip(axes, keys, ("forward", "forward + backward")):
            for attention_type in types:
                points = sorted((r["length"], r[key]) for r in rows if r["attention_type"] == attention_type)
                style = "--" if attention_type.startswith("linear") else "-"
                axis.plot(*zip(*points), style, marker="o", markersize=3, label=attention_type)
            axis.set_xscale("log", base=2)
            axis.set_yscale("log")
            axis.set_xlabel("sequence length N")
            axis.set_ylabel(f"{'time' if kind == 'time' else 'peak memory'} ({unit})")
            axis.set_title(f"attention {title}")
            axis.grid(True, which="both", alpha=0.3)
        axes[1].legend(fontsize=8)
        figure.tight_layout()
        path = output_dir / f"attention_{kind}.png"
        figure.savefig(path, dpi=110)
        plt.close(figure)
        paths.append(path)
    return paths


# ------------------------------------------------------------------------------------------------------------------
# The run
# ------------------------------------------------------------------------------------------------------------------

SECTIONS = ("vit", "stock", "attention", "dropout", "timeseries", "uea", "cpu_dropout", "compile",
            "compiled_training", "onnxruntime")


def _machine(settings: Settings, clock: str, smoke: bool, command: str, load_before: str) -> dict:
    import transformers

    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    device = settings.torch_device
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "device": settings.device,
        "dtype": settings.dtype,
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else "no GPU used",
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "clock": clock,
        "smoke": smoke,
        "command": command,
        "load_before": load_before,
    }


def _load() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


def run(
    output_dir: Path | str = DEFAULT_OUTPUT,
    smoke: bool = False,
    sections: Iterable[str] = SECTIONS,
    attention_types: Iterable[str] = ALL_TYPES,
    clock: str = "wall",
    threads: int | None = None,
    settings: Settings | None = None,
    command: str = "python scripts/benchmark.py",
    log: Callable[[str], None] = print,
) -> dict:
    """Run the chosen sections, write ``results.md``, ``results.json`` and the plots into ``output_dir``, and
    return everything (``machine``, ``settings``, one list of rows per section, ``targets``, ``plots``)."""
    settings = settings or (Settings.smoke() if smoke else Settings())
    check_device(settings, clock, threads)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    if threads:
        torch.set_num_threads(threads)
    sections = list(sections)
    attention_types = list(attention_types)
    results: dict = {"machine": _machine(settings, clock, smoke, command, _load()), "settings": asdict(settings)}
    if "vit" in sections:
        results["vit"] = benchmark_vit_training(settings, attention_types, clock, "compile" in sections, log)
    if "stock" in sections:
        results["stock"] = benchmark_stock_models(settings, attention_types, clock, log)
    if "attention" in sections:
        results["attention"] = benchmark_attention(settings, attention_types, clock, log=log)
        if "compile" in sections:
            results["attention"] += benchmark_attention(settings, attention_types, clock, compiled=True, log=log)
    if "dropout" in sections:
        results.setdefault("attention", [])
        results["attention"] += benchmark_attention(settings, attention_types, clock, log=log, dropout=True)
    if "timeseries" in sections:
        results["timeseries"] = benchmark_timeseries_training(settings, attention_types, clock, log)
    if "uea" in sections:
        results["uea"] = benchmark_uea_training(settings, attention_types, clock, log)
    if "cpu_dropout" in sections:
        results["cpu_dropout"] = benchmark_cpu_dropout_kernel(settings, clock, log)
    if "compile" in sections:
        results["graph_breaks"] = check_graph_breaks(attention_types, log, settings)
    if "compiled_training" in sections:
        results["compiled_training"] = benchmark_compiled_training(settings, attention_types, clock, log)
    if "onnxruntime" in sections:
        results["onnxruntime"] = benchmark_onnxruntime(
            settings, [t for t in attention_types if t in ("softmax", "bn")] or attention_types[:1], clock, log)
    results["machine"]["load_after"] = _load()
    results["targets"] = targets(results)
    results["plots"] = [str(p) for p in plot_attention(results["attention"], output_dir)] if results.get(
        "attention") else []
    (output_dir / "results.json").write_text(json.dumps(results, indent=1, default=str) + "\n")
    (output_dir / "results.md").write_text(markdown_report(results))
    return results


def print_targets(results: dict) -> None:
    print("\nTargets (ratios measured in this run):")
    for target in results["targets"]:
        status = {True: "met", False: "MISSED", None: "not measured"}[target["met"]]
        print(f"  {target['name']}: {_fmt(target['measured'], 3)} (target {target['required']}) -- {status}")


def main(argv: list[str] | None = None, prog: str = "python scripts/benchmark.py") -> int:
    """The command line (module doc); ``prog`` names the command in the help and in the report."""
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--output_dir", "--output-dir", default=str(DEFAULT_OUTPUT))
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, 1 repetition: seconds, for CI")
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=None,
                        help=f"default: all ({', '.join(SECTIONS)}); with --smoke all but compile")
    parser.add_argument("--attention_types", "--attention-types", nargs="+", choices=ALL_TYPES, default=list(ALL_TYPES))
    parser.add_argument("--device", choices=DEVICES, default="cpu")
    parser.add_argument("--dtype", choices=tuple(DTYPES), default="float32",
                        help="bfloat16: models under autocast, the attention layer on bfloat16 inputs")
    parser.add_argument("--clock", choices=tuple(CLOCKS), default="wall")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads, CPU runs (default: torch's)")
    parser.add_argument("--repeats", type=int, default=None, help="rounds per comparison (default 5)")
    parser.add_argument("--max_length", "--max-length", type=int, default=None, help="longest attention length")
    args = parser.parse_args(argv)
    if args.sections is None:
        args.sections = [s for s in SECTIONS if not (args.smoke and s in ("compile", "compiled_training"))]
    settings = (Settings.smoke if args.smoke else Settings)(device=args.device, dtype=args.dtype)
    if args.repeats:
        settings = replace(settings, model_repeats=args.repeats, attention_repeats=args.repeats)
    if args.max_length:
        lengths = tuple(n for n in settings.attention_lengths if n <= args.max_length)
        settings = replace(settings, attention_lengths=lengths)
    try:
        check_device(settings, args.clock, args.threads)
    except ValueError as error:
        parser.error(str(error))
    command = " ".join([prog, *(sys.argv[1:] if argv is None else argv)])
    results = run(args.output_dir, args.smoke, args.sections, args.attention_types, args.clock, args.threads,
                  settings, command)
    print(f"\nWrote {Path(args.output_dir) / 'results.md'}")
    print_targets(results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
