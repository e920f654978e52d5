"""Frames a user gets: held-out policies and seeds that reach later game states, with RAM truth.

The detector is trained on random play from the start of each game; a user's agent soon sees
other states (bricks cleared, later waves, a submarine deep down, a chicken in the upper
lanes). This module plays each game with several policies and records windows of consecutive
frames spread over long play, beside OCAtari's RAM truth of every object the env promises
(every category of the game's spec, objects that never move included) and OCAtari's vision
objects on the very same frames.

Policies (all seeded, see :data:`POLICY_SETS`):

- ``random``: a uniformly random action every step (the training data's policy);
- ``held``: a random action held for 4 to 16 steps, so that objects travel far;
- ``fire``: in games with a FIRE action, actions that fire 3 times out of 4, held 2 to 8 steps
  (shooters clear their targets and reach later waves); elsewhere one random action held for
  16 to 64 steps (a Freeway chicken walks up, a skier goes down the slope);
- ``scripted``: the RAM-reading policy of :mod:`trainers.data.scripted` with epsilon-random
  actions (long Pong rallies, a Breakout wall with holes, Ms. Pac-Man away from her start).

The ``held-out`` set (held, fire and scripted with epsilon 0.25, on seeds 1000+) is never used
to tune anything; the ``tune`` set (random and scripted with epsilon 0.1, seeds 0..) is the one
to develop on. Frames are recorded in windows of ``window`` consecutive steps with ``gap`` steps
played and not recorded between windows (the first ``gap`` too), so that the recorded frames
come from later in each episode and a tracker can run over each window as the env runs it.

Truth objects that RAM places but the frame does not draw (a box, grown by one pixel, holding a
single colour) are counted apart, not scored: no detector that reads pixels can find them.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "LEARNED",
    "VISION",
    "collect",
    "evaluate_plays",
    "PolicyRun",
    "VisionRules",
    "POLICY_SETS",
    "FrameRecord",
    "PlayRecord",
    "make_play_policy",
    "drawn",
    "HELD_OUT_FILE",
    "HELD_OUT_BAR",
    "meets_held_out_bar",
    "write_held_out",
    "main",
    "play",
    "detect_all",
]

POLICY_NAMES = ("random", "held", "fire", "scripted")
LEARNED = "learned (SPACE+MOC)"
"""Key of our detector's scores in an evaluation."""
VISION = "OCAtari vision"
"""Key of OCAtari's vision rules' scores in an evaluation."""


@dataclass(frozen=True)
class PolicyRun:
    """One policy with its seed: what plays one share of an evaluation's frames."""

    policy: str
    seed: int
    epsilon: float = 0.1
    """Random-action probability of a scripted policy (unused by the others)."""

    def __post_init__(self) -> None:
        if self.policy not in POLICY_NAMES:
            raise ValueError(f"policy must be one of {POLICY_NAMES}, got {self.policy!r}")

    @property
    def name(self) -> str:
        """``"held seed 1001"`` and the like, as tables show it."""
        eps = f" eps {self.epsilon:g}" if self.policy == "scripted" else ""
        return f"{self.policy}{eps} seed {self.seed}"


POLICY_SETS: dict[str, tuple[PolicyRun, ...]] = {
    "held-out": (PolicyRun("held", 1001), PolicyRun("fire", 2002), PolicyRun("scripted", 3003, 0.25)),
    "tune": (PolicyRun("random", 0), PolicyRun("scripted", 1, 0.1)),
}
"""The evaluation's policy sets. Nothing is ever tuned on ``held-out``."""


@dataclass
class FrameRecord:
    """Truth and baselines of one recorded frame (boxes (N, 4) x, y, w, h in frame pixels)."""

    truth: np.ndarray
    truth_cats: list[str]
    hud: np.ndarray
    """Boxes of OCAtari's HUD objects (scores, lives, bars): shown in pictures, scored as nothing."""
    vision: np.ndarray
    vision_cats: list[str]
    undrawn: dict[str, int]
    """Truth objects of each category that RAM places but the frame does not draw (not scored)."""
    window_start: bool
    """First frame of a window: a tracker starts afresh here."""
    vision_refused: bool = False


