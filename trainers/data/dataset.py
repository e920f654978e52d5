"""Gameplay dataset builder: frames, background image, motion targets, RAM ground truth.

    moc-envs dataset --game Pong --out data/Pong [--train 4096 --val 512 --test 512]
                               [--seed 0] [--policy random] [--grid 16] [--force] [--vis]
                               [--distractors {horizontal,vertical,both} [--distractor-seed N]]

A policy plays ALE v5 (frameskip 4, sticky actions 0.25). After a warm-up of
``warmup`` (+ a random extra of up to ``warmup_jitter``) steps, stacks of T
consecutive steps are recorded, with a random gap of up to ``max_gap`` steps
between stacks and at most ``stacks_per_episode`` stacks per episode; windows with
an all-black frame or a flash are skipped. Each frame gets MOC motion targets
(:mod:`trainers.data.motion`) against the background mode image, and the OCAtari RAM
objects of the same step (:mod:`trainers.data.ground_truth`). ``distractors`` draws PermaKey's
moving bars on the recorded frames (:mod:`moc_envs.perception.distractors`), as the env's
``distractors`` keyword does; the RAM, the ground truth and the background stay clean.

Work is split into chunks; chunk ``i`` of split ``s`` plays its own episodes from
seeds derived from ``(seed, s, i)``, so the splits never share an episode, a
build is deterministic, and an interrupted build resumes at the first missing
chunk with the same result. Finished chunks and splits are written atomically;
a finished split is never rebuilt unless ``force``, which deletes the previous build's
files first (a damaged or differently configured one alike; readers name the damaged file
and this command). Temporaries of a killed build are removed on the next start. The game is
played by :mod:`trainers.data.collect`; the layout is in :mod:`trainers.data.storage`;
:mod:`trainers.data.reader` reads it.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict
from functools import partial
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from moc_envs.errors import MocEnvsError
from moc_envs.games import get_game
from moc_envs.perception.distractors import (
    DISTRACTOR_KINDS,
    DistractorKind,
    check_distractors,
    distractor_seed_argument,
)
from moc_envs.perception.preprocess import MODEL_SIZE
from moc_envs.weights.atomic import remove_stale_temporaries
from trainers.data.collect import (
    SPLIT_INDEX,
    BuildSettings,
    ChunkStats,
    PolicySpec,
    background_pass,
    collect_chunk,
    make_env,
)
from trainers.data.motion import (
    COLOUR_SPLIT_GAMES,
    HUD_REGIONS,
    MotionConfig,
    mode_image,
    targets_to_boxes,
)
from trainers.data.policies import policy_name
from trainers.data.raw_frames import raw_file
from trainers.data.static import find_static, static_from_json
from trainers.data.storage import (
    ARRAY_KEYS,
    BACKGROUND_FILE,
    FORMAT_VERSION,
    GT_KEYS,
    META_FILE,
    REPORT_FILE,
    SPLITS,
    DatasetFileError,
    gt_file,
    load_png,
    partial_dir,
    read_meta,
    read_npz,
    read_split_arrays,
    rebuild_command,
    save_npz_atomic,
    save_png,
    split_file,
    write_json_atomic,
)

__all__ = ["BuildSettings", "BuildInterrupted", "DatasetWarning", "build_dataset", "check_split_sizes", "main"]


class BuildInterrupted(MocEnvsError, RuntimeError):
    """Raised by a chunk hook to stop a build early (used by tests and tools)."""


class DatasetWarning(UserWarning):
    """Something the builder repaired on its own (e.g. temporaries of a killed build)."""



def _gt_arrays(rows: list[tuple], offset: int = 0) -> dict[str, np.ndarray]:
    cols = list(zip(*rows, strict=True)) if rows else [()] * len(GT_KEYS)
    dtypes = [np.int32, np.int32, np.int32, str, np.float32, np.float32, np.float32,
              np.float32, bool, bool]  # fmt: skip
    arrays = {}
    for key, col, dt in zip(GT_KEYS, cols, dtypes, strict=True):
        arrays[key] = np.asarray(col, dtype=dt) if col else np.zeros(0, dt if dt is not str else "U1")
    arrays["stack"] = arrays["stack"] + offset
    return arrays


def _chunk_path(out: Path, split: str, chunk: int) -> Path:
    return partial_dir(out, split) / f"chunk_{chunk:05d}.npz"


def _load_chunk(
    path: Path, out: Path, game: str | None = None
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], ChunkStats]:
    """A finished chunk's arrays, ground truth and counters (DatasetFileError when damaged)."""
    z = read_npz(path, (*ARRAY_KEYS, *("gt_" + k for k in GT_KEYS), "stats"), out, game)
    arrays = {k: z[k] for k in ARRAY_KEYS}
    gt = {k: z["gt_" + k] for k in GT_KEYS}
    return arrays, gt, ChunkStats(**json.loads(str(z["stats"])))


