"""Choosing the torch device the learned detector runs on, and what runs its image encoder on the CPU."""

from __future__ import annotations

import re
from typing import Literal

from moc_envs.errors import DeviceUnavailableError

__all__ = ["RUNTIMES", "DEFAULT_RUNTIME", "Runtime", "check_runtime", "resolve_device"]

Runtime = Literal["torchscript", "onnxruntime", "eager"]
RUNTIMES: tuple[str, ...] = ("torchscript", "onnxruntime", "eager")
"""What runs the learned detector's image encoder on the CPU: a frozen TorchScript graph, ONNX
Runtime (the default) or eager PyTorch (:mod:`moc_envs.model.runtime`). On CUDA the encoder
always runs in torch."""

DEFAULT_RUNTIME: Runtime = "onnxruntime"
"""The CPU runtime every env and detector uses unless told otherwise: ``moc-envs bench backends``
measured ONNX Runtime 1.5-2.6x faster than the frozen TorchScript graph at 1 to 32 frames, and
rollouts of all 11 games on it give the same labels (``benchmarks/results/backends.md``)."""


def check_runtime(runtime: object) -> Runtime:
    """``runtime`` as one of :data:`RUNTIMES`, else TypeError / ValueError naming the choices."""
    choices = ", ".join(repr(r) for r in RUNTIMES)
    if not isinstance(runtime, str):
        raise TypeError(f"runtime must be one of {choices}, got {type(runtime).__name__} {runtime!r}")
    if runtime not in RUNTIMES:
        raise ValueError(f"Unknown runtime {runtime!r}; expected one of {choices}")
    return runtime  # type: ignore[return-value]

_CUDA = re.compile(r"^cuda(:\d+)?$")


def resolve_device(device: str) -> str:
    """Turn ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` into a usable torch device string.

    ``"auto"`` picks CUDA when torch sees a GPU and the CPU otherwise. Asking for
    CUDA on a machine without it raises :class:`DeviceUnavailableError`; any other
    string raises ``ValueError``.
    """
    if not isinstance(device, str) or not (device in ("auto", "cpu") or _CUDA.match(device)):
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}")
    if device == "cpu":
        return "cpu"
    import torch  # torch stays off `import moc_envs`

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if not torch.cuda.is_available():
        raise DeviceUnavailableError(
            f"device={device!r} was requested but torch sees no CUDA GPU here "
            f"(torch {torch.__version__}, CUDA build: {torch.version.cuda or 'none'}); "
            "use device='cpu' or device='auto'"
        )
    index = int(device.split(":")[1]) if ":" in device else 0
    count = torch.cuda.device_count()
    if index >= count:
        raise DeviceUnavailableError(
            f"device={device!r} was requested but only {count} CUDA device(s) exist"
        )
    return device
