"""Softmax attention with attention dropout inside a compiled CPU kernel (``csrc/flash_attention_cpu.cpp``).

``((softmax(S) * keep) / (1 - p)) V`` with ``S = scale * Q K^T``, forward and backward, without the ``(N_q, N_k)``
matrix or its mask ever existing: the keep mask is drawn one query row at a time from Philox4x32-10 (the
counter-based generator of cuRAND and of PyTorch's CUDA dropout), keyed by the call's seed, with the counter
``(key block, query, batch item, head)``, and drawn again in the backward pass. A call's seed is one draw of
PyTorch's default CPU generator, so ``torch.manual_seed`` reproduces a run and the Trainer's saved RNG state resumes
the same stream. Each 16-bit lane of the generator's output decides one entry, so the drop probability is ``p``
rounded to a multiple of 2**-16 (:func:`dropout_probability`; 0.1 -> 0.100006), the same rounding as the NumPy
path of :mod:`.attention_kernels`.

The same generator drives :func:`dropout`, the elementwise dropout of the models' activations (PyTorch's CPU
dropout draws one ``bernoulli_`` variable per element, about ten times slower), with its own counters.

Small head dims take the kernel's row path (one query row per pass over the head's transposed K and V); from head
dim 12 its blocked path runs, 64 query rows at a time with the products by K and V done by BLAS GEMMs. Both draw
the same mask.

The extension is compiled on first use with ``torch.utils.cpp_extension.load`` (a C++ compiler and ninja are
needed; about a minute) and cached under the torch extensions directory (``TORCH_EXTENSIONS_DIR``), one build per
CPU capability that PyTorch reports (AVX2 and above: AVX2 + FMA code; otherwise portable code) and per build
input: the build is named by a digest of the source, the flags, the torch version and the installs it compiles
against (:func:`build_name`) and compiles a copy of the source kept in its folder, so every checkout of one version
in one environment shares one build, and two versions or two environments on one machine (two checkouts, an
upgrade beside a running job, a virtual environment beside the system Python) each keep theirs instead of
rebuilding over each other's at every start. Where it cannot be built (no compiler, or this module copied next to a
checkpoint's remote code without its ``csrc``), or where ``HF_PRIMALDUAL_CPU_DROPOUT_KERNEL=0`` is set,
:func:`kernel_available` is False and :mod:`.attention_kernels` keeps its previous dropout path;
:func:`unavailable_reason` says why.

The kernel is a ``torch.library`` custom op with its autograd registered, so ``torch.compile`` keeps it in the graph.
"""

from __future__ import annotations

import hashlib
import os
import platform
import sys
import sysconfig
import threading
import warnings
from pathlib import Path
from types import ModuleType

import torch
from filelock import FileLock

SOURCE = Path(__file__).resolve().parent / "csrc" / "flash_attention_cpu.cpp"
#: Set to 0 to never build or use the kernel (the previous dropout path runs instead).
ENVIRONMENT_SWITCH = "HF_PRIMALDUAL_CPU_DROPOUT_KERNEL"
#: The generator's resolution: each entry is decided by a 16-bit lane.
LANE_LEVELS = 1 << 16
DTYPES = (torch.float32, torch.bfloat16, torch.float64)

_lock = threading.Lock()
_extension: ModuleType | None = None
_unavailable: str | None = None
_tried = False


def _capability() -> tuple[str, list[str]]:
    """The build's name suffix and compiler flags for the CPU capability PyTorch dispatches to on this machine:
    ATen's vector types follow the ``CPU_CAPABILITY_*`` macro they are compiled under, so the extension is built
    for the capability the machine has (never ``-march=native``: the build is named by capability, so a cache
    shared between machines never runs AVX2 code on a machine without it)."""
    capability = torch.backends.cpu.get_cpu_capability()
    if platform.machine().lower() in ("x86_64", "amd64") and capability.startswith(("AVX2", "AVX512")):
        return "avx2", ["-mavx2", "-mfma", "-mf16c", "-DCPU_CAPABILITY=AVX2", "-DCPU_CAPABILITY_AVX2"]
    return "default", ["-DCPU_CAPABILITY=DEFAULT", "-DCPU_CAPABILITY_DEFAULT"]


def build_name() -> tuple[str, list[str]]:
    """The extension's name and its compiler flags. The name carries the CPU capability and a digest of what the
    compile command depends on (the source, the flags, the torch version, the torch and Python installs it compiles
    against): torch caches one build per name and rebuilds whenever the command differs from the last one under
    that name, so a name shared by two versions of the source, or by two environments (a virtual environment and
    the Python outside it), would rebuild at every start of either (and replace the library under the other's
    feet)."""
    suffix, flags = _capability()
    openmp = ["-fopenmp"] if sys.platform.startswith("linux") else []
    cflags = ["-O3", *flags, *openmp]
    digest = hashlib.sha256()
    for part in (SOURCE.read_bytes(), cflags, torch.__version__, _compile_environment()):
        digest.update(part if isinstance(part, bytes) else repr(part).encode())
        digest.update(b"\0")
    return f"hf_primaldual_flash_attention_cpu_{suffix}_{digest.hexdigest()[:16]}", cflags