def _finish_split(out: Path, split: str, n_chunks: int, game: str | None = None) -> ChunkStats:
    """Merge a split's chunks into its final compressed files."""
    parts, gts, total = [], [], ChunkStats()
    offset = 0
    for c in range(n_chunks):
        arrays, gt, st = _load_chunk(_chunk_path(out, split, c), out, game)
        gt["stack"] = gt["stack"] + offset
        offset += len(arrays["frames"])
        parts.append(arrays)
        gts.append(gt)
        total.add(st)
    merged = {k: np.concatenate([p[k] for p in parts]) for k in ARRAY_KEYS}
    save_npz_atomic(split_file(out, split), **merged)
    table = {k: np.concatenate([g[k] for g in gts]) for k in GT_KEYS}
    save_npz_atomic(gt_file(out, split), **table)
    return total


def _summary(st: ChunkStats, T: int) -> dict[str, Any]:
    def ratio(a: float, b: float) -> float | None:
        return round(a / b, 4) if b else None

    return {
        "stacks": st.stacks,
        "frames": st.frames,
        "episodes": st.episodes,
        "env_steps": st.env_steps,
        "gt_objects_per_frame": ratio(st.gt_objects, st.frames),
        "moved_objects_per_frame": ratio(st.moved_objects, st.frames),
        "motion_boxes_per_frame": ratio(st.motion_boxes, st.frames),
        "recall_moved": ratio(st.tp_moved, st.moved_objects),
        "precision_moved": ratio(st.tp_pred_moved, st.motion_boxes),
        "recall_all": ratio(st.tp_all, st.gt_objects),
        "precision_all": ratio(st.tp_pred_all, st.motion_boxes),
        "recall_moved_by_category": {
            cat: ratio(tp, n) for cat, (n, tp) in sorted(st.moved_by_category.items())
        },
        "skipped_black_windows": st.black_windows,
        "skipped_flash_windows": st.flash_windows,
        "dropped_oversize_boxes": st.oversize_boxes,
        "grid_collisions": st.collided_boxes,
        "static_boxes_per_frame": ratio(st.static_boxes, st.frames),
        "collect_seconds": round(st.seconds, 2),
        "frames_per_second": ratio(st.frames, st.seconds),
    }


def _clear(out: Path) -> None:
    """Remove a previous build's files (only the files a build or its readers write)."""
    for name in (META_FILE, BACKGROUND_FILE, REPORT_FILE):
        (out / name).unlink(missing_ok=True)
    for split in SPLITS:
        split_file(out, split).unlink(missing_ok=True)
        gt_file(out, split).unlink(missing_ok=True)
        raw_file(out, split).unlink(missing_ok=True)
    for d in (".partial", ".cache", "vis"):
        shutil.rmtree(out / d, ignore_errors=True)


def _remove_stale_temporaries(out: Path) -> None:
    """Delete the temporaries of killed builds (their pid is gone) and say so."""
    folders = [out, out / "vis", *(partial_dir(out, s) for s in SPLITS), *(out / ".cache" / s for s in SPLITS)]
    for folder in folders:
        for path in remove_stale_temporaries(folder):
            warnings.warn(f"removed {path}, a temporary file left by a build that was killed",
                          DatasetWarning, stacklevel=3)  # fmt: skip


def _dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and ".cache" not in p.parts)


