"""Speed: env steps per second of raw ALE, OCAtari (RAM / vision) and MOC envs, with ratios.

``moc-envs bench speed [--steps 3000] [--game Pong] [--quick]``

Rows, all on one game and one machine in one run, random actions, reset on
episode end, timed after a short warm-up:

- raw ``ALE/<Game>-v5`` (frameskip 4, the v5 defaults), the reference (ratio 1);
- OCAtari RAM mode and vision mode (``OCAtari(..., mode=..., hud=False)``);
- ``MOC/<Game>-v0`` with ``detector="ram"`` (RAM oracle) and with the learned
  detector (``"space"``), as one env and as ``make_vec`` vector envs of 8 and 32
  with one batched detect call per step; learned rows on CPU, and on CUDA when
  torch sees a GPU. Learned rows read "not available: no weights for <Game>"
  when no weights are shipped.

Vector rows count env steps (N per vector step). ``--emulators python ale-vector`` adds
learned ``make_vec`` rows on ale-py's C++ vector env (:mod:`moc_envs.envs.emulators`),
``--runtimes onnxruntime torchscript`` learned rows with each CPU runtime of the image encoder
(:mod:`moc_envs.model.runtime`; rows without one name the default, ONNX Runtime), and ``--raw-vector`` rows of N raw ALE envs on each emulator
(frames read every step), beside which every learned vector row also gets its ratio. ``--gpu``
is the prepared CUDA run (``docs/benchmarks.md``): detect() at batch 1/8/64/256, ``make_vec``
8/64/256 on both emulators and raw ALE at the same sizes, the shipped detector only, no
OCAtari. Writes ``speed.json``, ``speed.md`` and ``speed.png`` (bar chart of steps/s).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from benchmarks.common import (
    RESULTS_DIR,
    Timer,
    add_common_args,
    bar_plot,
    baseline_weights,
    image_encoder_of,
    learned_weights,
    markdown_table,
    not_available,
    torch_threads,
    write_results,
)
from moc_envs.device import DEFAULT_RUNTIME

__all__ = ["SpeedRow", "DetectRow", "time_single", "time_vector", "time_detect", "run", "main"]

ANCHORS = (
    ("raw ALE/Pong-v5, measured here before (anchors.md)", "2,300-3,900 steps/s"),
    ("OCAtari RAM mode, Pong (anchors.md)", "about 3,200 steps/s"),
    ("OCAtari vision mode, Pong (anchors.md)", "about 2,000 steps/s"),
    ("SPACE reference, single-frame forward, 2 CPU cores (anchors.md)", "about 0.45 s per frame"),
    ("SPACE foreground encoder prototype, 128x128, 2 CPU cores (anchors.md)", "about 10 ms per frame"),
    ("EnvPool for-loop over Atari envs, 12-core laptop (published)", "about 4,900 frames/s"),
)


@dataclass
class SpeedRow:
    """One measured (or unavailable) configuration."""

    name: str
    num_envs: int
    device: str
    steps: int | None = None
    seconds: float | None = None
    steps_per_s: float | None = None
    ratio_to_ale: float | None = None
    note: str = ""
    ratio_to_raw_vector: float | None = None
    """A vector row's steps/s over the faster raw ALE row of as many envs (``--raw-vector``)."""


def time_single(
    make: Callable[[], Any], steps: int, warmup: int, seed: int, ocatari: bool = False
) -> tuple[int, float, int]:
    """Time ``steps`` random-action steps of one env (reset on episode end); (steps, seconds, raised).

    With ``ocatari`` the env is OCAtari's, whose step returns (obs, reward, truncated,
    terminated, info) and raises ValueError or IndexError on some frames after the emulator has
    stepped: its vision code (Seaquest: more enemy missiles than its list holds; its HUD code on
    the last life), or its object-vector observation when the number of objects changes
    (Carnival, in RAM mode too). Such a step counts, as :func:`trainers.data.ground_truth.vision_step` counts
    a frame where vision found nothing; ``raised`` is the number of such steps (always 0 for
    other envs, whose errors propagate), for the table's note.
    """
    env = make()
    refused = 0
    try:
        env.reset(seed=seed)
        env.action_space.seed(seed)
        n_act = env.action_space.n
        rng = np.random.default_rng(seed)
        actions = rng.integers(0, n_act, size=steps + warmup)

        def run(lo: int, hi: int) -> int:
            raised = 0
            for t in range(lo, hi):
                try:
                    out = env.step(int(actions[t]))
                    # OCAtari returns (obs, reward, truncated, terminated, info): either flag ends it.
                    done = out[2] or out[3]
                except (ValueError, IndexError):
                    if not ocatari:
                        raise
                    raised += 1
                    # The emulator stepped before OCAtari's detection raised.
                    done = env._env.unwrapped.ale.game_over()
                if done:
                    env.reset()
            return raised

        run(0, warmup)
        with Timer() as timer:
            refused = run(warmup, warmup + steps)
        return steps, timer.seconds, refused
    finally:
        env.close()