@dataclass
class PlayRecord:
    """The recorded frames of one policy run and what happened while playing."""

    run: PolicyRun
    frames: np.ndarray
    records: list[FrameRecord]
    steps_played: int
    episodes_finished: int
    returns: list[float] = field(default_factory=list)
    truth_refused: int = 0
    """Steps whose RAM OCAtari's extraction raised on (not recorded)."""


def _fire_actions(env: Any) -> list[int]:
    meanings = env.unwrapped.get_action_meanings()
    return [i for i, m in enumerate(meanings) if "FIRE" in m]


def make_play_policy(run: PolicyRun, game: str, env: Any) -> Callable[[np.ndarray, Sequence[Any]], int]:
    """The policy of ``run`` for ``env``: ``(ram, RAM-oracle objects) -> action``."""
    from trainers.data.scripted import scripted_policy

    n = int(env.action_space.n)
    rng = np.random.default_rng(run.seed)
    if run.policy == "random":
        return lambda ram, objects: int(rng.integers(n))
    if run.policy == "scripted":
        scripted = scripted_policy(game, n, run.seed, run.epsilon)
        if scripted is None:
            raise ValueError(f"no scripted policy for {game}")
        return scripted
    fire = _fire_actions(env) if run.policy == "fire" else []
    if run.policy == "fire" and fire:
        hold, pick = (2, 9), lambda: int(rng.choice(fire)) if rng.random() < 0.75 else int(rng.integers(n))
    elif run.policy == "fire":
        hold, pick = (16, 65), lambda: int(rng.integers(n))
    else:
        hold, pick = (4, 17), lambda: int(rng.integers(n))
    state = {"action": 0, "left": 0}

    def act(ram: np.ndarray, objects: Sequence[Any]) -> int:
        if state["left"] <= 0:
            state["action"], state["left"] = pick(), int(rng.integers(*hold))
        state["left"] -= 1
        return state["action"]

    return act


def drawn(frame: np.ndarray, box: Sequence[float]) -> bool:
    """Whether ``box`` (x, y, w, h) shows anything: the box grown by one pixel holds two colours or more.

    A sprite drawn in one colour on a plain background shows both colours once its box is
    grown by a pixel; an object that RAM places but the frame leaves out shows only the
    background's.
    """
    h_img, w_img = frame.shape[:2]
    x, y, w, h = box
    x0, y0 = max(int(np.floor(x)) - 1, 0), max(int(np.floor(y)) - 1, 0)
    x1, y1 = min(int(np.ceil(x + w)) + 1, w_img), min(int(np.ceil(y + h)) + 1, h_img)
    if x1 <= x0 or y1 <= y0:
        return False
    patch = frame[y0:y1, x0:x1].reshape(-1, frame.shape[2])
    return bool((patch != patch[0]).any())


def _gt_boxes(objects: Sequence[Any], keep: frozenset[str]) -> tuple[np.ndarray, list[str], np.ndarray]:
    boxes, cats, hud = [], [], []
    for o in objects:
        if o.hud:
            hud.append((o.x, o.y, o.w, o.h))
        elif o.category in keep:
            boxes.append((o.x, o.y, o.w, o.h))
            cats.append(o.category)
    return (np.array(boxes, np.float64).reshape(-1, 4), cats, np.array(hud, np.float64).reshape(-1, 4))


