"""Targets for objects that never move (trainers.data.static) and the builder's use of them."""

from __future__ import annotations

import json

import numpy as np
import pytest

from trainers.data.dataset import build_dataset
from trainers.data.ground_truth import GTObject
from trainers.data.motion import MotionResult, match_centres, motion_boxes, targets_to_boxes
from trainers.data.reader import DatasetFileError, load_ground_truth, load_split
from trainers.data.static import add_static, find_static, object_pixels, static_from_json

GROUND = (90, 90, 90)
SPRITE = (250, 200, 40)


def _obj(cat: str, x: float, y: float, w: float = 6, h: float = 8, instance: int = 0, hud: bool = False) -> GTObject:
    return GTObject(instance, cat, x, y, w, h, hud, False)


def _scene() -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """A grey background image with a 6 x 8 yellow sprite standing at (100, 180)."""
    bg = np.zeros((210, 160, 3), np.uint8)
    bg[:] = GROUND
    box = (100, 180, 6, 8)
    bg[181:187, 101:105] = SPRITE  # the sprite's own pixels, a margin of ground inside its box
    return bg, box


def _empty_motion() -> MotionResult:
    return MotionResult(boxes=np.zeros((0, 4), np.float32), mask=np.zeros((210, 160), np.uint8))


def test_an_object_holding_one_box_is_static_whatever_its_instance():
    frames = [[_obj("Chicken", 100, 180, instance=i % 3), _obj("Car", 10 * i % 150, 50)] for i in range(20)]
    found = find_static(frames, ["Chicken", "Car"])
    assert [(s.category, s.box, s.share) for s in found] == [("Chicken", (100, 180, 6, 8), 1.0)]


def test_static_needs_the_share_a_promised_category_and_no_hud():
    moving = [[_obj("Chicken", 100, 180 if i < 17 else 170)] for i in range(20)]  # 0.85 of the frames
    assert find_static(moving, ["Chicken"]) == []
    assert [s.share for s in find_static(moving, ["Chicken"], min_share=0.8)] == [0.85]
    still = [[_obj("Chicken", 100, 180), _obj("Score", 0, 0, hud=True), _obj("Logo", 50, 50)] for _ in range(5)]
    assert [s.category for s in find_static(still, ["Chicken", "Score"])] == ["Chicken"]
    assert find_static([], ["Chicken"]) == []
    with pytest.raises(ValueError, match="min_share"):
        find_static(still, ["Chicken"], min_share=0)


def test_boxes_are_clipped_to_the_frame():
    cut = [[_obj("Tree", -3, 205, 8, 10)] for _ in range(4)]
    assert find_static(cut, ["Tree"])[0].box == (0, 205, 5, 5)


def test_object_pixels_are_those_unlike_the_ground_around_the_box():
    bg, box = _scene()
    px = object_pixels(bg, box)
    want = np.zeros((8, 6), bool)
    want[1:7, 1:5] = True
    np.testing.assert_array_equal(px, want)


def test_a_drawn_static_object_gets_a_box_and_its_pixels_in_the_mask():
    bg, box = _scene()
    static = find_static([[_obj("Chicken", *box)]], ["Chicken"])
    motion, added = add_static(bg.copy(), bg, _empty_motion(), static)
    assert added == 1
    np.testing.assert_array_equal(motion.boxes, [box])
    assert motion.mask.sum() == 24 and motion.mask[181:187, 101:105].all()


def test_no_static_box_where_the_object_is_gone_or_a_motion_box_covers_it():
    bg, box = _scene()
    static = find_static([[_obj("Chicken", *box)]], ["Chicken"])
    gone = bg.copy()
    gone[181:187, 101:105] = GROUND
    motion, added = add_static(gone, bg, _empty_motion(), static)
    assert added == 0 and len(motion.boxes) == 0 and not motion.mask.any()
    covered = MotionResult(boxes=np.array([[99, 179, 8, 10]], np.float32), mask=np.zeros((210, 160), np.uint8))
    motion, added = add_static(bg.copy(), bg, covered, static)
    assert added == 0 and len(motion.boxes) == 1
    # A car passing by at a distance does not stop the target.
    near = MotionResult(boxes=np.array([[80, 178, 16, 10]], np.float32), mask=np.zeros((210, 160), np.uint8))
    motion, added = add_static(bg.copy(), bg, near, static)
    assert added == 1 and len(motion.boxes) == 2