def _compile_environment() -> list[str]:
    """The paths the compile command names besides the source: torch's headers and libraries and Python's headers
    (each interpreter and virtual environment has its own torch, so its own command)."""
    from torch.utils.cpp_extension import include_paths, library_paths

    return [*include_paths(), *library_paths(), sysconfig.get_paths()["include"]]


def build_directory(name: str) -> Path:
    """Where the build ``name`` lives: torch's extensions directory (``TORCH_EXTENSIONS_DIR``, else torch's cache
    folder for this Python), one folder per build."""
    from torch.utils.cpp_extension import get_default_build_root

    root = os.environ.get("TORCH_EXTENSIONS_DIR")
    if root is None:
        root = os.path.join(get_default_build_root(), f"py{sys.version_info.major}{sys.version_info.minor}_cpu")
    return Path(root) / name


def _staged_source(directory: Path) -> Path:
    """The kernel's source, copied into its build folder. Ninja rebuilds when the compile command changes, and the
    command names the source's path: built from the copy, every checkout of the same source shares one build."""
    staged = directory / SOURCE.name
    if not staged.is_file():
        partial = directory / f".{SOURCE.name}.{os.getpid()}.{threading.get_ident()}"
        partial.write_bytes(SOURCE.read_bytes())
        os.replace(partial, staged)  # atomic: a concurrent start sees no file or the whole one
    return staged


def _load() -> None:
    global _extension, _unavailable, _tried
    _tried = True
    if os.environ.get(ENVIRONMENT_SWITCH, "1").strip() == "0":
        _unavailable = f"{ENVIRONMENT_SWITCH}=0 is set"
        return
    if not SOURCE.is_file():
        _unavailable = f"the kernel's source {SOURCE} is not here (a copy of the module without its csrc folder)"
        return
    try:
        from torch.utils.cpp_extension import load

        name, cflags = build_name()
        directory = build_directory(name)
        directory.mkdir(parents=True, exist_ok=True)
        # One process builds at a time, under a lock the operating system drops when its holder dies. torch's own
        # lock is a file its builder waits on for as long as the file exists, and a build killed before it ended
        # (kill -9, out of memory, a lost session) leaves it behind: every later start would wait forever. Under
        # the OS lock no build is running, so a torch lock file found there is such a leftover.
        with FileLock(directory / "build.lock"):
            (directory / "lock").unlink(missing_ok=True)
            _extension = load(
                name=name,
                sources=[str(_staged_source(directory))],
                extra_cflags=cflags,
                extra_ldflags=[flag for flag in cflags if flag == "-fopenmp"],
                build_directory=str(directory),
                verbose=False,
            )
    except Exception as err:  # no compiler, no ninja, a failed build, an unwritable cache: the previous path runs
        _unavailable = f"building the CPU attention kernel failed ({type(err).__name__}: {str(err)[-500:]})"
        warnings.warn(
            f"{_unavailable}; attention dropout on CPU falls back to the fused-kernel path. Install a C++ compiler "
            f"and ninja to build it, or set {ENVIRONMENT_SWITCH}=0 to silence this.",
            RuntimeWarning,
            stacklevel=3,
        )


def kernel_available() -> bool:
    """Whether the compiled kernel can run here: built (on the first call, about a minute) or loaded from the
    cache. False where it cannot be built, or where ``HF_PRIMALDUAL_CPU_DROPOUT_KERNEL=0``."""
    if not _tried:
        with _lock:
            if not _tried:
                _load()
    return _extension is not None


def kernel_loaded() -> bool:
    """Whether the kernel is already loaded (never builds; for code being traced by torch.compile)."""
    return _extension is not None


def unavailable_reason() -> str | None:
    """Why :func:`kernel_available` is False (None where it is True or was not asked yet)."""
    return _unavailable


def _module() -> ModuleType:
    if not kernel_available():
        raise RuntimeError(f"The CPU attention kernel is not available: {_unavailable}.")
    assert _extension is not None
    return _extension


def dropout_probability(p: float) -> float:
    """The drop probability the kernel applies for ``p``: ``p`` rounded to a multiple of 2**-16."""
    return round(p * LANE_LEVELS) / LANE_LEVELS