def time_vector(make: Callable[[], gym.vector.VectorEnv], steps: int, warmup: int, seed: int) -> tuple[int, float]:
    """Time ``steps`` vector steps of a vector env; returns (env steps, seconds)."""
    envs = make()
    try:
        envs.reset(seed=seed)
        envs.action_space.seed(seed)
        for _ in range(warmup):
            envs.step(envs.action_space.sample())
        acts = [envs.action_space.sample() for _ in range(steps)]
        with Timer() as timer:
            for a in acts:
                envs.step(a)
        return steps * envs.num_envs, timer.seconds
    finally:
        envs.close()


def _ale(game_id: str) -> Callable[[], gym.Env]:
    def make() -> gym.Env:
        import ale_py

        gym.register_envs(ale_py)
        return gym.make(game_id, disable_env_checker=True)

    return make


def _ocatari(game_id: str, mode: str) -> Callable[[], Any]:
    def make() -> Any:
        from ocatari.core import OCAtari

        return OCAtari(game_id, mode=mode, hud=False)

    return make


def _learned(detector: str, weights: Path | None, runtime: str = DEFAULT_RUNTIME) -> dict[str, Any]:
    # Weights without a classifier are still timed (their boxes fill no slot, at the same cost).
    if detector != "space":
        return {}
    return {"allow_unclassified": True, "weights": weights, **({"runtime": runtime} if runtime != DEFAULT_RUNTIME else {})}


def _moc(
    game: str, detector: str, device: str, weights: Path | None = None, runtime: str = DEFAULT_RUNTIME
) -> Callable[[], gym.Env]:
    def make() -> gym.Env:
        import moc_envs  # noqa: F401  (registers the ids)

        return gym.make(f"MOC/{game}-v0", detector=detector, device=device, disable_env_checker=True,
                        **_learned(detector, weights, runtime))  # fmt: skip

    return make


def _moc_vec(
    game: str, n: int, detector: str, device: str, weights: Path | None = None, workers: int = 1,
    emulator: str = "python", runtime: str = DEFAULT_RUNTIME,
) -> Callable[[], gym.vector.VectorEnv]:
    def make() -> gym.vector.VectorEnv:
        from moc_envs.envs.make import make_vec

        extra = {"emulator": emulator} if emulator != "python" else {}
        return make_vec(f"MOC/{game}-v0", n, detector=detector, device=device, workers=workers,
                        **_learned(detector, weights, runtime), **extra)  # fmt: skip

    return make


def time_raw_vector(game: str, n: int, steps: int, emulator: str, seed: int = 0) -> tuple[int, float]:
    """Env steps and seconds of ``steps`` random steps of ``n`` raw ALE v5 games on ``emulator``
    (``moc_envs.envs.emulators``), every frame read as the MOC envs read it; (env steps, seconds)."""
    from moc_envs.envs.emulators import make_emulators
    from moc_envs.games import get_game

    emu = make_emulators(emulator, get_game(game), n, {})  # type: ignore[arg-type]
    try:
        emu.reset(list(range(n)), [seed + i for i in range(n)], None)
        actions = np.random.default_rng(seed).integers(0, emu.single_action_space.n, (steps + 5, n))
        resets = np.zeros(n, dtype=bool)

        def play(chunk: np.ndarray) -> None:
            nonlocal resets
            for a in chunk:
                _, term, trunc, _ = emu.step(a, resets)
                emu.frames(list(range(n)))
                resets = term | trunc

        play(actions[:5])  # warm-up
        with Timer() as timer:
            play(actions[5:])
        return steps * n, timer.seconds
    finally:
        emu.close()


