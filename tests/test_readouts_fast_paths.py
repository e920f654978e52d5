"""The readouts' and the HUD reader's fast paths read exactly what the plain computations read.

Issue 30: the labels ran on every env step at up to 20 times a raw ALE step (colour masks reduced
over a 3-wide last axis, ``np.isin`` on a handful of colours, a dying pattern cut out of every
invader cell). Each fast path is checked here against the plain computation it replaced, on real
frames of the games that use it and on random frames; ``moc-envs bench label-cost`` times them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from moc_envs.games import get_game
from moc_envs.hud.reader import load_hud
from moc_envs.readouts import read_readouts
from moc_envs.readouts.base import colour_mask, in_colours, rgb_codes
from moc_envs.readouts.course.slots import CourseObject, find_course_objects
from moc_envs.readouts.formation import FormationReadout
from moc_envs.readouts.identity import colour_code
from moc_envs.weights.manifest import verify_folder

WEIGHTS = Path(__file__).resolve().parents[1] / "weights"


def _frames(game: str, n: int, seed: int = 0) -> list[np.ndarray]:
    from moc_envs.envs.registration import make_ale_env
    from moc_envs.perception.frames import frame_source

    env = make_ale_env(get_game(game), frameskip=4, repeat_action_probability=0.25)
    frame_of = frame_source(env)
    rng = np.random.default_rng(seed)
    env.reset(seed=seed)
    out = []
    for t in range(n):
        _, _, term, trunc, _ = env.step(int(rng.integers(env.action_space.n)))
        if term or trunc:
            env.reset()
        if t % 3 == 0:
            out.append(frame_of().copy())
    env.close()
    return out


def _plain_mask(frame: np.ndarray, colour, tolerance: float) -> np.ndarray:
    return np.abs(frame.astype(np.int32) - np.asarray(colour, np.int32)).sum(axis=-1) <= tolerance


def test_colour_masks_equal_the_summed_distance() -> None:
    rng = np.random.default_rng(1)
    frames = _frames("SpaceInvaders", 120) + [rng.integers(0, 256, (210, 160, 3), dtype=np.uint8) for _ in range(10)]
    for colour, tolerance in [((134, 134, 29), 10.0), ((142, 142, 142), 0.0), ((0, 0, 0), 5.5), ((255, 0, 3), 765.0),
                              ((10, 20, 30), -1.0)]:  # fmt: skip
        for f in frames:
            assert np.array_equal(colour_mask(f, colour, tolerance), _plain_mask(f, colour, tolerance))
    wide = frames[0].astype(np.int64) * 3  # not an emulator frame: the general path
    assert np.array_equal(colour_mask(wide, (134, 134, 29), 10.0), _plain_mask(wide, (134, 134, 29), 10.0))


def test_colour_codes_and_membership_equal_the_plain_ones() -> None:
    rng = np.random.default_rng(2)
    frame = rng.integers(0, 4, (50, 40, 3), dtype=np.uint8) * 85
    assert np.array_equal(rgb_codes(frame), colour_code(frame))
    codes = rgb_codes(frame)
    for k in (0, 1, 3, 16, 17, 40):
        wanted = np.unique(codes)[:k] if k <= len(np.unique(codes)) else rng.integers(0, 2**24, k)
        assert np.array_equal(in_colours(codes, wanted), np.isin(codes, wanted))
    with pytest.raises(ValueError, match=r"\(H, W, 3\) RGB"):
        rgb_codes(frame[..., :2])


def test_the_live_invaders_equal_the_cells_read_one_by_one() -> None:
    spec = get_game("SpaceInvaders")
    readouts = read_readouts(verify_folder(WEIGHTS / "SpaceInvaders", "SpaceInvaders"), spec)
    assert readouts is not None
    form = next(r for r in readouts.readouts if isinstance(r, FormationReadout))
    assert form.dying  # the shipped readout knows dying invaders: the pattern path is exercised
    for f in _frames("SpaceInvaders", 300, seed=4):
        for x0, y0 in ((20.0, 31.0), (44.0, 51.0), (2.0, 61.0)):
            assert form.live_in(x0, y0, f) == form.live(form.cells(x0, y0, f))
    # A fitter sets the patterns after construction: the fast path follows.
    cells = form.cells(44.0, 31.0, _frames("SpaceInvaders", 30, seed=5)[-1])
    lit = [key for n, key in cells if n]
    form.dying = frozenset(lit[:2])
    frame = _frames("SpaceInvaders", 30, seed=5)[-1]
    assert form.live_in(44.0, 31.0, frame) == form.live(form.cells(44.0, 31.0, frame))
    with pytest.raises(ValueError, match="a dying pattern must be 'HxW:hex'"):
        form.dying = frozenset({"10x10:zz"})


def _plain_course_objects(frame, colours, rows, cols, merge) -> list[CourseObject]:
    """The course objects as the first version found them: (H, W, K, 3) comparisons, blobs coloured
    by summed masks."""
    from moc_envs.readouts.course.slots import _CONNECT, _merge

    (r0, r1), (c0, c1) = rows, cols
    view = frame[r0 : r1 + 1, c0 : c1 + 1].astype(np.int16)
    by_colour = (view[:, :, None, :] == np.asarray(colours, np.int16)[None, None]).all(axis=-1)
    lab, _ = ndimage.label(by_colour.any(axis=-1), structure=_CONNECT)
    blobs = []
    for i, sl in enumerate(ndimage.find_objects(lab)):
        if sl is None:
            continue
        ys, xs = sl
        colour = int(by_colour[ys, xs][lab[ys, xs] == i + 1].sum(axis=0).argmax())
        blobs.append([ys.start, ys.stop - 1, xs.start, xs.stop - 1, colour])
    found = _merge(blobs, merge)
    objects = [CourseObject(t + r0, b + r0, lft + c0, rgt + c0, c) for t, b, lft, rgt, c in found]
    return sorted(objects, key=lambda o: (-o.top, o.left))


def test_course_objects_equal_the_plain_search() -> None:
    spec = get_game("Skiing")
    readouts = read_readouts(verify_folder(WEIGHTS / "Skiing", "Skiing"), spec)
    assert readouts is not None
    course = readouts.readouts[0]
    args = (course.colours, course.rows, course.cols, course.merge)
    for f in _frames("Skiing", 600, seed=6):
        assert find_course_objects(f, *args) == _plain_course_objects(f, *args)


def test_the_hud_reads_shared_places_once_and_the_same() -> None:
    """Skiing's three clock fields share one box: read once a frame, each as on its own."""
    from moc_envs.hud.fields import read_field

    reader = load_hud(WEIGHTS / "Skiing", "Skiing").fresh()
    boxes = [f.box for f in reader.fields]
    assert len(set(boxes)) < len(boxes)
    for f in _frames("Skiing", 300, seed=7):
        got = reader.read(f)
        for field in reader.fields:
            if not field.lead:
                alone = read_field(field, field.crop(f), reader.alphabet)
                assert got.get(field.label) == alone, field.label


def test_a_search_for_look_alikes_in_an_empty_mask_finds_none() -> None:
    from moc_envs.readouts.identity import find_clusters

    assert find_clusters(np.zeros((40, 30), bool), (8, 10), 3) == []
    mask = np.zeros((40, 30), bool)
    mask[5:9, 6:10] = True
    assert find_clusters(mask, (8, 10), 3) == [(6, 5)]