def build_dataset(
    game: str,
    out: str | Path,
    train: int = 4096,
    val: int = 512,
    test: int = 512,
    seed: int = 0,
    policy: PolicySpec = "random",
    grid: int = 16,
    force: bool = False,
    vis: bool = False,
    *,
    T: int = 4,
    chunk_stacks: int = 256,
    warmup: int = 100,
    warmup_jitter: int = 400,
    stacks_per_episode: int = 32,
    max_gap: int = 8,
    background_frames: int = 128,
    hud_mask: bool = True,
    hud_regions: Sequence[Sequence[int]] | None = None,
    progress: bool = True,
    on_chunk: Callable[[str, int], None] | None = None,
    split_colours: bool | None = None,
    distractors: DistractorKind | None = None,
    distractor_seed: int | None = None,
    static_targets: bool = True,
) -> dict[str, Any]:
    """Build (or finish) the dataset of ``game`` in ``out``; return the report.

    ``hud_regions``: the (x, y, w, h) screen rectangles left out of the motion targets (None:
    the game's entry of ``HUD_REGIONS``; :func:`trainers.detector.derive.hud_bands` derives them from
    frames); recorded in meta.json, and a resumed build must be given the same ones.
    ``on_chunk(split, chunk)`` is called after each chunk is saved; raising there
    (e.g. :class:`BuildInterrupted`) stops the build, and calling again resumes.
    A callable ``policy`` is recorded by its type name only: resuming with a
    different callable of the same type is not detected. ``split_colours``: split motion blobs
    by sprite colour (None: as :data:`trainers.data.motion.COLOUR_SPLIT_GAMES` says for the game;
    True / False to measure what the split changes, in the report's recall per category).
    ``distractors`` (``"horizontal"``, ``"vertical"``, ``"both"``; None: clean frames) and
    ``distractor_seed`` (None: the bars follow from ``seed`` alone) are recorded in meta.json
    like every setting that determines the data. ``static_targets``: objects the env promises
    that hold one box through the background pass (OCAtari's RAM objects of its frames) get a
    target on every frame that shows them (:mod:`trainers.data.static`); their boxes go to
    meta.json's ``static_objects``.
    """
    spec = get_game(game)
    check_split_sizes(train, val, test)
    if grid < 1 or T < 1 or chunk_stacks < 1:
        raise ValueError(f"grid, T and chunk_stacks must be positive; got {grid}, {T}, {chunk_stacks}")
    check_distractors(distractors, distractor_seed)
    settings = BuildSettings(
        game=spec.name, train=train, val=val, test=test, seed=seed, policy=policy_name(policy),
        grid=grid, T=T, warmup=warmup, warmup_jitter=warmup_jitter,
        stacks_per_episode=stacks_per_episode, max_gap=max_gap, chunk_stacks=chunk_stacks,
        background_frames=background_frames, hud_mask=hud_mask,
        split_colours=spec.name in COLOUR_SPLIT_GAMES if split_colours is None else bool(split_colours),
        max_object_size=tuple(spec.max_object_size), distractors=distractors,
        # A seed without bars determines nothing: not recorded, so it cannot block a resume.
        distractor_seed=None if distractor_seed is None or distractors is None else int(distractor_seed),
        static_targets=bool(static_targets),
    )  # fmt: skip
    if hud_regions is not None and not hud_mask:
        raise ValueError("hud_regions needs hud_mask=True (without it no region is left out)")
    given = hud_regions if hud_regions is not None else HUD_REGIONS.get(spec.name, ())
    regions = [[int(v) for v in r] for r in given]
    if any(len(r) != 4 for r in regions):
        raise ValueError(f"hud_regions must be (x, y, w, h) rectangles, got {regions}")
    regions = regions if hud_mask else []
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if force:
        _clear(out)
    _remove_stale_temporaries(out)
    t_start = time.perf_counter()
    meta_path = out / META_FILE
    if meta_path.is_file():
        meta = read_meta(out, game=spec.name)
        # Datasets built before static targets existed have none.
        old = {"static_targets": False, **meta.get("build", {})}
        new = settings.as_json()
        diff = {k: (old.get(k), v) for k, v in new.items() if old.get(k) != v}
        if meta.get("hud_regions", regions) != regions:
            diff["hud_regions"] = (meta.get("hud_regions"), regions)
        if diff:
            desc = ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in diff.items())
            raise MocEnvsError(
                f"'{out}' holds a dataset built with other settings ({desc}); "
                "pass force=True (--force) to rebuild it"
            )
    else:
        meta = {
            "version": FORMAT_VERSION,
            "game": spec.name,
            "ale_id": spec.ale_id,
            "image_size": MODEL_SIZE,
            "frame_size": [210, 160],
            "grid": grid,
            "T": T,
            "policy": settings.policy,
            "categories": list(spec.category_names),
            "hud_regions": regions,
            "build": settings.as_json(),
            "splits": {
                name: {
                    "stacks": n,
                    "seed_stream": [seed, SPLIT_INDEX[name]],
                    "done": False,
                }
                for name, n in settings.sizes().items()
            },
            "seeds": {name: [seed, SPLIT_INDEX[name]] for name in SPLITS},
            "background": BACKGROUND_FILE,
        }
        write_json_atomic(meta_path, meta)

    motion_cfg = MotionConfig(
        max_object_size=tuple(spec.max_object_size),
        ignore=tuple(tuple(r) for r in regions),
        split_colours=settings.split_colours,
    )
    bg_path = out / BACKGROUND_FILE
    if bg_path.is_file() and (not settings.static_targets or "static_objects" in meta):
        background = load_png(bg_path, spec.name)
    else:
        frames, truths = background_pass(spec, settings, policy, truth=settings.static_targets)
        background = mode_image(frames)
        if settings.static_targets:
            meta["static_objects"] = [o.as_json() for o in find_static(truths, spec.category_names)]
            write_json_atomic(meta_path, meta)
        save_png(bg_path, background)
    try:
        statics = static_from_json(meta.get("static_objects", []))
    except (KeyError, TypeError, ValueError) as e:
        raise DatasetFileError(f"{meta_path} holds invalid static_objects ({e}); rebuild with "
                               f"{rebuild_command(out, spec.name)}") from e  # fmt: skip

    env = None
    fresh = ChunkStats()
    splits_report: dict[str, Any] = {}
    for split, n in settings.sizes().items():
        info = meta["splits"][split]
        if info.get("done"):
            for path in (split_file(out, split), gt_file(out, split)):
                if not path.is_file():
                    raise DatasetFileError(
                        f"dataset file {path} is missing, though {META_FILE} says split '{split}' "
                        f"is finished; rebuild with {rebuild_command(out, spec.name)}"
                    )
            splits_report[split] = info["report"]
            continue
        n_chunks = max(1, math.ceil(n / chunk_stacks))
        bar = tqdm(total=n, desc=f"{spec.name} {split}", unit="stack", disable=not progress)
        for c in range(n_chunks):
            size = min(chunk_stacks, n - c * chunk_stacks) if n else 0
            path = _chunk_path(out, split, c)
            if path.is_file():
                bar.update(size)
                continue
            if env is None:
                env = make_env(spec)
            arrays, rows, st = collect_chunk(
                spec, env, settings, policy, background, motion_cfg, split, c, size,
                on_stack=partial(bar.update, 1), statics=statics,
            )  # fmt: skip
            fresh.add(st)
            gt = _gt_arrays(rows)
            save_npz_atomic(
                path, compress=False, **arrays, **{"gt_" + k: v for k, v in gt.items()},
                stats=np.array(json.dumps(asdict(st))),
            )  # fmt: skip
            if on_chunk is not None:
                on_chunk(split, c)
        bar.close()
        total = _finish_split(out, split, n_chunks, spec.name)
        info.update(done=True, report=_summary(total, T))
        write_json_atomic(meta_path, meta)
        shutil.rmtree(partial_dir(out, split), ignore_errors=True)
        splits_report[split] = info["report"]
    if env is not None:
        env.close()
    shutil.rmtree(out / ".partial", ignore_errors=True)

    # Load time of the training split, as a trainer would see it (checked, as it reads it).
    t_load = time.perf_counter()
    read_split_arrays(out, "train", meta)
    load_seconds = time.perf_counter() - t_load

    if vis:
        _write_vis(out, settings, background)

    wall = time.perf_counter() - t_start
    report = {
        "game": spec.name,
        "out": str(out),
        "settings": settings.as_json(),
        "splits": splits_report,
        "this_run": {
            "frames_built": fresh.frames,
            "wall_seconds": round(wall, 2),
            "frames_per_second": round(fresh.frames / wall, 1) if fresh.frames else None,
        },
        "disk_bytes": _dir_size(out),
        "train_load_seconds": round(load_seconds, 3),
    }
    write_json_atomic(out / REPORT_FILE, report)
    return report


