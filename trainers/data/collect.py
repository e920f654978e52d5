"""Playing a game into dataset stacks: the build settings, the player and the collection loops.

A policy plays ALE v5 (frameskip 4, sticky actions 0.25). :func:`collect_background` keeps
frames for the background mode image; :func:`collect_chunk` records the stacks of one chunk of a
split with their motion targets (:mod:`trainers.data.motion`) and OCAtari RAM objects
(:mod:`trainers.data.ground_truth`), with the moving bars of ``distractors`` drawn on the recorded
frames when asked (:mod:`moc_envs.perception.distractors`: the frames change, the RAM, the
ground truth and the background do not). Chunk ``i`` of split ``s`` plays its own episodes from
seeds derived from ``(seed, s, i)``: the dataset builder (:mod:`trainers.data.dataset`) and the
full-size frame replay (:mod:`trainers.data.raw_frames`) both run it, and get the same stacks.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from moc_envs.games import GameSpec
from moc_envs.perception.distractors import DistractorKind, check_distractors, make_distractors
from moc_envs.perception.frames import frame_source
from moc_envs.perception.preprocess import MODEL_SIZE, resize_frames
from trainers.data.ground_truth import GTObject, RamGroundTruth, ocatari_game_name
from trainers.data.motion import (
    MotionConfig,
    boxes_to_targets,
    mask_to_model,
    match_centres,
    mode_image,
    motion_boxes,
    targets_to_boxes,
)
from trainers.data.policies import make_policy
from trainers.data.static import StaticObject, add_static, static_look
from trainers.data.storage import SPLITS

__all__ = [
    "PolicySpec",
    "SPLIT_INDEX",
    "BuildSettings",
    "ChunkStats",
    "make_env",
    "background_pass",
    "collect_background",
    "collect_chunk",
]

PolicySpec = str | Callable[[np.ndarray], int]
SPLIT_INDEX = {name: i for i, name in enumerate(SPLITS)}
BACKGROUND_STREAM = 99  # seed stream of the background pass, apart from the splits


@dataclass(frozen=True)
class BuildSettings:
    """Everything that determines the data; a resumed build must match it exactly."""

    game: str
    train: int
    val: int
    test: int
    seed: int = 0
    policy: str = "random"
    grid: int = 16
    T: int = 4
    warmup: int = 100
    warmup_jitter: int = 400
    stacks_per_episode: int = 32
    max_gap: int = 8
    chunk_stacks: int = 256
    background_frames: int = 128
    background_keep: float = 0.25
    hud_mask: bool = True
    split_colours: bool = False
    flash_fraction: float = 0.3
    max_object_size: tuple[int, int] = (40, 60)
    match_px: float = 4.0
    static_targets: bool = True
    """Add targets for objects that never move (:mod:`trainers.data.static`)."""
    distractors: DistractorKind | None = None
    """``"horizontal"``, ``"vertical"`` or ``"both"``: bars drawn on the recorded frames; None: clean."""
    distractor_seed: int | None = None
    """Seeds the bars with each chunk's env seed (None: the env seed alone, so ``seed`` fixes them)."""

    def __post_init__(self) -> None:
        check_distractors(self.distractors, self.distractor_seed)

    def sizes(self) -> dict[str, int]:
        """Stacks per split."""
        return {"train": self.train, "val": self.val, "test": self.test}

    def as_json(self) -> dict[str, Any]:
        """JSON-friendly dict (tuples as lists), as stored in meta.json."""
        return json.loads(json.dumps(asdict(self)))


@dataclass
class ChunkStats:
    """Counters of one chunk (summed over chunks for a split)."""

    stacks: int = 0
    frames: int = 0
    episodes: int = 0
    env_steps: int = 0
    black_windows: int = 0
    flash_windows: int = 0
    oversize_boxes: int = 0
    collided_boxes: int = 0
    static_boxes: int = 0
    motion_boxes: int = 0
    gt_objects: int = 0
    hud_objects: int = 0
    moved_objects: int = 0
    tp_moved: int = 0
    tp_pred_moved: int = 0
    tp_all: int = 0
    tp_pred_all: int = 0
    seconds: float = 0.0
    moved_by_category: dict[str, list[int]] = field(default_factory=dict)

    def add(self, other: ChunkStats) -> None:
        """Add ``other``'s counts to these."""
        for k, v in asdict(other).items():
            if k == "moved_by_category":
                for cat, (n, tp) in v.items():
                    cur = self.moved_by_category.setdefault(cat, [0, 0])
                    cur[0] += n
                    cur[1] += tp
            else:
                setattr(self, k, getattr(self, k) + v)


def _seeds(seed: int, stream: int, chunk: int, n: int = 3) -> list[int]:
    """``n`` seeds of chunk ``chunk`` of seed stream ``stream`` (a split, or the background)."""
    ss = np.random.SeedSequence([seed, stream, chunk])
    return [int(s) for s in ss.generate_state(n)]


