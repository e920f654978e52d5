"""Running the image encoder fast on a CPU: a frozen TorchScript graph of its forward pass.

At the batch sizes an env runs (1 to 32 frames) the lean image encoder's convolutions are so
small that eager PyTorch's per-call overhead is a large share of their time; tracing the
forward pass once and freezing it (weights folded in as constants, conv + ReLU fused by the
oneDNN passes) removes most of it. Freezing is skipped on CUDA (kernel time dominates there)
and falls back to eager mode if tracing fails, so it never stops a detector from loading.

TorchScript never frees what a trace registers (its global compilation unit keeps every
traced graph: about 1.7 MB per trace of the lean encoder, pytorch/pytorch#35600), so tracing
on every detector load made a loop of ``gym.make`` / ``close`` grow without bound. The frozen
graph is stateless at inference, so it is traced once per distinct encoder (class, layers and
weight bytes) and input shape, and shared by every detector that loads the same weights; after
:data:`FROZEN_CACHE_SIZE` distinct encoders, further ones run eagerly, which keeps memory
bounded in a process that loads many checkpoints.

ONNX Runtime (``runtime="onnxruntime"``, the default) runs the same forward pass exported to
ONNX on its CPU provider, which ``moc-envs bench backends`` measured 2.3-3.1x faster than the
frozen graph at one frame and 1.5-2.2x at 8 and 32 on a 2-core VM
(``benchmarks/results/backends.md``). Its outputs agree with torch's to float rounding, not bit
for bit; the same benchmark's rollouts of every shipped game on both runtimes give the same
labels (its "Runtimes: rollout parity" section). The export
is cached like the frozen graphs (the bytes, by encoder and input layout); each detector opens
its own session with its own thread count.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import os
import threading
import warnings
from collections.abc import Callable, Hashable
from typing import Any

import torch
from torch import nn

__all__ = [
    "FROZEN_CACHE_SIZE",
    "RawEncoder",
    "OnnxRuntimeEncoder",
    "export_onnx",
    "frozen_encoder",
    "frozen_cache_size",
    "onnxruntime_encoder",
]

RawEncoder = Callable[[torch.Tensor], torch.Tensor]
"""(B, 3, S, S) images in [0, 1] -> the encoder's raw head channels (B, 11, G, G)."""

FROZEN_CACHE_SIZE = 64
"""Distinct encoders whose frozen graphs a process keeps; more run eagerly (see the module doc)."""

_frozen: dict[Hashable, RawEncoder] = {}
_onnx: dict[Hashable, bytes] = {}
_lock = threading.Lock()
_full_warned = False


def _reset_lock_in_child() -> None:
    # A fork while another thread held the lock would leave the child's copy locked for good.
    global _lock
    _lock = threading.Lock()


os.register_at_fork(after_in_child=_reset_lock_in_child)


class _Raw(nn.Module):
    """An image encoder's ``raw`` method as a module's forward (what tracing needs)."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder.raw(x)


def _cache_key(encoder: nn.Module, example: torch.Tensor) -> Hashable:
    """What the frozen graph depends on: the code, the layers, every weight byte and the input.

    The layers' hyperparameters (strides, groups, eps) are in ``repr``; the weights are hashed
    with their dtype, shape and strides (the graph keeps their memory format).
    """
    digest = hashlib.sha256()
    for name, tensor in encoder.state_dict().items():
        t = tensor.detach()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|{t.stride()}|{t.device}\n".encode())
        digest.update(t.cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
    raw = getattr(encoder, "raw", None)
    return (
        f"{type(encoder).__module__}.{type(encoder).__qualname__}",
        getattr(raw, "__qualname__", repr(raw)),
        repr(encoder),
        digest.hexdigest(),
        tuple(example.shape),
        example.dtype,
        example.stride(),
        str(example.device),
    )


def _freeze(encoder: nn.Module, example: torch.Tensor) -> RawEncoder:
    """Trace ``encoder.raw`` on ``example``, freeze it and run it once (raises on failure)."""
    with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TorchScript's deprecation notices
        traced = torch.jit.trace(_Raw(encoder).eval(), example, check_trace=False)
        frozen = torch.jit.freeze(traced)
        frozen(example)  # compiles the graph once here rather than on the first env step
    return frozen


def frozen_encoder(encoder: nn.Module, example: torch.Tensor) -> RawEncoder:
    """The frozen TorchScript graph of ``encoder.raw`` traced on ``example``, or ``encoder.raw``.

    ``encoder`` must be in eval mode and stay unchanged afterwards (its weights are copied into
    the graph). An encoder equal to one frozen before (same class, layers and weights; same
    input shape, dtype and layout) gets that graph back: frozen graphs hold no state, and one
    may run in several threads at once. Returns ``encoder.raw`` itself on CUDA, once
    :data:`FROZEN_CACHE_SIZE` other encoders are frozen, or when tracing or freezing fails (with
    a warning saying why); the graph's outputs agree with eager mode to float rounding.
    """
    global _full_warned
    if example.device.type != "cpu":
        return encoder.raw
    try:
        key = _cache_key(encoder, example)
        with _lock:
            cached = _frozen.get(key)
            if cached is not None:
                return cached
            if len(_frozen) >= FROZEN_CACHE_SIZE:
                if not _full_warned:
                    _full_warned = True
                    warnings.warn(
                        f"{FROZEN_CACHE_SIZE} different image encoders are frozen in this process "
                        "(TorchScript never frees a traced graph); further ones run eagerly",
                        RuntimeWarning,
                        stacklevel=2,
                    )
                return encoder.raw
            frozen = _freeze(encoder, example)
            _frozen[key] = frozen
            return frozen
    except Exception as err:  # noqa: BLE001 - any failure keeps the eager path, which works
        warnings.warn(
            f"could not freeze the image encoder ({type(err).__name__}: {err}); running it eagerly",
            RuntimeWarning,
            stacklevel=2,
        )
        return encoder.raw


def frozen_cache_size() -> int:
    """How many distinct encoders have a frozen graph in this process (see :func:`frozen_encoder`)."""
    return len(_frozen)


class _RawNHWC(nn.Module):
    """``encoder.raw`` of channels-last memory read as (B, H, W, C): what NumPy hands over."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder.raw(x.permute(0, 3, 1, 2))