class VisionRules:
    """OCAtari's vision rules for one game: each frame's objects of the promised categories, HUD left out."""

    def __init__(self, game: str) -> None:
        from ocatari.ram.extract_ram_info import init_objects
        from ocatari.vision.extract_vision_info import detect_objects_vision

        from moc_envs.games import get_game

        spec = get_game(game)
        importlib.import_module(f"ocatari.vision.{spec.name.lower()}")
        self.game = spec.name
        self.keep = frozenset(spec.category_names)
        self._init, self._detect = init_objects, detect_objects_vision
        self.reset()

    def reset(self) -> None:
        """Fresh objects (a new episode)."""
        # OCAtari 2.2.1's Pong vision needs its HUD objects while Freeway's HUD classes fail to
        # build; only the promised categories are scored, so a HUD-less list serves where needed.
        try:
            self._objects = self._init(self.game, True, vision=True)
        except AttributeError:
            self._objects = self._init(self.game, False, vision=True)

    def __call__(self, frame: np.ndarray) -> tuple[np.ndarray, list[str], bool]:
        """Boxes (N, 4) and categories of ``frame``, and False when the rules refused the frame."""
        from trainers.data.ground_truth import vision_step

        ok = vision_step(self._detect, self._objects, frame, self.game, True)
        boxes, cats = [], []
        for o in self._objects if ok else []:
            if not o or bool(getattr(o, "hud", False)) or o.category not in self.keep:
                continue
            x, y, w, h = (float(v) for v in o.xywh)
            if w > 0 and h > 0:
                boxes.append((x, y, w, h))
                cats.append(o.category)
        return np.array(boxes, np.float64).reshape(-1, 4), cats, ok


def play(game: str, run: PolicyRun, frames: int, window: int = 32, gap: int = 288) -> PlayRecord:
    """Play ``game`` with ``run`` and record ``frames`` frames in windows (module docstring)."""
    from moc_envs.envs.registration import make_ale_env
    from moc_envs.games import get_game
    from moc_envs.perception.frames import frame_source
    from moc_envs.perception.ram_detector import RamDetector
    from trainers.data.ground_truth import RamGroundTruth

    if frames < 1 or window < 1 or gap < 0:
        raise ValueError(f"frames and window must be >= 1 and gap >= 0, got {frames}, {window}, {gap}")
    spec = get_game(game)
    keep = frozenset(spec.category_names)
    env = make_ale_env(spec)
    ale = env.unwrapped.ale  # type: ignore[attr-defined]
    frame_of = frame_source(env)
    policy = make_play_policy(run, spec.name, env)
    oracle = RamDetector(spec)
    truth_on, truth_off = RamGroundTruth(spec.name, hud=True), RamGroundTruth(spec.name, hud=False)
    vision = VisionRules(spec.name)
    kept_frames: list[np.ndarray] = []
    records: list[FrameRecord] = []
    steps = episodes = clock = truth_refused = 0
    restart = False
    returns: list[float] = []
    ret = 0.0
    env.reset(seed=run.seed)
    oracle.reset(0)
    try:
        while len(records) < frames:
            frame, ram = frame_of(), ale.getRAM()
            # RAM extraction is stateful: it sees every step, recorded or not.
            try:
                on, off = truth_on(ram), truth_off(ram)
            except (OverflowError, ValueError, IndexError):
                # OCAtari 2.2.1's SpaceInvaders code overflows a uint8 on some alien positions:
                # no truth for this step, so it is not recorded, and the tracker restarts after it.
                on = off = None
                truth_refused += 1
            phase = clock % (window + gap)
            if phase >= gap and on is not None and off is not None:
                records.append(_record(frame, on, off, keep, vision, window_start=phase == gap or restart))
                kept_frames.append(frame)
            restart = on is None or (restart and phase < gap)
            dets = oracle.detect(frame[None], ram[None])[0]
            _, r, term, trunc, _ = env.step(policy(ram, dets))
            steps += 1
            clock += 1
            ret += float(r)
            if term or trunc:
                episodes += 1
                returns.append(ret)
                ret = 0.0
                env.reset()
                oracle.reset(0)
                truth_on.reset()
                truth_off.reset()
                vision = VisionRules(spec.name)
                # The windows keep their pace across episodes (a game whose episodes are shorter
                # than a gap still gets frames); the tracker starts afresh with the new episode.
                restart = True
    finally:
        env.close()
    return PlayRecord(run, np.stack(kept_frames), records, steps, episodes, returns, truth_refused)


