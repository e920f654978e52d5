"""Running the image encoder fast on a CPU: a frozen TorchScript graph of its forward pass.

At the batch sizes an env runs (1 to 32 frames) the lean image encoder's convolutions are so
small that eager PyTorch's per-call overhead is a large share of their time; tracing the
forward pass once and freezing it (weights folded in as constants, conv + ReLU fused by the
oneDNN passes) removes most of it. Freezing is skipped on CUDA (kernel time dominates there)
and falls back to eager mode if tracing fails, so it never stops a detector from loading.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch
from torch import nn

__all__ = ["RawEncoder", "frozen_encoder"]

RawEncoder = Callable[[torch.Tensor], torch.Tensor]
"""(B, 3, S, S) images in [0, 1] -> the encoder's raw head channels (B, 11, G, G)."""


class _Raw(nn.Module):
    """An image encoder's ``raw`` method as a module's forward (what tracing needs)."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder.raw(x)


def frozen_encoder(encoder: nn.Module, example: torch.Tensor) -> RawEncoder:
    """The frozen TorchScript graph of ``encoder.raw`` traced on ``example``, or ``encoder.raw``.

    ``encoder`` must be in eval mode and stay unchanged afterwards (its weights are copied into
    the graph). Returns ``encoder.raw`` itself on CUDA, or when tracing or freezing fails (with a
    warning saying why); the graph's outputs agree with eager mode to float rounding.
    """
    if example.device.type != "cpu":
        return encoder.raw
    try:
        with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # TorchScript's deprecation notices
            traced = torch.jit.trace(_Raw(encoder).eval(), example, check_trace=False)
            frozen = torch.jit.freeze(traced)
            frozen(example)  # compiles the graph once here rather than on the first env step
    except Exception as err:  # noqa: BLE001 - any failure keeps the eager path, which works
        warnings.warn(
            f"could not freeze the image encoder ({type(err).__name__}: {err}); running it eagerly",
            RuntimeWarning,
            stacklevel=2,
        )
        return encoder.raw
    return frozen