def make_env(spec: GameSpec) -> Any:
    """The ALE env the builder plays ``spec`` in (the env's own, frameskip 4, sticky actions 0.25)."""
    from moc_envs.envs.registration import make_ale_env

    # ALE v5 defaults made explicit: they define the data (space-moc.md, section 6). The env's
    # own ALE env, so that flicker games give the max of the last two frames here too.
    return make_ale_env(spec, frameskip=4, repeat_action_probability=0.25)


class _Player:
    """One env + policy + OCAtari extractor, stepping through episodes."""

    def __init__(
        self,
        env: Any,
        oracle: RamGroundTruth | None,
        policy: Callable[[np.ndarray], int],
        env_seed: int,
        s: BuildSettings | None = None,
    ) -> None:
        self.env, self.oracle, self.policy = env, oracle, policy
        # What the env's detector would see: cropped to 210 rows (Carnival's screen has 214) and,
        # in a flicker game, the max of the last two emulator frames, with the bars on top.
        self._source = frame_source(env)
        self._bars = None if s is None else make_distractors(s.distractors, s.distractor_seed)
        self.env_seed: int | None = env_seed
        self.steps = 0
        self.episodes = 0

    def _frame(self) -> np.ndarray:
        frame = self._source()
        return frame if self._bars is None else self._bars.draw(frame)

    def new_episode(self) -> None:
        """Reset the env (seeded the first time only) and the OCAtari objects."""
        # Later episodes continue the env's RNG, so one seed fixes the whole chunk.
        self.obs, _ = self.env.reset(seed=self.env_seed)
        if self._bars is not None:
            self._bars.reset(self.env_seed)
        self.frame = self._frame()
        self.env_seed = None
        self.episodes += 1
        if self.oracle is not None:
            self.oracle.reset()
        self.gt = self._oracle()

    def _oracle(self) -> list[GTObject]:
        if self.oracle is None:
            return []
        return self.oracle(self.env.unwrapped.ale.getRAM())

    def step(self) -> bool:
        """One env step; returns False when the episode ended."""
        # The policy plays on the ALE's own (clean) observation: the bars are the detector's noise.
        obs, _, terminated, truncated, _ = self.env.step(self.policy(self.obs))
        self.obs = obs
        if self._bars is not None:
            self._bars.step()
        self.frame = self._frame()
        self.steps += 1
        self.gt = self._oracle()
        return not (terminated or truncated)