def draw_seed() -> torch.Tensor:
    """A call's seed: one draw of PyTorch's default CPU generator, as a 0-d int64 tensor (a tensor from an
    out-of-place op, so that torch.compile keeps the draw in its graph: dynamo refuses ``random_``)."""
    return torch.randint(-(2**63), 2**63 - 1, (), dtype=torch.int64)


# ----------------------------------------------------------------------------------------------------------------
# The custom ops
# ----------------------------------------------------------------------------------------------------------------


@torch.library.custom_op("hf_primaldual::attention_dropout_cpu", mutates_args=())
def _attention_op(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    allowed: torch.Tensor | None,
    dropout_p: float,
    scale: float,
    seed: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    output, lse = _module().forward(query, key, value, allowed, dropout_p, scale, int(seed))
    return output, lse


@_attention_op.register_fake
def _(query, key, value, allowed, dropout_p, scale, seed):
    batch, heads, n_q, _ = query.shape
    lse_dtype = torch.float64 if query.dtype == torch.float64 else torch.float32
    return query.new_empty(batch, heads, n_q, value.shape[-1]), query.new_empty(batch, heads, n_q, dtype=lse_dtype)


@torch.library.custom_op("hf_primaldual::attention_dropout_cpu_backward", mutates_args=())
def _attention_backward_op(
    grad_output: torch.Tensor,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    output: torch.Tensor,
    lse: torch.Tensor,
    allowed: torch.Tensor | None,
    dropout_p: float,
    scale: float,
    seed: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    grad_query, grad_key, grad_value = _module().backward(
        grad_output.contiguous(), query, key, value, output, lse, allowed, dropout_p, scale, int(seed)
    )
    return grad_query, grad_key, grad_value


@_attention_backward_op.register_fake
def _(grad_output, query, key, value, output, lse, allowed, dropout_p, scale, seed):
    # contiguous, as the kernel writes them (whatever the inputs' strides)
    return query.new_empty(query.shape), key.new_empty(key.shape), value.new_empty(value.shape)


def _setup_context(ctx, inputs, output) -> None:
    query, key, value, allowed, dropout_p, scale, seed = inputs
    out, lse = output
    ctx.mark_non_differentiable(lse)
    ctx.save_for_backward(query, key, value, out, lse, allowed, seed)
    ctx.dropout_p, ctx.scale = dropout_p, scale


def _backward(ctx, grad_output, grad_lse):
    query, key, value, out, lse, allowed, seed = ctx.saved_tensors
    grads = _attention_backward_op(grad_output, query, key, value, out, lse, allowed, ctx.dropout_p, ctx.scale, seed)
    return *grads, None, None, None, None


_attention_op.register_autograd(_backward, setup_context=_setup_context)


# ----------------------------------------------------------------------------------------------------------------
# The entry points
# ----------------------------------------------------------------------------------------------------------------


def softmax_attention_dropout(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    allowed: torch.Tensor | None = None,
    dropout_p: float = 0.0,
    scale: float | None = None,
    seed: torch.Tensor | int | None = None,
) -> torch.Tensor:
    """``((softmax_j(scale q_i . k_j) * keep_ij) / (1 - p)) v_j`` in the compiled kernel, differentiable.

    Args:
        query: ``(B, H, N_q, D)``; key: ``(B, H, N_k, D)``; value: ``(B, H, N_k, D_v)``; CPU, one dtype among
            float32, bfloat16 (accumulated in float32) and float64; any strides.
        allowed: boolean, broadcastable to ``(B, H, N_q, N_k)``, ``True`` where a query may attend to a key; a
            query with no allowed key gets output 0 (and no gradient).
        dropout_p: the attention dropout probability, in [0, 1) (applied as :func:`dropout_probability`).
        scale: the score scale, ``1 / sqrt(D)`` by default.
        seed: the generator's seed; by default one draw of PyTorch's default CPU generator (:func:`draw_seed`).
            :func:`keep_mask` returns the mask a seed gives.

    Returns:
        ``(B, H, N_q, D_v)``, in the inputs' dtype.
    """
    if not 0.0 <= dropout_p < 1.0:
        raise ValueError(f"dropout_p must be in [0, 1), got {dropout_p}: a probability of dropping each weight.")
    if query.dtype not in DTYPES:
        raise TypeError(f"The CPU attention kernel takes float32, bfloat16 or float64 inputs, got {query.dtype}.")
    if allowed is not None and allowed.dtype != torch.bool:
        raise TypeError(f"allowed must be a boolean mask (True: attend), got {allowed.dtype}; pass `mask > 0` or so.")
    if seed is None:
        seed = draw_seed()
    elif not isinstance(seed, torch.Tensor):
        seed = torch.tensor(seed, dtype=torch.int64)
    scale = query.shape[-1] ** -0.5 if scale is None else float(scale)
    output, _ = _attention_op(query, key, value, allowed, float(dropout_p), scale, seed)
    return output


@torch.library.custom_op("hf_primaldual::dropout_cpu", mutates_args=())
def _dropout_op(input: torch.Tensor, dropout_p: float, seed: torch.Tensor) -> torch.Tensor:
    return _module().dropout(input, dropout_p, int(seed))


@_dropout_op.register_fake
def _(input, dropout_p, seed):
    return torch.empty_like(input, memory_format=torch.contiguous_format)


def _dropout_setup_context(ctx, inputs, output) -> None:
    _, dropout_p, seed = inputs
    ctx.save_for_backward(seed)
    ctx.dropout_p = dropout_p


def _dropout_backward(ctx, grad_output):
    (seed,) = ctx.saved_tensors
    # x -> x * keep / (1 - p) is linear: its backward is the same map, the mask drawn again from the seed
    return _dropout_op(grad_output, ctx.dropout_p, seed), None, None


_dropout_op.register_autograd(_dropout_backward, setup_context=_dropout_setup_context)


class _EagerDropout(torch.autograd.Function):
    """The same op outside torch.compile: a custom op's dispatch costs about 0.1 ms a call with autograd, more than
    the kernel itself takes for an activation of 30,000 elements (0.04 ms; PyTorch's dropout 0.4 ms)."""

    @staticmethod
    def forward(ctx, input: torch.Tensor, dropout_p: float, seed: int) -> torch.Tensor:
        ctx.dropout_p, ctx.seed = dropout_p, seed
        return _module().dropout(input, dropout_p, seed)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        return _module().dropout(grad_output, ctx.dropout_p, ctx.seed), None, None


def dropout(input: torch.Tensor, dropout_p: float, seed: torch.Tensor | int | None = None) -> torch.Tensor:
    """``input * keep / (1 - p)`` elementwise (training-mode dropout) with the kernel's generator, differentiable;
    nothing is stored for the backward but the seed.

    Element ``e`` of the contiguous input is element ``f = e - r * dropout_row()`` of row ``r = e // dropout_row()``,
    and is kept where lane ``f // calls`` of ``Philox((f % calls, r mod 2**32, r // 2**32, 0xFFFFFFFF), seed)`` is
    at least ``round(p * 2**16)``, ``calls`` = the row's length / 8, rounded up: the attention's layout of a query
    row (:func:`keep_mask`), with its own counters.

    Args:
        input: any shape; CPU, float32, bfloat16 or float64.
        dropout_p: the drop probability, in [0, 1) (applied as :func:`dropout_probability`).
        seed: the generator's seed; by default one draw of PyTorch's default CPU generator (:func:`draw_seed`).

    Returns:
        A contiguous tensor of ``input``'s shape and dtype.
    """
    if not 0.0 <= dropout_p < 1.0:
        raise ValueError(f"dropout_p must be in [0, 1), got {dropout_p}: a probability of dropping each element.")
    if input.dtype not in DTYPES:
        raise TypeError(f"The CPU dropout kernel takes float32, bfloat16 or float64 inputs, got {input.dtype}.")
    if seed is None:
        seed = draw_seed()
    if not torch.compiler.is_compiling():
        return _EagerDropout.apply(input, float(dropout_p), int(seed))
    return _dropout_op(input, float(dropout_p), seed if isinstance(seed, torch.Tensor) else torch.tensor(seed))


def dropout_row() -> int:
    """Elements per generator row of :func:`dropout`."""
    return int(_module().dropout_row())


def keep_mask(batch: int, heads: int, n_q: int, n_k: int, dropout_p: float, seed: torch.Tensor | int) -> torch.Tensor:
    """The keep mask the kernel draws for a ``(batch, heads, n_q, n_k)`` call with this seed and ``dropout_p``:
    boolean ``(batch, heads, n_q, n_k)``, ``True`` where the weight is kept (for tests and inspection: it is the
    matrix the kernel never forms)."""
    return _module().keep_mask(batch, heads, n_q, n_k, float(dropout_p), int(seed))


def philox4x32_10(counter: tuple[int, int, int, int], key: tuple[int, int]) -> tuple[int, int, int, int]:
    """The kernel's generator on one counter and key (for its known-answer test)."""
    return tuple(int(x) & 0xFFFFFFFF for x in _module().philox(list(counter), list(key)))


__all__ = [
    "dropout",
    "dropout_probability",
    "dropout_row",
    "draw_seed",
    "kernel_available",
    "kernel_loaded",
    "keep_mask",
    "softmax_attention_dropout",
    "unavailable_reason",
]