def _detector_folders(game: str) -> list[tuple[str, Path]]:
    """(label, folder) of the shipped detector and of the SPACE baseline it was distilled from."""
    shipped = learned_weights(game)
    if shipped is None:
        return []
    out = [(f"{image_encoder_of(shipped)} encoder, shipped", shipped)]
    baseline = baseline_weights(game)
    if baseline is not None:
        out.append((f"{image_encoder_of(baseline)} encoder, baseline", baseline))
    return out


def time_detect(
    folder: Path,
    game: str,
    frames: np.ndarray,
    batch: int,
    repeats: int,
    device: str = "cpu",
    freeze: bool = True,
    runtime: str = DEFAULT_RUNTIME,
) -> float:
    """Median seconds per frame of ``SpaceDetector.detect`` on ``batch`` raw frames (one thread).

    ``freeze=False`` runs the image encoder eagerly, ``runtime="onnxruntime"`` in ONNX Runtime
    (see :mod:`moc_envs.model.runtime`).
    """
    import statistics
    import time

    from moc_envs.games import get_game
    from moc_envs.perception.space_detector import SpaceDetector

    det = SpaceDetector.from_pretrained(
        folder, get_game(game), device=device, allow_unclassified=True, freeze=freeze, runtime=runtime  # type: ignore[arg-type]
    )
    chunks = [frames[i : i + batch] for i in range(0, len(frames) - batch + 1, batch)]
    for chunk in chunks[:2]:
        det.detect(chunk)
    times = []
    for r in range(repeats):
        chunk = chunks[r % len(chunks)]
        t0 = time.perf_counter()
        det.detect(chunk)
        times.append((time.perf_counter() - t0) / batch)
    return statistics.median(times)


KERNEL_RESIZE = "for comparison, not in the total: the resize kernel alone (moc_envs.kernels.resize)"
PRIOR_RESIZE = "for comparison, not in the total: the resize before that kernel (OpenCV, then the division)"


def profile_step(folder: Path, game: str, frames: np.ndarray, batch: int, repeats: int) -> dict[str, float]:
    """Median milliseconds per frame of each ``detect()`` stage, and of tracking + observation.

    ``detect()`` stages from :meth:`SpaceDetector.detect_timed` (one thread, CPU); "tracking and
    observation" is one env's :class:`~moc_envs.perception.observation.ObjectObservationBuilder` update
    on those detections, what every env step adds after detection.
    """
    import statistics
    import time

    from moc_envs.games import get_game
    from moc_envs.kernels.resize import resize_unit
    from moc_envs.perception.observation import ObjectObservationBuilder
    from moc_envs.perception.preprocess import MODEL_SIZE, resize_frames
    from moc_envs.perception.space_detector import SpaceDetector

    spec = get_game(game)
    det = SpaceDetector.from_pretrained(folder, spec, device="cpu", allow_unclassified=True)
    builder = ObjectObservationBuilder(spec)
    chunks = [frames[i : i + batch] for i in range(0, len(frames) - batch + 1, batch)]
    for chunk in chunks[:2]:
        det.detect(chunk)
    samples: dict[str, list[float]] = {}
    for r in range(repeats):
        found, stages = det.detect_timed(chunks[r % len(chunks)])
        t0 = time.perf_counter()
        for objects in found:
            builder.update(objects)
        stages["tracking and observation"] = time.perf_counter() - t0
        # The resize kernel alone and the resize as it ran before it, side by side (not in the total).
        chunk = chunks[r % len(chunks)]
        t0 = time.perf_counter()
        resize_unit(chunk, MODEL_SIZE)
        t1 = time.perf_counter()
        np.divide(resize_frames(chunk), np.float32(255.0), dtype=np.float32)
        stages[KERNEL_RESIZE], stages[PRIOR_RESIZE] = t1 - t0, time.perf_counter() - t1
        for name, seconds in stages.items():
            samples.setdefault(name, []).append(1e3 * seconds / batch)
    return {name: statistics.median(v) for name, v in samples.items()}


def _raw_frames(game: str, n: int, seed: int) -> np.ndarray:
    """n real frames (210, 160, 3) of random play, one every 4 steps after a warm-up."""
    import ale_py

    from moc_envs.games import get_game

    gym.register_envs(ale_py)
    env = gym.make(get_game(game).ale_id, disable_env_checker=True)
    env.reset(seed=seed)
    env.action_space.seed(seed)
    frames = []
    for i in range(100 + 4 * n):
        obs, _, term, trunc, _ = env.step(env.action_space.sample())
        if term or trunc:
            env.reset()
        if i >= 100 and i % 4 == 0:
            frames.append(obs[:210])
    env.close()
    return np.stack(frames[:n])


