"""Inference backends of ``moc-envs bench backends``: the shipped detector's image and glimpse
encoders on torch eager, a frozen TorchScript graph, ``torch.compile``, ONNX Runtime and
OpenVINO, timed in turns, each checked against eager torch's outputs."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from benchmarks.common import learned_weights

__all__ = ["BACKENDS", "inference_rows"]

BACKENDS = ("eager", "torchscript", "torch.compile", "onnxruntime", "openvino", "LeanGlimpseKernel")
"""The candidates; what ships on the CPU is the frozen TorchScript graph for the image encoder
and, for the lean glimpse encoder, ``LeanGlimpseKernel`` (two torch matrix products)."""

Call = Callable[[np.ndarray], np.ndarray]


def _why(err: BaseException) -> str:
    return f"{type(err).__name__}: {str(err).strip().splitlines()[0][:160] if str(err).strip() else ''}"


def _torch_call(module: Any) -> Call:
    import torch

    def call(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return module(torch.from_numpy(x)).float().numpy()

    return call


def _builders(module: Any, example: np.ndarray, threads: int, dynamic: bool) -> dict[str, Callable[[], Call]]:
    """How each backend builds a callable NumPy (B, ...) -> NumPy of ``module`` (NHWC input)."""
    import torch

    from moc_envs.model.runtime import export_onnx

    x = torch.from_numpy(example)

    def frozen() -> Call:
        import warnings

        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            graph = torch.jit.freeze(torch.jit.trace(module, x, check_trace=False))
        return _torch_call(graph)

    def compiled() -> Call:
        return _torch_call(torch.compile(module, dynamic=dynamic))

    def onnxruntime() -> Call:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        options.log_severity_level = 3
        session = ort.InferenceSession(export_onnx(module, x), options, providers=["CPUExecutionProvider"])
        return lambda a: session.run(None, {"x": a})[0]

    def openvino() -> Call:
        import openvino as ov

        model = ov.Core().compile_model(
            ov.convert_model(module, example_input=x), "CPU",
            {"INFERENCE_NUM_THREADS": threads, "NUM_STREAMS": 1, "PERFORMANCE_HINT": "LATENCY",
             "INFERENCE_PRECISION_HINT": "f32"},
        )  # fmt: skip
        request = model.create_infer_request()

        def call(a: np.ndarray) -> np.ndarray:
            request.infer([a])
            return request.get_output_tensor(0).data.copy()

        return call

    return {"eager": lambda: _torch_call(module), "torchscript": frozen, "torch.compile": compiled,
            "onnxruntime": onnxruntime, "openvino": openvino}  # fmt: skip


def _modules(detector: Any) -> tuple[Any, Any]:
    """The image encoder's raw head and the glimpse encoder's z_what mean as modules of NHWC input."""
    import torch
    from torch import nn

    class RawNHWC(nn.Module):
        def __init__(self, encoder: nn.Module) -> None:
            super().__init__()
            self.encoder = encoder

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.encoder.raw(x.permute(0, 3, 1, 2))

    class GlimpseMean(nn.Module):
        def __init__(self, encoder: nn.Module) -> None:
            super().__init__()
            self.encoder = encoder

        def forward(self, g: torch.Tensor) -> torch.Tensor:
            return self.encoder(g.permute(0, 3, 1, 2))[0]

    return RawNHWC(detector.encoder.image_encoder).eval(), GlimpseMean(detector.encoder.glimpse_encoder).eval()


def _time_in_turns(calls: dict[str, Call], inputs: np.ndarray, repeats: int) -> dict[str, float]:
    """Median seconds per call of each callable, timed one call each per round (order rotating)."""
    names = list(calls)
    for name in names:
        for _ in range(3):
            calls[name](inputs)
    samples: dict[str, list[float]] = {n: [] for n in names}
    for r in range(repeats):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            t0 = time.perf_counter()
            calls[name](inputs)
            samples[name].append(time.perf_counter() - t0)
    return {n: statistics.median(v) for n, v in samples.items()}


def inference_rows(
    game: str, batches: Sequence[int], repeats: int, threads: int, seed: int = 0, backends: Sequence[str] = BACKENDS
) -> list[dict[str, Any]]:
    """One row per (part, batch, backend) for ``game``'s shipped detector (see the module doc);
    ``backends``: which of :data:`BACKENDS` to run (the shipped one always runs)."""
    from benchmarks.speed import _raw_frames
    from moc_envs.games import get_game
    from moc_envs.model.decode_np import crop_glimpses_np
    from moc_envs.perception.space_detector import SpaceDetector

    folder = learned_weights(game)
    if folder is None:
        return []
    det = SpaceDetector.from_pretrained(folder, get_game(game), device="cpu", allow_unclassified=True, threads=threads)
    image_module, glimpse_module = _modules(det)
    frames = _raw_frames(game, max(batches), seed)
    rows: list[dict[str, Any]] = []
    for part, module in (("image encoder", image_module), ("glimpse encoder", glimpse_module)):
        built: dict[str, Call] = {}
        notes: dict[str, str] = {}
        inputs: dict[int, np.ndarray] = {}
        for batch in batches:
            b_idx, _, where, _, images = det._cells_cpu(frames[:batch])
            inputs[batch] = images if part == "image encoder" else crop_glimpses_np(images, b_idx, where, det.config.glimpse)
        example = inputs[max(batches)]
        for name, build in _builders(module, example, threads, dynamic=part != "image encoder").items():
            if name not in backends and name != "torchscript":
                continue
            try:
                t0 = time.perf_counter()
                call = build()
                call(example)  # compiles where the backend compiles on first use
                built[name] = call
                notes[name] = f"built in {time.perf_counter() - t0:.1f} s"
            except Exception as err:  # noqa: BLE001 - a backend that fails here is a row saying why
                notes[name] = f"not available: {_why(err)}"
        shipped = "torchscript"
        if part == "glimpse encoder" and det._glimpse_kernel is not None:
            kernel = det._glimpse_kernel
            built["LeanGlimpseKernel"] = lambda g, k=kernel: k(g)
            shipped = "LeanGlimpseKernel"
        for batch in batches:
            x = inputs[batch]
            reference = built["eager"](x) if "eager" in built else None
            times = _time_in_turns(built, x, repeats) if len(x) else {}
            for name in [b for b in BACKENDS if b in built or b in notes]:
                ms = 1e3 * times[name] if name in times else None
                reference_s = times.get(shipped)
                diff = None
                if name in built and reference is not None and len(x):
                    diff = float(np.abs(built[name](x) - reference).max())
                rows.append({
                    "game": game, "part": part, "batch": batch, "inputs": len(x), "backend": name,
                    "shipped": name == shipped, "ms_per_call": ms, "ms_per_frame": None if ms is None else ms / batch,
                    "speedup_vs_shipped": None if ms is None or reference_s is None else 1e3 * reference_s / ms,
                    "max_abs_diff": diff, "note": notes.get(name, "") if len(x) else "no glimpse in these frames",
                })  # fmt: skip
    return rows