def _record(
    frame: np.ndarray,
    on: Sequence[Any],
    off: Sequence[Any],
    keep: frozenset[str],
    vision: VisionRules,
    window_start: bool,
) -> FrameRecord:
    boxes, cats, hud = _gt_boxes(on, keep)
    # With its HUD on, OCAtari's RAM mode adds objects that are HUD icons (MsPacman's fruit in
    # the bottom bar, not flagged HUD); the objects it also reports with the HUD off are in play.
    play_boxes = {(o.category, o.x, o.y, o.w, o.h) for o in off if not o.hud}
    in_play = [(c, *b) in play_boxes for c, b in zip(cats, boxes.tolist(), strict=True)]
    undrawn: dict[str, int] = {}
    shown = []
    for ok, c, b in zip(in_play, cats, boxes, strict=True):
        if not ok:
            continue
        if drawn(frame, b):
            shown.append((c, b))
        else:
            undrawn[c] = undrawn.get(c, 0) + 1
    v_boxes, v_cats, ok = vision(frame)
    return FrameRecord(
        truth=np.array([b for _, b in shown], np.float64).reshape(-1, 4),
        truth_cats=[c for c, _ in shown],
        hud=hud,
        vision=v_boxes,
        vision_cats=v_cats,
        undrawn=undrawn,
        window_start=window_start,
        vision_refused=not ok,
    )


def detect_all(detector: Any, frames: np.ndarray, batch: int = 32) -> list[tuple[np.ndarray, list[str]]]:
    """A detector's boxes and category names on every frame, in batches, as the env runs it."""
    out: list[tuple[np.ndarray, list[str]]] = []
    for lo in range(0, len(frames), batch):
        for dets in detector.detect(np.ascontiguousarray(frames[lo : lo + batch])):
            boxes = np.array([(d.x, d.y, d.w, d.h) for d in dets], np.float64).reshape(-1, 4)
            out.append((boxes, [d.category for d in dets]))
    return out


def collect(game: str, policy_set: str, frames: int) -> list[PlayRecord]:
    """Play every policy run of ``policy_set`` for ``frames`` recorded frames each."""
    if policy_set not in POLICY_SETS:
        raise ValueError(f"policy set must be one of {sorted(POLICY_SETS)}, got {policy_set!r}")
    return [play(game, run, frames) for run in POLICY_SETS[policy_set]]


def evaluate_plays(
    game: str, plays: Sequence[PlayRecord], weights: str | Path | None, device: str = "auto"
) -> dict[str, Any]:
    """Scores (:func:`trainers.evaluate.object_scores.score_objects`) of the detector in ``weights`` and of
    OCAtari's vision over all ``plays``, and per play; ``_learned_predictions`` holds ours per frame.

    ``weights`` None: vision only, with a note that the game has no weights.
    """
    from moc_envs.games import get_game
    from moc_envs.perception.detectors import make_detector
    from trainers.evaluate.object_scores import score_objects

    spec = get_game(game)
    detector = (
        make_detector("space", spec.name, device, weights=str(weights), allow_unclassified=True)
        if weights is not None
        else None
    )
    truths, starts, vision, learned = [], [], [], []
    per_run: list[dict[str, Any]] = []
    for rec in plays:
        t = [(r.truth, r.truth_cats) for r in rec.records]
        s = [r.window_start for r in rec.records]
        v = [(r.vision, r.vision_cats) for r in rec.records]
        lp = detect_all(detector, rec.frames) if detector is not None else None
        truths += t
        starts += s
        vision += v
        row = {"policy": rec.run.name, "steps_played": rec.steps_played, "episodes_finished": rec.episodes_finished,
               VISION: score_objects(spec, v, t, s)}
        if lp is not None:
            learned += lp
            row[LEARNED] = score_objects(spec, lp, t, s)
        per_run.append(row)
    undrawn: dict[str, int] = {}
    for rec in plays:
        for r in rec.records:
            for c, n in r.undrawn.items():
                undrawn[c] = undrawn.get(c, 0) + n
    out: dict[str, Any] = {
        "game": spec.name,
        "frames": len(truths),
        "undrawn_truth": undrawn,
        "vision_refused_frames": int(sum(r.vision_refused for rec in plays for r in rec.records)),
        "ram_truth_refused_steps": int(sum(rec.truth_refused for rec in plays)),
        VISION: score_objects(spec, vision, truths, starts),
        "per_run": per_run,
    }
    if detector is not None:
        out[LEARNED] = score_objects(spec, learned, truths, starts)
        out["_learned_predictions"] = learned
    else:
        out["note"] = f"not available: no weights for {spec.name}"
    return out


