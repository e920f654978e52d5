"""The ``bits`` readout (moc_envs.readouts.bits) and its fitter (trainers.readouts.fit_bits):
Breakout's brick wall read from real frames with the RAM as truth, objects hiding probes, the
JSON round trip and the refusal of malformed rows."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest

from moc_envs.errors import FrameFormatError
from moc_envs.games import get_game
from moc_envs.perception.detection import Detection
from moc_envs.readouts import READOUTS_JSON, read_readouts, readout_from_json
from moc_envs.readouts.bits import BitsReadout
from moc_envs.weights.manifest import verify_folder
from trainers.readouts.data import Step
from trainers.readouts.fit_bits import choose_probes, fit_bits, poked_play

WEIGHTS = Path(__file__).resolve().parents[1] / "weights"
BREAKOUT = get_game("Breakout")
WALL = tuple(f"block_bit_map_{i}" for i in range(30))
RAM_INDEX = {lab.name: lab.index for lab in BREAKOUT.ram_labels}


@pytest.fixture(scope="module")
def fitted() -> BitsReadout:
    """The wall readout fitted on a short natural play and a short poked one (a few seconds)."""
    natural = [[Step([], frame, ram, {}) for frame, ram in natural_play(300, seed=5)]]
    readouts = fit_bits(BREAKOUT, natural, WALL, poke_steps=1200, seed=3, log=None)
    assert len(readouts) == 1 and isinstance(readouts[0], BitsReadout)
    return readouts[0]


def natural_play(steps: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Plain random held play (no pokes): what the game itself draws."""
    from moc_envs.envs.registration import make_ale_env

    env = make_ale_env(BREAKOUT, frameskip=4, repeat_action_probability=0.25)
    rng = np.random.default_rng(seed)
    out = []
    try:
        env.reset(seed=seed)
        for t in range(steps):
            action = 1 if t % 40 == 0 else int(rng.integers(4))
            obs, _, term, trunc, _ = env.step(action)
            out.append((np.asarray(obs), env.unwrapped.ale.getRAM().copy()))
            if term or trunc:
                env.reset()
    finally:
        env.close()
    return out


def _wrong_and_given(
    readout: BitsReadout, steps: list[tuple[np.ndarray, np.ndarray]], probed_only: bool = False
) -> tuple[int, int, int]:
    """Bytes read wrong, read, and asked for; ``probed_only``: compare the probed bits alone (a
    poked wall's never-drawn bits are random, the frame cannot show them)."""
    masks = {lab: sum({1 << p[0] for p in plist}) if probed_only else 255 for lab, plist in zip(readout.labels, readout.probes, strict=True)}
    wrong = given = total = 0
    for frame, ram in steps:
        out = readout.read([], frame)
        total += len(readout.labels)
        given += len(out)
        wrong += sum(int((v ^ int(ram[RAM_INDEX[lab]])) & masks[lab] != 0) for lab, v in out.items())
    return wrong, given, total


def test_the_fitted_wall_reads_every_byte_of_unseen_walls_exactly(fitted: BitsReadout) -> None:
    # Every wall byte is read (the never-drawn bits of bytes 12..17 go to the base), probes two a bit.
    assert fitted.labels == WALL
    assert all(len({p[0] for p in plist}) * 2 == len(plist) for plist in fitted.probes)
    unseen = list(poked_play(BREAKOUT, WALL, 400, seed=99))  # other seed: walls the fit never saw
    assert len({ram[:30].tobytes() for _, ram in unseen}) > 10
    wrong, given, total = _wrong_and_given(fitted, unseen, probed_only=True)
    assert given == total and wrong == 0
    # The game's own walls, never-drawn bits included (always set in play: the base), byte for byte.
    wrong, given, total = _wrong_and_given(fitted, natural_play(400, seed=21))
    assert given == total and wrong == 0
    assert fitted.bases[12:18] == (15,) * 6


def test_the_shipped_breakout_readouts_read_real_frames_as_the_ram_says() -> None:
    folder = WEIGHTS / "Breakout"
    if not (folder / READOUTS_JSON).exists():
        pytest.skip("weights/Breakout has no readouts.json")
    readouts = read_readouts(verify_folder(folder, "Breakout"), BREAKOUT)
    assert readouts is not None
    (wall,) = [r for r in readouts.readouts if isinstance(r, BitsReadout)]
    assert set(WALL) <= set(wall.labels)
    wrong, given, total = _wrong_and_given(wall, natural_play(300, seed=11))
    assert wrong == 0 and given == total
    wrong, given, total = _wrong_and_given(wall, list(poked_play(BREAKOUT, WALL, 200, seed=12)), probed_only=True)
    assert wrong == 0 and given == total


