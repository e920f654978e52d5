"""Detection quality as users get it: every promised object, later-state frames, held-out play.

``moc-envs bench detection [--games Pong Boxing ...] [--frames 320] [--set held-out|tune] [--update] [--quick]``

Each game is played by the policies of :data:`trainers.evaluate.held_out.POLICY_SETS` (by
default the ``held-out`` set: a held random action, fire-heavy or long-held play and a scripted
RAM-reading policy with 25% random actions, on seeds nothing was ever tuned on), recording
windows of consecutive frames spread over long play. On the very same frames:

- truth: OCAtari RAM mode, every category the env promises (objects that never move included),
  HUD objects left out, objects RAM places but the frame does not draw counted apart;
- ``learned``: our SPACE+MOC detector as the env runs it (``weights/<Game>``), every box of a
  promised category ('unknown' and categories without a slot fill no slot and are left out);
- ``OCAtari vision``: OCAtari's hand-written vision rules, same categories.

Scores (:mod:`trainers.evaluate.object_scores`): category-aware F1 under the references'
relative criterion and OCAtari's 5 px one, category accuracy, per-category precision and recall,
and the share of frames where a single-slot category's slot (the Player ...) holds a box no
truth object of its category matches. The card's F1 on moving objects of its test split sits
beside them. Writes ``detection.json`` / ``.md`` / ``.png`` and, per game,
``detection_worst/<game>.png``: the frames where ours erred most (truth green, ours red).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import (
    add_common_args,
    bar_plot,
    learned_weights,
    markdown_table,
    torch_threads,
    write_results,
)
from trainers.evaluate.held_out import (
    HELD_OUT_BAR,
    LEARNED,
    POLICY_SETS,
    VISION,
    PlayRecord,
    collect,
    evaluate_plays,
    meets_held_out_bar,
)
from trainers.evaluate.object_scores import frame_errors

__all__ = ["LEARNED", "VISION", "TARGET", "worst_frames_picture", "run", "main"]

TARGET = HELD_OUT_BAR
"""The bar of issue 28 on every shipped game (and F1 not below OCAtari vision's)."""


def _card_f1_moving(folder: Path | None) -> float | None:
    if folder is None or not (folder / "card.json").is_file():
        return None
    ship = json.loads((folder / "card.json").read_text()).get("ship", {})
    value = ship.get("f1_moving")
    return float(value) if isinstance(value, int | float) else None


def worst_frames_picture(path: Path, plays: Sequence[PlayRecord], preds: Sequence[Any], n: int = 6) -> Path:
    """The ``n`` frames where ``preds`` erred most: truth boxes green, predictions red with their category."""
    import cv2

    from moc_envs.weights.atomic import atomic_path

    frames = np.concatenate([p.frames for p in plays])
    records = [r for p in plays for r in p.records]
    errors = np.array([frame_errors(p, (r.truth, r.truth_cats)) for p, r in zip(preds, records, strict=True)])
    order = np.argsort(-errors, kind="stable")[:n]
    tiles = []
    for i in order.tolist():
        img = cv2.resize(frames[i][:, :, ::-1], (320, 420), interpolation=cv2.INTER_NEAREST)
        for (x, y, w, h) in records[i].truth.tolist():
            cv2.rectangle(img, (int(2 * x), int(2 * y)), (int(2 * (x + w)), int(2 * (y + h))), (0, 255, 0), 1)
        boxes, cats = preds[i]
        for (x, y, w, h), c in zip(np.asarray(boxes).reshape(-1, 4).tolist(), cats, strict=True):
            cv2.rectangle(img, (int(2 * x) - 1, int(2 * y) - 1), (int(2 * (x + w)) + 1, int(2 * (y + h)) + 1), (0, 0, 255), 1)
            cv2.putText(img, c[:6], (int(2 * x), max(int(2 * y) - 2, 8)), cv2.FONT_HERSHEY_PLAIN, 0.7, (0, 0, 255), 1)
        cv2.putText(img, f"errors {int(errors[i])}", (4, 414), cv2.FONT_HERSHEY_PLAIN, 0.9, (255, 255, 255), 1)
        tiles.append(img)
    while len(tiles) % 3:
        tiles.append(np.zeros_like(tiles[0]))
    grid = np.vstack([np.hstack(tiles[k : k + 3]) for k in range(0, len(tiles), 3)])
    ok, png = cv2.imencode(".png", grid)
    if not ok:
        raise RuntimeError(f"could not encode {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_bytes(png.tobytes())
    return path


def run(
    games: Sequence[str], frames: int = 320, policy_set: str = "held-out", device: str = "auto", out: Path | None = None,
    keep: Sequence[dict[str, Any]] = (),
) -> dict[str, Any]:
    """Score every game; write the files (and the worst-frames pictures) when ``out`` is set.

    ``keep``: rows of an earlier run (:func:`earlier_rows`) for games not scored now, written
    beside the new ones in the order of :func:`moc_envs.games.game_names`.
    """
    from tqdm import tqdm

    from moc_envs.games import get_game

    results = []
    for game in tqdm(games, desc="detection", unit="game"):
        name = get_game(game).name
        plays = collect(name, policy_set, frames)
        scores = evaluate_plays(name, plays, learned_weights(name), device)
        scores["card_f1_moving"] = _card_f1_moving(learned_weights(name))
        preds = scores.pop("_learned_predictions", None)
        if out is not None and preds is not None:
            worst_frames_picture(out / "detection_worst" / f"{name.lower()}.png", plays, preds)
        results.append(scores)
        mine = scores.get(LEARNED, {})
        tqdm.write(f"detection: {name} learned F1 {mine.get('f1', float('nan')):.3f}, vision {scores[VISION]['f1']:.3f}")
    if keep:
        from moc_envs.games import game_names

        order = {g: i for i, g in enumerate(game_names())}
        scored = {r["game"] for r in results}
        results = sorted([r for r in keep if r["game"] not in scored] + results, key=lambda r: order.get(r["game"], len(order)))
    result = {"games": [r["game"] for r in results], "policy_set": policy_set,
              "policies": [r.name for r in POLICY_SETS[policy_set]], "frames_per_policy": frames,
              "target": TARGET, "results": results}
    if out is not None:
        _write(result, out)
    return result


def earlier_rows(out: Path, frames: int, policy_set: str) -> list[dict[str, Any]]:
    """The rows of the ``detection.json`` in ``out``, checked to come from the same policies and frames.

    Raises ``ValueError`` (expected vs got) when there is none or it was gathered another way:
    rows of different runs side by side would not compare.
    """
    path = out / "detection.json"
    if not path.is_file():
        raise ValueError(f"--update needs an earlier {path}: there is none (run without --update first)")
    earlier = json.loads(path.read_text())
    want = {"policy_set": policy_set, "policies": [r.name for r in POLICY_SETS[policy_set]], "frames_per_policy": frames}
    got = {k: earlier.get(k) for k in want}
    if got != want:
        raise ValueError(f"--update: {path} was gathered with {got}, this run uses {want}; rerun every game instead")
    return list(earlier["results"])


def _meets(r: dict[str, Any]) -> str:
    if r.get(LEARNED) is None:
        return "-"
    return "yes" if meets_held_out_bar(r) else "no"


def _write(result: dict[str, Any], out: Path) -> None:
    rows = []
    for r in result["results"]:
        m, v = r.get(LEARNED, {}), r[VISION]
        rows.append((r["game"], m.get("f1"), m.get("precision"), m.get("recall"), m.get("f1_5px"), m.get("category_accuracy"),
                     m.get("spurious_singleton_share"), v["f1"], v["f1_5px"], v["spurious_singleton_share"],
                     r["card_f1_moving"], r[VISION]["truth_objects"], _meets(r)))
    table = markdown_table(
        ["game", "ours F1", "P", "R", "F1 (5 px)", "category acc.", "spurious singleton", "vision F1", "vision F1 (5 px)",
         "vision spurious singleton", "card F1 (moving, test split)", "truth objects", "meets the bar"], rows)
    per_cat = []
    for r in result["results"]:
        for cat, v in r[VISION]["per_category"].items():
            m = r.get(LEARNED, {}).get("per_category", {}).get(cat, {})
            per_cat.append((r["game"], cat, v["truth"], m.get("precision"), m.get("recall"), v["precision"], v["recall"],
                            r.get(LEARNED, {}).get("spurious_singleton_frames", {}).get(cat)))
    cat_table = markdown_table(
        ["game", "category", "truth objects", "ours P", "ours R", "vision P", "vision R", "ours: frames with a spurious slot box"],
        per_cat)
    runs = []
    for r in result["results"]:
        for pr in r["per_run"]:
            runs.append((r["game"], pr["policy"], pr["steps_played"], pr["episodes_finished"],
                         pr.get(LEARNED, {}).get("f1"), pr[VISION]["f1"]))
    run_table = markdown_table(["game", "policy", "steps played", "episodes finished", "ours F1", "vision F1"], runs)
    notes = [f"- {r['game']}: {r['note']}" for r in result["results"] if r.get("note")]
    notes += [f"- {r['game']}: RAM objects not drawn on the frame, left out of the truth: "
              + ", ".join(f"{c} {n:,}" for c, n in sorted(r["undrawn_truth"].items())) for r in result["results"] if r["undrawn_truth"]]
    notes += [f"- {r['game']}: OCAtari vision raised on {r['vision_refused_frames']:,} frames (scored as finding nothing)"
              for r in result["results"] if r["vision_refused_frames"]]
    notes += [f"- {r['game']}: OCAtari's RAM extraction raised on {r['ram_truth_refused_steps']:,} steps (not recorded)"
              for r in result["results"] if r.get("ram_truth_refused_steps")]
    t = result["target"]
    body = (
        f"Policy set `{result['policy_set']}` ({', '.join(result['policies'])}), {result['frames_per_policy']} frames per "
        "policy in windows of 32 consecutive steps, each after 288 steps played unrecorded, the same frames for every detector "
        "(trainers/evaluate/held_out.py). Truth: OCAtari RAM mode, every category the env promises, HUD objects left out. "
        "Category-aware Hungarian matching; F1 under the references' criterion (1 - centre distance / truth diagonal > 0.5) "
        "and OCAtari's 5 px one. Category accuracy: class-agnostic matched pairs with the right category. Spurious singleton: "
        "share of frames where a single-slot category's slot, tracked as the env tracks it, holds a box no truth object of "
        "its category matches. Card F1: the card's moving-object F1 on its own test split (random play), for reference.\n\n"
        f"Bar (issue 28): F1 >= {t['f1']}, not below vision's, category accuracy >= {t['category_accuracy']}, "
        f"spurious singleton <= {t['spurious_singleton_share']}.\n\n"
        f"{table}\n\n" + ("\n".join(notes) + "\n\n" if notes else "")
        + f"### Per category (relative criterion)\n\n{cat_table}\n\n### Per policy\n\n{run_table}\n\n"
        "![F1 per game](detection.png)\n\nWorst frames per game (truth green, ours red): `detection_worst/<game>.png`.\n"
    )
    labels, values, colors = [], [], []
    for r in result["results"]:
        for name, colour in ((LEARNED, "tab:blue"), (VISION, "tab:gray")):
            if name in r:
                labels.append(f"{r['game']}: {name}")
                values.append(r[name]["f1"])
                colors.append(colour)
    bar_plot(out / "detection.png", labels, values, "F1 (category-aware, relative criterion)",
             f"Detection F1 on {result['policy_set']} later-state frames", colors=colors)
    write_results(out, "detection", result, body, "Detection quality benchmark")


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Command line."""
    p = argparse.ArgumentParser(
        prog="moc-envs bench detection",
        description=__doc__.split("\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_common_args(p)
    p.add_argument("--games", nargs="+", default=None, help="games to score (default: every game with weights)")
    p.add_argument("--frames", type=int, default=320, help="recorded frames per policy")
    p.add_argument("--set", dest="policy_set", choices=sorted(POLICY_SETS), default="held-out",
                   help="policy set: held-out (never tuned on) or tune (to develop on)")
    p.add_argument("--update", action="store_true",
                   help="score only --games and keep the other games' rows of the detection.json in --out "
                        "(gathered with the same policies and frames), e.g. after retraining one game")
    args = p.parse_args(argv)
    torch_threads(args.threads)
    from moc_envs.games import game_names

    games = args.games or [g for g in game_names() if learned_weights(g) is not None] or ["Pong"]
    if args.quick:
        args.frames = 32
    keep: list[dict[str, Any]] = []
    if args.update:
        if not args.games:
            p.error("--update needs --games: the games to score again")
        try:
            keep = earlier_rows(Path(args.out), args.frames, args.policy_set)
        except ValueError as err:
            p.error(str(err))
    result = run(games, args.frames, args.policy_set, args.device, args.out, keep)
    for r in result["results"]:
        mine = r.get(LEARNED)
        ours = "-" if mine is None else f"{mine['f1']:.3f}"
        print(f"{r['game']:<14} ours F1 {ours:>6}  vision F1 {r[VISION]['f1']:.3f}  meets the bar: {_meets(r)}")
    return result


if __name__ == "__main__":
    main()