def _write_vis(out: Path, s: BuildSettings, background: np.ndarray, per_split: int = 4) -> None:
    """Pictures: motion target boxes (green) and OCAtari boxes (magenta; HUD grey)."""
    from trainers.data.motion import FRAME_SHAPE

    vis_dir = out / "vis"
    vis_dir.mkdir(exist_ok=True)
    scale = 3
    height, width = FRAME_SHAPE
    for split, n in s.sizes().items():
        if n == 0:
            continue
        with np.load(split_file(out, split), allow_pickle=False) as z:
            frames, pres, where, masks = (z[k] for k in ARRAY_KEYS[:4])
        with np.load(gt_file(out, split), allow_pickle=False) as z:
            gt = {k: z[k] for k in GT_KEYS}
        for i, stack in enumerate(np.linspace(0, n - 1, min(per_split, n)).astype(int)):
            t = s.T - 1
            img = cv2.resize(frames[stack, t], (width * scale, height * scale),
                             interpolation=cv2.INTER_NEAREST)  # fmt: skip
            mask = cv2.resize(masks[stack, t] * 255, (width * scale, height * scale),
                              interpolation=cv2.INTER_NEAREST)  # fmt: skip
            sel = (gt["stack"] == stack) & (gt["t"] == t)
            for x, y, w, h, hud in zip(gt["x"][sel], gt["y"][sel], gt["w"][sel], gt["h"][sel],
                                       gt["hud"][sel], strict=True):  # fmt: skip
                color = (128, 128, 128) if hud else (255, 0, 255)
                cv2.rectangle(img, (int(x * scale), int(y * scale)),
                              (int((x + w) * scale), int((y + h) * scale)), color, 1)  # fmt: skip
            for x, y, w, h in targets_to_boxes(pres[stack, t], where[stack, t]):
                cv2.rectangle(img, (int(round(x * scale)) - 2, int(round(y * scale)) - 2),
                              (int(round((x + w) * scale)) + 2, int(round((y + h) * scale)) + 2),
                              (0, 255, 0), 1)  # fmt: skip
            panel = np.concatenate([img, np.repeat(mask[..., None], 3, axis=2)], axis=1)
            cv2.putText(panel, "green: motion target  magenta: OCAtari  grey: HUD", (4, 12),
                        cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1)  # fmt: skip
            save_png(vis_dir / f"{split}_{i}.png", panel)


