"""Choosing the torch device the learned detector runs on."""

from __future__ import annotations

import re

from moc_envs.errors import DeviceUnavailableError

__all__ = ["resolve_device"]

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