@dataclass
class DetectRow:
    """Seconds per frame of one detector at one batch size."""

    detector: str
    batch: int
    device: str
    ms_per_frame: float
    speedup_vs_baseline: float | None = None
    """Against the baseline detector run the same way (both frozen, or both eager)."""
    speedup_vs_filed: float | None = None
    """Against the baseline run eagerly: the encoder as it ran when issue 11 was filed."""


def _devices(requested: str) -> list[str]:
    import torch

    if requested == "auto":
        return ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]
    return [requested]


def run(
    game: str = "Pong",
    steps: int = 3000,
    learned_steps: int = 300,
    vec_sizes: Sequence[int] = (8, 32),
    warmup: int = 50,
    seed: int = 0,
    device: str = "auto",
    out: Path | None = None,
    detect_batches: Sequence[int] = (1, 32),
    detect_repeats: int = 30,
    workers: Sequence[int] = (1, 2),
    profile_batches: Sequence[int] = (1, 8),
    emulators: Sequence[str] = ("python",),
    runtimes: Sequence[str] = (DEFAULT_RUNTIME,),
    raw_vector: bool = False,
    ocatari: bool = True,
    ram_rows: bool = True,
    baseline: bool = True,
    vector_warmup: int = 1,
) -> dict[str, Any]:
    """Measure every row and (when ``out``) write speed.json / .md / .png.

    Learned rows run for the shipped detector and, when its folder keeps one
    (``<weights>/space``) and ``baseline``, the SPACE-encoder baseline it was distilled from;
    ``detect()`` is also timed alone per frame at each of ``detect_batches``, beside that
    baseline. ``emulators`` and ``runtimes`` beyond the defaults add shipped-detector rows
    (``runtimes`` on the CPU only); ``raw_vector`` adds raw ALE rows of each ``vec_sizes`` on
    each emulator; ``ocatari`` and ``ram_rows`` keep the OCAtari and RAM-oracle rows.
    """
    from tqdm import tqdm

    from moc_envs.games import get_game

    spec = get_game(game)
    rows: list[SpeedRow] = []
    plan: list[tuple[str, int, str, Callable[[], tuple[int, float]] | None, str]] = [
        (f"raw {spec.ale_id}", 1, "-", lambda: time_single(_ale(spec.ale_id), steps, warmup, seed), ""),
    ]
    if ocatari:
        plan += [
            ("OCAtari RAM mode", 1, "-", lambda: time_single(_ocatari(spec.ale_id, "ram"), steps, warmup, seed, True), ""),
            ("OCAtari vision mode", 1, "-", lambda: time_single(_ocatari(spec.ale_id, "vision"), steps, warmup, seed, True), ""),
        ]
    if ram_rows:
        plan.append(
            (f"MOC/{spec.name}-v0 detector=ram", 1, "-", lambda: time_single(_moc(spec.name, "ram", "cpu"), steps, warmup, seed), "")
        )
    for n in vec_sizes:
        if ram_rows:
            plan.append(
                (f"MOC/{spec.name}-v0 detector=ram, make_vec", n, "-",
                 lambda n=n: time_vector(_moc_vec(spec.name, n, "ram", "cpu"), max(1, steps // n), 2, seed), "")
            )
        for e in emulators if raw_vector else ():
            plan.append(
                (f"raw {spec.ale_id}, emulator={e}", n, "-",
                 lambda n=n, e=e: time_raw_vector(spec.name, n, max(20, steps // n), e, seed), "frames read every step")
            )
    folders = _detector_folders(spec.name)[: None if baseline else 1]
    if not folders:
        for dev in _devices(device):
            plan.append((f"MOC/{spec.name}-v0 learned", 1, dev, None, not_available(spec.name)))
    for dev in _devices(device):
        for k, (label, folder) in enumerate(folders):
            name = f"MOC/{spec.name}-v0 learned ({label})"
            # Other emulators and runtimes for the shipped detector only; runtimes on the CPU only.
            rts = [r for r in runtimes if k == 0 and dev == "cpu" or r == DEFAULT_RUNTIME]
            for rt in rts:
                plan.append(
                    (name + (f", runtime={rt}" if rt != DEFAULT_RUNTIME else ""), 1, dev,
                     lambda dev=dev, folder=folder, rt=rt: time_single(
                         _moc(spec.name, "space", dev, folder, rt), learned_steps, 5, seed),
                     "")
                )
            for n in vec_sizes:
                vsteps = max(2, learned_steps // n)
                for w, e, rt in [(w, e, rt) for w in workers if w <= n for e in emulators for rt in rts
                                 if k == 0 or e == "python"]:  # fmt: skip
                    plan.append(
                        (f"{name}, make_vec" + (f", workers={w}" if w > 1 else "")
                         + (f", emulator={e}" if e != "python" else "") + (f", runtime={rt}" if rt != DEFAULT_RUNTIME else ""),
                         n, dev,
                         lambda n=n, vsteps=vsteps, dev=dev, folder=folder, w=w, e=e, rt=rt: time_vector(
                             _moc_vec(spec.name, n, "space", dev, folder, w, e, rt), vsteps, vector_warmup, seed),
                         "")
                    )  # fmt: skip
    for name, n, dev, job, note in tqdm(plan, desc="speed", unit="row"):
        row = SpeedRow(name, n, dev, note=note)
        if job is not None:
            row.steps, row.seconds, *refused = job()
            row.steps_per_s = row.steps / row.seconds
            if refused and refused[0]:
                row.note = (
                    f"its step raised on {refused[0]} of {row.steps} steps (ValueError/IndexError from its per-game "
                    "code or its object-vector observation), each timed as a step"
                )
        rows.append(row)
    detect_rows: list[DetectRow] = []
    if folders:
        frames = _raw_frames(spec.name, 2 * max(detect_batches), seed)
        for dev in _devices(device):
            # Freezing and runtimes apply on the CPU only; CUDA rows run eagerly.
            modes: list[tuple[str | bool, str]] = [(DEFAULT_RUNTIME, ""), (False, ", eager")] if dev == "cpu" else [(False, "")]
            if dev == "cpu":
                modes += [(rt, f", {rt}") for rt in runtimes if rt != DEFAULT_RUNTIME]
            for batch in detect_batches:
                measured = {
                    (label, freeze): DetectRow(
                        label + suffix, batch, dev,
                        1e3 * time_detect(folder, spec.name, frames, batch, detect_repeats, dev, freeze is not False,
                                          freeze if isinstance(freeze, str) else DEFAULT_RUNTIME),
                    )
                    for label, folder in tqdm(folders, desc=f"detect() x{batch} [{dev}]", unit="detector")
                    for freeze, suffix in modes
                }  # fmt: skip
                base_label = folders[-1][0]
                filed = measured[(base_label, False)].ms_per_frame
                for (_, freeze), row in measured.items():
                    row.speedup_vs_baseline = measured[(base_label, freeze)].ms_per_frame / row.ms_per_frame
                    row.speedup_vs_filed = filed / row.ms_per_frame
                detect_rows += measured.values()
    profile: dict[str, dict[str, float]] = {}
    if folders:
        for batch in profile_batches:
            profile[str(batch)] = profile_step(folders[0][1], spec.name, frames, batch, detect_repeats)
    # Raw ALE once more at the end: on a shared machine the load can change during the run, so
    # every ratio is to the mean of the two measurements (both are in the table).
    end = SpeedRow(f"raw {spec.ale_id}, again at the end", 1, "-")
    end.steps, end.seconds, _ = time_single(_ale(spec.ale_id), steps, warmup, seed)
    end.steps_per_s = end.steps / end.seconds
    rows.append(end)
    base = (rows[0].steps_per_s + end.steps_per_s) / 2
    raw_n: dict[int, float] = {}
    for row in rows:
        if row.steps_per_s is not None and row.name.startswith(f"raw {spec.ale_id}, emulator="):
            raw_n[row.num_envs] = max(raw_n.get(row.num_envs, 0.0), row.steps_per_s)
    for row in rows:
        if row.steps_per_s is not None and base:
            row.ratio_to_ale = row.steps_per_s / base
        if row.steps_per_s is not None and "make_vec" in row.name and row.num_envs in raw_n:
            row.ratio_to_raw_vector = row.steps_per_s / raw_n[row.num_envs]
    result = {
        "game": spec.name,
        "steps": steps,
        "learned_steps": learned_steps,
        "rows": [asdict(r) for r in rows],
        "detect": [asdict(r) for r in detect_rows],
        "profile_ms_per_frame": profile,
        "anchors": [{"what": a, "value": v} for a, v in ANCHORS],
    }
    if out is not None:
        _write(result, rows, out)
    return result


def _profile_section(result: dict[str, Any]) -> str:
    """Markdown: where a learned env step's time goes, per stage, beside raw ALE's step."""
    profile = result.get("profile_ms_per_frame") or {}
    if not profile:
        return ""
    batches = list(profile)
    stages = list(next(iter(profile.values())))
    raw = next((r for r in result["rows"] if r["name"].startswith("raw ") and r["steps_per_s"]), None)
    rows = [(stage, *(profile[b].get(stage) for b in batches)) for stage in stages]
    rows.append(("total: detect() + tracking", *(sum(v for k, v in profile[b].items() if k not in (KERNEL_RESIZE, PRIOR_RESIZE)) for b in batches)))
    if raw is not None:
        rows.append((f"raw {raw['name'].split()[1]} step (the table's first row)", *([1e3 / raw["steps_per_s"]] * len(batches))))
    table = markdown_table(["stage (shipped detector, CPU, one thread)", *(f"ms per frame, batch {b}" for b in batches)], rows)
    return (
        "## Where the time goes\n\nMedian milliseconds per frame of each stage of `detect()` "
        "(`SpaceDetector.detect_timed`) and of one env's tracking and observation update, at the "
        "batch sizes of a single env and of an 8-env vector env; a learned env step costs the raw "
        f"ALE step plus these.\n\n{table}\n\n"
    )


def _write(result: dict[str, Any], rows: list[SpeedRow], out: Path) -> None:
    table = markdown_table(
        ["configuration", "envs", "detector device", "env steps", "steps/s", "ratio to raw ALE",
         "ratio to raw ALE x envs", "note"],
        [
            (r.name, r.num_envs, r.device, r.steps, r.steps_per_s, r.ratio_to_ale, r.ratio_to_raw_vector, r.note)
            for r in rows
        ],
    )  # fmt: skip
    anchors = markdown_table(["anchor", "figure"], ANCHORS)
    detect = markdown_table(
        ["detector", "batch", "device", "ms per frame", "speed-up vs baseline run the same way",
         "speed-up vs baseline, eager (as filed)"],
        [(r["detector"], r["batch"], r["device"], r["ms_per_frame"], r["speedup_vs_baseline"],
          r["speedup_vs_filed"]) for r in result["detect"]],
    )  # fmt: skip
    body = (
        f"Game: {result['game']}. Random actions, reset on episode end; {result['steps']} env steps "
        f"per cheap row, {result['learned_steps']} for learned-detector rows (after a warm-up). "
        "Learned rows use one torch thread per process (the envs' default) and the image encoder "
        f"in {DEFAULT_RUNTIME} on the CPU (the envs' default, `moc_envs.model.runtime`), the steps "
        "after it in compiled loops (`moc_envs.kernels`); vector rows step N "
        "envs and detect their frames in batches; `workers=W` rows split them over W processes that "
        "step, detect and track their shares at the same time (`moc_envs.envs.parallel`); vector "
        "steps/s count env steps. `shipped` is the detector in `weights/<Game>`, "
        "`baseline` the SPACE-encoder detector it was distilled from (`weights/<Game>/space`). "
        "Raw ALE is timed first and again last; every ratio is to the mean of the two. `ratio to raw "
        "ALE x envs` is a vector row's steps/s over the faster `raw ... emulator=` row of as many envs "
        "(N raw games on ALE v5 in Python or on ale-py's C++ vector env, frames read every step).\n\n"
        f"{table}\n\n## detect() alone\n\nMedian wall time per frame of `SpaceDetector.detect` "
        "on raw 210x160 frames of random play (resize, encoder, glimpses, post-processing, "
        "classifier), one torch thread; `eager` rows run the image encoder without freezing it "
        "(`freeze=False`), as every detector ran when issue 11 was filed.\n\n"
        f"{detect}\n\n{_profile_section(result)}"
        f"## Anchors (from anchors.md; not measured in this run)\n\n{anchors}\n\n"
        "![steps per second](speed.png)\n"
    )
    measured = [r for r in rows if r.steps_per_s is not None]
    bar_plot(
        out / "speed.png",
        [f"{r.name} x{r.num_envs}" + (f" [{r.device}]" if r.device != "-" else "") for r in measured],
        [r.steps_per_s for r in measured],
        "env steps / s (log scale)",
        f"{result['game']}: env steps per second",
        log=True,
    )
    write_results(out, "speed", result, body, "Speed benchmark")


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Command line."""
    p = argparse.ArgumentParser(
        prog="moc-envs bench speed",
        description=__doc__.split("\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_common_args(p)
    p.add_argument("--game", default="Pong", help="game to time")
    p.add_argument("--steps", type=int, default=3000, help="env steps per cheap row")
    p.add_argument("--learned-steps", type=int, default=320, help="env steps per learned-detector row")
    p.add_argument("--vec", type=int, nargs="+", default=[8, 32], help="vector env sizes")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker processes of the learned vector rows")
    p.add_argument(
        "--detect-batches", type=int, nargs="+", default=[1, 32],
        help="batch sizes of the detect() rows (on a GPU: 1 8 64 256)",
    )
    p.add_argument("--emulators", nargs="+", default=["python"], choices=["python", "ale-vector"],
                   help="emulators of the learned make_vec rows (moc_envs.envs.emulators)")
    p.add_argument("--runtimes", nargs="+", default=[DEFAULT_RUNTIME], choices=["torchscript", "onnxruntime"],
                   help="CPU runtimes of the image encoder in the learned and detect() rows")
    p.add_argument("--raw-vector", action="store_true", help="raw ALE rows of each --vec size on each emulator")
    p.add_argument("--no-ocatari", action="store_true", help="leave out the OCAtari rows")
    p.add_argument(
        "--gpu", action="store_true",
        help="the prepared CUDA run: --device cuda, detect() 1 8 64 256, make_vec 8 64 256 on both emulators "
             "beside raw ALE, shipped detector only, no OCAtari or RAM rows (docs/benchmarks.md)",
    )  # fmt: skip
    args = p.parse_args(argv)
    torch_threads(args.threads)
    extra: dict[str, Any] = {}
    if args.gpu:
        args.device, args.vec, args.detect_batches, args.workers = "cuda", [8, 64, 256], [1, 8, 64, 256], [1]
        args.learned_steps = max(args.learned_steps, 2048)
        args.out = args.out / "gpu" if args.out == RESULTS_DIR else args.out  # beside, not over, the CPU run
        extra = {"emulators": ["python", "ale-vector"], "raw_vector": True, "ocatari": False, "ram_rows": False,
                 "baseline": False, "vector_warmup": 3}
    else:
        extra = {"emulators": args.emulators, "raw_vector": args.raw_vector, "ocatari": not args.no_ocatari}
    if args.quick:
        args.steps, args.learned_steps, args.vec = 64, 16, [8]
    result = run(args.game, args.steps, args.learned_steps, args.vec, 5 if args.quick else 50,
                 args.seed, args.device, args.out, detect_batches=args.detect_batches, workers=args.workers,
                 detect_repeats=3 if args.quick else 30, runtimes=args.runtimes, **extra)  # fmt: skip
    for r in result["rows"]:
        sps = "-" if r["steps_per_s"] is None else f"{r['steps_per_s']:.0f}"
        ratio = "" if r["ratio_to_ale"] is None else f"{r['ratio_to_ale']:.3f}x"
        vs_raw = "" if r["ratio_to_raw_vector"] is None else f" ({r['ratio_to_raw_vector']:.3f}x raw x{r['num_envs']})"
        print(f"{r['name']:<64} x{r['num_envs']:<3} {r['device']:<5} {sps:>8} steps/s {ratio:>7}{vs_raw} {r['note']}")
    for r in result["detect"]:
        print(f"detect() {r['detector']:<36} batch {r['batch']:<3} {r['device']:<5} "
              f"{r['ms_per_frame']:.3f} ms/frame  x{r['speedup_vs_baseline']:.1f} vs baseline, "
              f"x{r['speedup_vs_filed']:.1f} vs baseline eager")  # fmt: skip
    return result


if __name__ == "__main__":
    main()