HELD_OUT_FILE = "eval_held_out.json"
"""A weights folder's evaluation on held-out later-state play, read by its card."""
HELD_OUT_BAR = {"f1": 0.95, "category_accuracy": 0.97, "spurious_singleton_share": 0.01}
"""The shipping bar on held-out later-state frames (issue 28): and F1 not below OCAtari vision's."""


def meets_held_out_bar(result: dict[str, Any]) -> bool:
    """Whether an :func:`evaluate_plays` result meets :data:`HELD_OUT_BAR` (F1 at least vision's too)."""
    mine = result.get(LEARNED)
    if not mine:
        return False
    return bool(
        mine["f1"] >= HELD_OUT_BAR["f1"]
        and mine["f1"] >= result[VISION]["f1"]
        and mine["category_accuracy"] >= HELD_OUT_BAR["category_accuracy"]
        and mine["spurious_singleton_share"] <= HELD_OUT_BAR["spurious_singleton_share"]
    )


def write_held_out(result: dict[str, Any], weights: str | Path, game: str, frames: int) -> Path:
    """Write an :func:`evaluate_plays` result of the held-out set as the folder's ``eval_held_out.json``
    (with the bar's verdict, set in ``result`` too) and refresh its manifest."""
    import json

    from moc_envs.weights.atomic import atomic_write_text
    from moc_envs.weights.manifest import refresh_manifest
    from moc_envs.weights.safe_read import finite_for_json

    result.pop("_learned_predictions", None)
    result.update(policy_set="held-out", policies=[r.name for r in POLICY_SETS["held-out"]], frames_per_policy=frames,
                  bar=HELD_OUT_BAR, meets_bar=meets_held_out_bar(result))  # fmt: skip
    path = Path(weights) / HELD_OUT_FILE
    atomic_write_text(path, json.dumps(finite_for_json(result), indent=2, allow_nan=False) + "\n")
    refresh_manifest(Path(weights), game, [HELD_OUT_FILE])
    return path


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Command line: evaluate a weights folder on held-out play and write ``eval_held_out.json`` there."""
    import argparse

    from moc_envs.games import get_game
    from moc_envs.threads import add_threads_argument, set_torch_threads

    p = argparse.ArgumentParser(
        prog="moc-envs held-out",
        description="evaluate a weights folder on held-out later-state play, beside OCAtari vision (trainers.evaluate.held_out)",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--game", required=True, help="game name, e.g. Pong")
    p.add_argument("--weights", required=True, help="weights folder (weights/<Game>)")
    p.add_argument("--frames", type=int, default=320, help="recorded frames per policy")
    p.add_argument("--device", default="cpu", help="torch device")
    add_threads_argument(p)
    args = p.parse_args(argv)
    set_torch_threads(args.threads)
    name = get_game(args.game).name
    result = evaluate_plays(name, collect(name, "held-out", args.frames), args.weights, args.device)
    path = write_held_out(result, args.weights, name, args.frames)
    mine = result.get(LEARNED) or {}
    print(f"{name}: F1 {mine.get('f1', float('nan')):.3f} (vision {result[VISION]['f1']:.3f}), category accuracy "
          f"{mine.get('category_accuracy', float('nan')):.3f}, spurious singleton {mine.get('spurious_singleton_share', float('nan')):.3f}; "
          f"bar {'met' if result['meets_bar'] else 'not met'}; wrote {path}")  # fmt: skip
    return result