def export_onnx(module: nn.Module, example: torch.Tensor) -> bytes:
    """``module`` (in eval mode) exported to ONNX on ``example``, its first axis (the batch)
    left free; input ``"x"``, output ``"y"``. Needs the ``onnx`` package."""
    buffer = io.BytesIO()
    with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's notices
        torch.onnx.export(
            module, (example,), buffer, input_names=["x"], output_names=["y"],
            dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}}, opset_version=17, dynamo=False,
        )  # fmt: skip
    return buffer.getvalue()


class OnnxRuntimeEncoder:
    """An exported image encoder in an ONNX Runtime CPU session with ``threads`` threads.

    Called with channels-last (B, C, H, W) float32 tensors, as the detector builds them, it
    returns the raw head channels as a tensor; the input's memory is handed over without a copy.
    The session opens at the first call, in the process that makes it: with more than one
    thread a session starts a thread pool, and loading a detector must start no threads (a
    process that forks after loading, as Gymnasium's async vector env does, would hand its
    children a session whose pool threads are gone); a forked child opens its own.
    """

    def __init__(self, model: bytes, threads: int = 1) -> None:
        self._model = model
        self._threads = int(threads)
        self._session: Any = None
        self._pid = -1

    def _open(self) -> Any:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = self._threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3  # errors only
        return ort.InferenceSession(self._model, options, providers=["CPUExecutionProvider"])

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """The raw head channels (B, 11, G, G) of channels-last images ``x`` (B, C, H, W)."""
        if self._pid != os.getpid():
            self._session, self._pid = self._open(), os.getpid()
        images = x.permute(0, 2, 3, 1).contiguous().numpy()  # a view for channels-last input
        return torch.from_numpy(self._session.run(None, {"x": images})[0])


def onnxruntime_encoder(encoder: nn.Module, example: torch.Tensor, threads: int = 1) -> RawEncoder:
    """``encoder.raw`` exported to ONNX on ``example`` (channels-last, on the CPU) and run by ONNX
    Runtime with ``threads`` threads.

    Raises :class:`~moc_envs.errors.MissingDependencyError` naming the ``onnx`` extra when
    onnxruntime or onnx is not installed; a failing export raises too (asked for by name, ONNX
    Runtime does not fall back silently). Outputs agree with eager mode to float rounding
    (``moc-envs bench backends`` reports the largest difference).
    """
    from moc_envs.errors import MissingDependencyError

    missing = [name for name in ("onnxruntime", "onnx") if importlib.util.find_spec(name) is None]
    if missing:
        raise MissingDependencyError(
            f"runtime='onnxruntime' (the default) needs {' and '.join(missing)}, which moc-envs "
            f"depends on: pip install {' '.join(missing)} (or pass runtime='torchscript')"
        )
    nhwc = example.permute(0, 2, 3, 1).contiguous()
    key = _cache_key(encoder, nhwc)
    with _lock:
        model = _onnx.get(key)
        if model is None:
            model = export_onnx(_RawNHWC(encoder).eval(), nhwc)
            if len(_onnx) < FROZEN_CACHE_SIZE:
                _onnx[key] = model
    return OnnxRuntimeEncoder(model, threads)