def test_an_object_animating_in_place_keeps_its_target_with_the_pixels_it_shows_now():
    """Carnival's wheel spins: other pixels than the background image's, as many, still drawn."""
    bg, box = _scene()
    static = find_static([[_obj("Wheel", *box)]], ["Wheel"])
    turned = bg.copy()
    turned[181:187, 101:105] = GROUND
    turned[182:188, 102:106] = SPRITE  # the same sprite one pixel further: another phase
    motion, added = add_static(turned, bg, _empty_motion(), static)
    assert added == 1
    assert motion.mask.sum() == 24 and motion.mask[182:188, 102:106].all() and not motion.mask[181, 101]
    # A fragment of it (a quarter of its pixels) is not the object drawn.
    partial = bg.copy()
    partial[181:187, 101:105] = GROUND
    partial[181:184, 101:103] = SPRITE
    assert add_static(partial, bg, _empty_motion(), static)[1] == 0


@pytest.mark.parametrize(("game", "static", "absent"), [("Carnival", "Wheel", None), ("MsPacman", None, "Fruit")])
def test_background_pass_finds_objects_in_play_not_hud_icons(game, static, absent):
    """The wheel sits in Carnival's derived HUD band yet is in play (the evaluation counts it);
    MsPacman's fruit icon in its bottom bar is listed by OCAtari only with its HUD on."""
    from moc_envs.games import get_game
    from trainers.data.collect import BuildSettings, background_pass

    spec = get_game(game)
    frames, truths = background_pass(spec, BuildSettings(game=game, train=0, val=0, test=0, background_frames=32), "random", truth=True)
    assert len(frames) == len(truths) == 32
    found = {s.category for s in find_static(truths, spec.category_names)}
    if static is not None:
        assert static in found
    if absent is not None:
        assert absent not in found


def test_static_objects_round_trip_through_json_and_bad_rows_are_refused():
    found = find_static([[_obj("Wheel", 70, 15, 28, 12)]], ["Wheel"])
    assert static_from_json(json.loads(json.dumps([s.as_json() for s in found]))) == found
    for bad in ([{"category": "Wheel", "box": [1, 2, 3], "share": 1.0}], [{"category": "Wheel", "box": "x"}], ["row"]):
        with pytest.raises(ValueError, match="static object"):
            static_from_json(bad)


def test_motion_targets_alone_miss_an_object_that_never_moves():
    """The reason for static targets: an object drawn in the background image gets no motion box."""
    bg, box = _scene()
    assert len(motion_boxes(bg.copy(), bg)[0].boxes) == 0


@pytest.fixture(scope="module")
def freeway(tmp_path_factory):
    root = tmp_path_factory.mktemp("freeway")
    kw = dict(game="Freeway", train=8, val=0, test=0, seed=0, chunk_stacks=8, progress=False)
    with_static = build_dataset(out=root / "static", **kw)
    without = build_dataset(out=root / "plain", static_targets=False, **kw)
    return root, with_static, without


def _chicken_recall(root) -> tuple[int, int]:
    """(found, total) of OCAtari's chickens among a split's targets (4 px centre criterion)."""
    d, g = load_split(root, "train"), load_ground_truth(root, "train")
    gt = {k: getattr(g, k) for k in ("stack", "t", "category", "x", "y", "w", "h")}
    found = total = 0
    for s in range(len(d)):
        for t in range(d.frames.shape[1]):
            rows = (gt["stack"] == s) & (gt["t"] == t) & (gt["category"] == "Chicken")
            truth = np.stack([gt["x"][rows] + gt["w"][rows] / 2, gt["y"][rows] + gt["h"][rows] / 2], 1)
            boxes = targets_to_boxes(d.motion_pres[s, t], d.motion_where[s, t])
            _, gi = match_centres(boxes[:, :2] + boxes[:, 2:] / 2, truth, 4.0)
            found, total = found + len(gi), total + len(truth)
    return found, total


def test_freeway_dataset_targets_both_chickens_only_with_static_targets(freeway):
    root, with_static, without = freeway
    meta = json.loads((root / "static" / "meta.json").read_text())
    assert [s["category"] for s in meta["static_objects"]] == ["Chicken"]
    assert meta["build"]["static_targets"] is True
    assert "static_objects" not in json.loads((root / "plain" / "meta.json").read_text())
    assert with_static["splits"]["train"]["static_boxes_per_frame"] > 0.9
    found, total = _chicken_recall(root / "static")
    plain, _ = _chicken_recall(root / "plain")
    assert total == 64  # two chickens in each of 32 frames
    assert plain <= total / 2 < found  # motion alone finds at most the moving one


def test_a_damaged_static_list_names_the_file(freeway, tmp_path):
    import shutil

    root, _, _ = freeway
    copy = tmp_path / "static"
    shutil.copytree(root / "static", copy)
    meta = json.loads((copy / "meta.json").read_text())
    meta["static_objects"] = [{"category": "Chicken", "box": [1, 2], "share": 1.0}]
    meta["splits"]["train"]["done"] = False
    (copy / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(DatasetFileError, match="static_objects"):
        build_dataset(out=copy, game="Freeway", train=8, val=0, test=0, seed=0, chunk_stacks=8, progress=False)