def _regions(text: str) -> list[list[int]]:
    """``'x,y,w,h;x,y,w,h'`` -> rectangles, for ``--hud-regions``."""
    try:
        rects = [[int(v) for v in part.split(",")] for part in text.split(";") if part.strip()]
    except ValueError:
        rects = []
    if not rects or any(len(r) != 4 or min(r[2:]) <= 0 for r in rects):
        raise argparse.ArgumentTypeError(f"expected rectangles 'x,y,w,h;...' with w, h > 0, got {text!r}")
    return rects


def check_split_sizes(train: int, val: int, test: int) -> None:
    """Raise ValueError (expected vs got) unless the splits can be built: at least one training
    stack, no negative split."""
    if train < 1 or val < 0 or test < 0:
        raise ValueError(f"split sizes must be --train >= 1, --val >= 0, --test >= 0 stacks; got {train}, {val}, {test}")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Command-line entry point: ``moc-envs dataset --game Pong --out data/Pong``."""
    p = argparse.ArgumentParser(
        prog="moc-envs dataset",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    # Required options get no default to show (SUPPRESS), the rest show theirs.
    p.add_argument("--game", required=True, default=argparse.SUPPRESS, help="game name, e.g. Pong")
    p.add_argument("--out", required=True, default=argparse.SUPPRESS, type=Path, help="output directory")
    p.add_argument("--train", type=int, default=4096, help="training stacks")
    p.add_argument("--val", type=int, default=512, help="validation stacks")
    p.add_argument("--test", type=int, default=512, help="test stacks")
    p.add_argument("--seed", type=int, default=0, help="master seed (splits get their own streams)")
    p.add_argument(
        "--policy", default="random",
        help="'random' or 'sb3:<ALGO>:<model.zip>' (ALGO: PPO, A2C or DQN with SB3's MlpPolicy or "
        "CnnPolicy). The zip is read without unpickling, unlike SB3's own load: only the tensors of "
        "policy.pth (torch.load with weights_only=True) and the plain-JSON parts of 'data' are used; "
        "a model that cannot be rebuilt from those (a custom policy or features extractor) is refused",
    )  # fmt: skip
    p.add_argument("--grid", type=int, default=16, help="grid size G of the motion targets")
    p.add_argument("--chunk-stacks", type=int, default=256, help="stacks per resumable chunk")
    p.add_argument("--no-hud-mask", action="store_true", help="keep HUD regions in the targets")
    p.add_argument(
        "--hud-regions", type=_regions, default=None,
        help="HUD rectangles 'x,y,w,h;x,y,w,h' left out of the targets (default: the game's hand-set "
        "entry of trainers.data.motion.HUD_REGIONS, none for most games; moc-envs train derives them)",
    )  # fmt: skip
    p.add_argument(
        "--split-colours", choices=("game", "on", "off"), default="game",
        help="split motion blobs by sprite colour: as trainers.data.motion.COLOUR_SPLIT_GAMES says for the "
        "game, or on / off to compare the targets' recall per category (report.json)",
    )  # fmt: skip
    p.add_argument(
        "--force", action="store_true",
        help="rebuild from scratch: delete the previous build's files first (also a damaged or "
        "differently configured one); every file is then written atomically, and an interrupted "
        "rebuild resumes without --force",
    )  # fmt: skip
    p.add_argument(
        "--distractors", choices=DISTRACTOR_KINDS, default=None,
        help="draw PermaKey's moving bars (RGB 128,0,255, a new random position every frame) on the "
        "recorded frames; RAM, ground truth and background stay clean (default: none)",
    )  # fmt: skip
    p.add_argument(
        "--distractor-seed", type=distractor_seed_argument, default=None,
        help="seed of the bar positions, mixed with each chunk's env seed (default: --seed alone fixes them)",
    )  # fmt: skip
    p.add_argument(
        "--no-static-targets", action="store_true",
        help="give objects that never move no target (by default an object the env promises that holds one "
        "box through the background pass, by OCAtari's RAM objects of its frames, gets one on every frame "
        "showing it; meta.json's static_objects lists them)",
    )  # fmt: skip
    p.add_argument("--vis", action="store_true", help="write pictures of the targets to OUT/vis")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    a = p.parse_args(argv)
    if a.distractor_seed is not None and a.distractors is None:
        p.error("--distractor-seed needs --distractors (horizontal, vertical or both)")
    try:
        check_split_sizes(a.train, a.val, a.test)
    except ValueError as err:  # before any play or file, in the options' own words
        p.error(str(err))
    try:
        report = build_dataset(
            a.game, a.out, a.train, a.val, a.test, seed=a.seed, policy=a.policy, grid=a.grid,
            force=a.force, vis=a.vis, chunk_stacks=a.chunk_stacks, hud_mask=not a.no_hud_mask,
            hud_regions=a.hud_regions, progress=not a.quiet,
            split_colours={"game": None, "on": True, "off": False}[a.split_colours],
            distractors=a.distractors, distractor_seed=a.distractor_seed,
            static_targets=not a.no_static_targets,
        )  # fmt: skip
    except MocEnvsError as err:
        p.exit(2, f"error: {err}\n")
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