def test_a_ball_over_a_probe_is_looked_past_and_a_hidden_bit_is_left_out(fitted: BitsReadout) -> None:
    frame, ram = next(iter(poked_play(BREAKOUT, WALL, 1, seed=7)))
    truth = int(ram[0])
    lab = WALL[0]
    assert fitted.read([], frame)[lab] == truth
    (b, y0, x0, _), (_, y1, x1, _) = fitted.probes[0][:2]
    # A gone half brick lit by the ball at one probe still reads as gone: that probe is covered.
    ball = Detection("Ball", float(x0), float(y0), 1.0, 1.0, slot=BREAKOUT.slot_ranges["Ball"][0])
    cleared = frame.copy()
    cleared[[y0, y1], [x0, x1]] = fitted.probes[0][0][3]
    expected = truth & ~(1 << b)
    assert fitted.read([ball], _with(cleared, y0, x0))[lab] == expected
    # Without the object the ball's pixel alone still cannot light the bit (the other probe is dark).
    assert fitted.read([], _with(cleared, y0, x0))[lab] == expected
    # A box over every probe of the bit: the byte is left out, the others still read.
    big = Detection("Ball", float(min(x0, x1)), float(min(y0, y1)), abs(x1 - x0) + 1.0, abs(y1 - y0) + 1.0, slot=-1)
    out = fitted.read([big], frame)
    assert lab not in out and len(out) == len(WALL) - 1
    # Boxes of categories that do not hide probes (the detector's own boxes on the wall) change nothing.
    block = Detection("Block", float(x0), float(y0), 20.0, 20.0, slot=-1)
    assert fitted.read([block], frame) == fitted.read([], frame)


def _with(frame: np.ndarray, y: int, x: int) -> np.ndarray:
    out = frame.copy()
    out[y, x] = (200, 72, 72)
    return out


def test_no_frame_no_labels_and_a_bad_frame_is_refused(fitted: BitsReadout) -> None:
    assert fitted.read([], None) == {}
    with pytest.raises(FrameFormatError, match="210, 160, 3"):
        fitted.read([], np.zeros((210, 160), dtype=np.uint8))


def test_bits_rows_round_trip_through_json(fitted: BitsReadout) -> None:
    row = json.loads(json.dumps(fitted.to_json()))
    again = readout_from_json(row, BREAKOUT)
    assert isinstance(again, BitsReadout) and again.to_json() == fitted.to_json()
    frame, _ = next(iter(poked_play(BREAKOUT, WALL, 3, seed=8)))
    assert again.read([], frame) == fitted.read([], frame)


ROW = {
    "kind": "bits", "labels": ["block_bit_map_0", "block_bit_map_12"], "bases": [0, 15],
    "probes": [[[0, 87, 128, [0, 0, 0]], [0, 92, 131, [0, 0, 0]]], [[4, 87, 80, [0, 0, 0]]]],
    "categories": ["Ball"], "margin": 1,
}  # fmt: skip


def _changed(path: tuple, value: object) -> dict:
    row = copy.deepcopy(ROW)
    node = row
    for key in path[:-1]:
        node = node[key]
    if value is KeyError:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return row


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("margin",), KeyError, "missing \\['margin'\\]"),
        (("extra",), 1, "unknown \\['extra'\\]"),
        (("labels",), ["block_bit_map_0", "nope"], "no RAM labels \\['nope'\\]"),
        (("labels",), "block_bit_map_0", "labels must be a non-empty list"),
        (("bases",), [0], "one base per label"),
        (("bases", 1), 256, "base must be an integer 0..255"),
        (("bases", 1), 16, "bits \\[4\\] are both in base"),
        (("probes",), [[[0, 87, 128, [0, 0, 0]]]], "one probe list per label"),
        (("probes", 0), [], "probes must be a non-empty list"),
        (("probes", 0, 0), [8, 87, 128, [0, 0, 0]], "probe bit must be an integer in 0..7"),
        (("probes", 0, 0), [0, 210, 128, [0, 0, 0]], "probe y must be an integer in 0..209"),
        (("probes", 0, 0), [0, 87, 128.5, [0, 0, 0]], "probe x must be an integer in 0..159"),
        (("probes", 0, 0), [True, 87, 128, [0, 0, 0]], "probe bit must be an integer"),
        (("probes", 0, 0), [0, 87, 128, [0, 0]], "background must be \\[r, g, b\\]"),
        (("probes", 0, 0), [0, 87, 128, [0, 0, 300]], "background channel must be an integer in 0..255"),
        (("probes", 0, 0), [0, 87, 128], "a probe must be \\[bit, y, x, \\[r, g, b\\]\\]"),
        (("probes", 0, 1), [0, 87, 128, [9, 9, 9]], "listed twice"),
        (("categories",), ["Alien"], "categories must be a list of some of"),
        (("categories",), ["Ball", "Ball"], "named twice"),
        (("margin",), -1, "margin must be an integer in 0..16"),
        (("margin",), 1.0, "margin must be an integer"),
    ],
)
def test_a_malformed_bits_row_is_refused_with_its_reason(path: tuple, value: object, message: str) -> None:
    assert isinstance(readout_from_json(ROW, BREAKOUT), BitsReadout)
    with pytest.raises(ValueError, match=message):
        readout_from_json(_changed(path, value), BREAKOUT)


def test_choose_probes_spreads_them_over_the_patch() -> None:
    patch = [y * 160 + x for y in range(87, 93) for x in range(128, 132)]
    assert sorted(choose_probes(np.array(patch))) == [(87, 128), (92, 131)]
    assert choose_probes(np.array([87 * 160 + 5])) == [(87, 5)]
    assert len(choose_probes(np.array(patch), count=3)) == 3