def background_pass(
    spec: GameSpec, s: BuildSettings, policy: PolicySpec, truth: bool = False
) -> tuple[np.ndarray, list[list[GTObject]]]:
    """The ``background_frames`` frames of the background pass, kept with prob. ``background_keep``.

    With ``truth``, also OCAtari's RAM objects in play (its HUD off) of each kept frame (empty lists otherwise); the
    oracle only reads the RAM, so the frames are the same either way. Played without
    distractors: the bars are not part of the scene (a mode image would drop them anyway), so
    the background does not depend on them.
    """
    env = make_env(spec)
    env_seed, policy_seed, rng_seed = _seeds(s.seed, BACKGROUND_STREAM, 0)
    rng = np.random.default_rng(rng_seed)
    pol = make_policy(policy, int(env.action_space.n), policy_seed)
    # HUD off: the objects in play, as the held-out evaluation's truth counts them.
    oracle = RamGroundTruth(ocatari_game_name(spec.ale_id), hud=False) if truth else None
    player = _Player(env, oracle, pol, env_seed)
    per_episode = max(1, s.background_frames // 4)  # at least four episodes
    kept: list[np.ndarray] = []
    truths: list[list[GTObject]] = []
    while len(kept) < s.background_frames:
        player.new_episode()
        alive = all(player.step() for _ in range(s.warmup))
        n = 0
        while alive and n < per_episode and len(kept) < s.background_frames:
            alive = player.step()
            if rng.random() < s.background_keep and player.frame.any():
                kept.append(player.frame.copy())
                truths.append(player.gt)
                n += 1
    env.close()
    return np.stack(kept), truths


def collect_background(spec: GameSpec, s: BuildSettings, policy: PolicySpec) -> np.ndarray:
    """Mode image of the background pass's frames (:func:`background_pass`)."""
    return mode_image(background_pass(spec, s, policy)[0])


def _gt_rows(objs: list[GTObject], stack: int, t: int) -> list[tuple]:
    return [(stack, t, o.instance, o.category, o.x, o.y, o.w, o.h, o.hud, o.moved) for o in objs]


def _score_frame(pred: np.ndarray, objs: list[GTObject], st: ChunkStats, match_px: float) -> None:
    """Add one frame's recall/precision counts of motion boxes against OCAtari."""
    scene = [o for o in objs if not o.hud]
    st.hud_objects += len(objs) - len(scene)
    st.gt_objects += len(scene)
    st.motion_boxes += len(pred)
    pc = pred[:, :2] + pred[:, 2:] / 2
    gc = np.array([[o.x + o.w / 2, o.y + o.h / 2] for o in scene], np.float32).reshape(-1, 2)
    pi, gi = match_centres(pc, gc, match_px)
    st.tp_all += len(gi)
    st.tp_pred_all += len(pi)
    moved_idx = [i for i, o in enumerate(scene) if o.moved]
    st.moved_objects += len(moved_idx)
    pi, gi = match_centres(pc, gc[moved_idx], match_px)
    st.tp_moved += len(gi)
    st.tp_pred_moved += len(pi)
    hit = set(gi.tolist())
    for j, i in enumerate(moved_idx):
        cur = st.moved_by_category.setdefault(scene[i].category, [0, 0])
        cur[0] += 1
        cur[1] += int(j in hit)


def collect_chunk(
    spec: GameSpec,
    env: Any,
    s: BuildSettings,
    policy: PolicySpec,
    background: np.ndarray,
    motion_cfg: MotionConfig,
    split: str,
    chunk: int,
    n_stacks: int,
    on_stack: Callable[[], None] | None = None,
    on_window: Callable[[int, np.ndarray], None] | None = None,
    statics: Sequence[StaticObject] = (),
) -> tuple[dict[str, np.ndarray], list[tuple], ChunkStats]:
    """Play fresh episodes until ``n_stacks`` clean stacks are recorded.

    ``statics``: objects that never move (:mod:`trainers.data.static`), added to each frame's
    motion targets where the frame shows them and no motion box covers them.

    ``on_window(k, window)`` receives the raw (T, 210, 160, 3) frames of each kept stack
    (used by :mod:`trainers.data.raw_frames` to recover full-size frames by replaying a split).
    """
    t0 = time.perf_counter()
    env_seed, policy_seed, rng_seed = _seeds(s.seed, SPLIT_INDEX[split], chunk)
    rng = np.random.default_rng(rng_seed)
    oracle = RamGroundTruth(ocatari_game_name(spec.ale_id), hud=True)
    pol = make_policy(policy, int(env.action_space.n), policy_seed)
    player = _Player(env, oracle, pol, env_seed, s)
    st = ChunkStats()
    T, G = s.T, s.grid
    out = {
        "frames": np.zeros((n_stacks, T, MODEL_SIZE, MODEL_SIZE, 3), np.uint8),
        "motion_pres": np.zeros((n_stacks, T, G * G), np.float32),
        "motion_where": np.zeros((n_stacks, T, G * G, 4), np.float32),
        "motion_mask": np.zeros((n_stacks, T, MODEL_SIZE, MODEL_SIZE), np.uint8),
        "rams": np.zeros((n_stacks, T, 128), np.uint8),
    }
    rows: list[tuple] = []
    static_looks = [static_look(background, s.box) for s in statics]
    k = 0
    while k < n_stacks:
        player.new_episode()
        warm = s.warmup + int(rng.integers(0, s.warmup_jitter + 1))
        alive = all(player.step() for _ in range(warm))
        in_episode = 0
        while alive and k < n_stacks and in_episode < s.stacks_per_episode:
            frames, rams, gts = [], [], []
            for _ in range(T):
                alive = player.step()
                frames.append(player.frame.copy())
                rams.append(player.env.unwrapped.ale.getRAM().copy())
                gts.append(player.gt)
                if not alive:
                    break
            if not alive:
                break
            window = np.stack(frames)
            if not window.reshape(T, -1).any(axis=1).all():
                st.black_windows += 1
                continue
            motion = motion_boxes(window, background, motion_cfg)
            if any(m.flash for m in motion):
                st.flash_windows += 1
                continue
            if statics:
                placed = [add_static(f, background, m, statics, looks=static_looks) for f, m in zip(window, motion, strict=True)]
                motion = [m for m, _ in placed]
                st.static_boxes += sum(n for _, n in placed)
            out["frames"][k] = resize_frames(window)
            if on_window is not None:
                on_window(k, window)
            out["motion_mask"][k] = mask_to_model(np.stack([m.mask for m in motion]))
            out["rams"][k] = np.stack(rams)
            for t, m in enumerate(motion):
                pres, where = boxes_to_targets(m.boxes, G)
                out["motion_pres"][k, t] = pres
                out["motion_where"][k, t] = where
                st.oversize_boxes += m.dropped
                st.collided_boxes += len(m.boxes) - int(pres.sum())
                _score_frame(targets_to_boxes(pres, where), gts[t], st, s.match_px)
                rows.extend(_gt_rows(gts[t], k, t))
            k += 1
            in_episode += 1
            if on_stack is not None:
                on_stack()
            gap = int(rng.integers(0, s.max_gap + 1))
            alive = all(player.step() for _ in range(gap))
    st.stacks, st.frames = k, k * T
    st.episodes, st.env_steps = player.episodes, player.steps
    st.seconds = time.perf_counter() - t0
    return out, rows, st

