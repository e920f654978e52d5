"""A clock drawn behind its byte (Skiing's hundredths): the lead table of a number field, read over
the steps of an episode, fitted from play, refused when malformed, and the shipped Skiing reader
against RAM."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from moc_envs.games import get_game
from moc_envs.hud import GlyphAlphabet, HudField
from moc_envs.hud.fields import LeadTracker, lead_byte
from moc_envs.hud.reader import HUD_JSON, load_hud
from trainers.hud.lead import byte_value, fit_lead, score_lead

WEIGHTS = Path(__file__).resolve().parents[1] / "weights"
BOX, BG = (0, 0, 20, 10), (0, 0, 0)
# Skiing's cycle: the drawn value moves 7, 7, 6 hundredths a step; the byte leads it by 1 after two
# 7s and by 2 otherwise.
LEAD = (((6, 7), 2), ((7, 6), 2), ((7, 7), 1))


def _field(**kw) -> HudField:
    return HudField("clock_ms", "number", BOX, BG, digits=2, base=16, **kw)


def _bcd(v: int) -> int:
    return (v // 10) * 16 + v % 10


def _clock(steps: int, start: int = 0) -> tuple[list[int], list[int]]:
    """Drawn values and bytes of a clock adding 5 every 3 frames, drawn a frame late, 4 frames a step."""
    per_frame = [(5 * f) // 3 for f in range(4 * steps + 8)]
    drawn = [per_frame[4 * t + 2 + start] % 100 for t in range(steps)]
    held = [per_frame[4 * t + 3 + start] % 100 for t in range(steps)]
    return drawn, held


def test_the_lead_reads_the_byte_once_two_changes_were_seen() -> None:
    f = _field(lead=LEAD)
    drawn, held = _clock(30)
    tracker = LeadTracker(f)
    got = [tracker.step(v) for v in drawn]
    assert got[:2] == [None, None]  # two changes are needed first
    assert got[2:] == [_bcd(h) for h in held[2:]]
    tracker.step(None)  # an unreadable frame breaks the chain
    assert tracker.step(drawn[5]) is None
    tracker.reset()
    assert [tracker.step(v) for v in (10, 10, 10)][-1] is None  # a stopped clock: a pair the table lacks
    assert lead_byte(f, [93, 0, 7]) == _bcd(8)  # changes wrap round the hundred: (7, 7) -> lead 1


@pytest.mark.parametrize(
    "kw, message",
    [
        (dict(lead=LEAD, bias=1), "a lead is for number fields"),
        (dict(lead=(((7, 7), 1), ((7, 7), 2))), "lists a pair of changes twice"),
        (dict(lead=(((7, 7, 7), 1),)), r"each lead row must be \[\[change, change\], lead\]"),
        (dict(lead=(((7, 100), 1),)), r"each 0\.\.99"),
        (dict(lead=(((7, 7), -1),)), r"each 0\.\.99"),
        (dict(lead={"7,7": 1}), "lead must be a list"),
    ],
)
def test_a_malformed_lead_is_refused_with_its_reason(kw: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _field(**kw)
    with pytest.raises(ValueError, match="a lead is for number fields"):
        HudField("clock_ms", "number", BOX, BG, digits=0, lead=LEAD)  # no fixed number of digits


def _font() -> GlyphAlphabet:
    """Ten tight 5 x 3 digit glyphs: full top and bottom rows, the digit's bits inside."""
    glyphs = []
    for i in range(10):
        b = np.ones((5, 3), bool)
        b[1:4] = np.array([(i >> k) & 1 for k in range(9)], bool).reshape(3, 3)
        glyphs.append(b)
    return GlyphAlphabet.from_bitmaps(glyphs, [str(i) for i in range(10)])


def _crop(value: int, alphabet: GlyphAlphabet) -> np.ndarray:
    crop = np.zeros((10, 20, 3), np.uint8)
    for k, digit in enumerate((value // 10, value % 10)):
        crop[2:7, 1 + 5 * k : 4 + 5 * k][alphabet.bitmap(digit)] = 255
    return crop


def test_fit_lead_learns_the_cycle_and_scores_it_in_step_order() -> None:
    alphabet = _font()
    drawn, held = _clock(200, start=1)
    rows = [[v // 10, v % 10] for v in drawn]
    byte = np.array([_bcd(h) for h in held])
    resets = np.zeros(200, bool)
    resets[99] = True  # an episode boundary: no change is counted across it
    fitted = fit_lead(_field(bias=1), rows, alphabet, byte, resets)
    assert fitted is not None and fitted.bias == 0 and dict(fitted.lead) == dict(LEAD)
    assert fit_lead(HudField("clock_ms", "number", BOX, BG, digits=0), rows, alphabet, byte, resets) is None
    assert byte_value(fitted, 0x59) == 59 and byte_value(fitted, 0x5A) is None

    crops = np.stack([_crop(v, alphabet) for v in drawn])
    scored = score_lead(fitted, alphabet, crops, byte, resets)
    # Two steps without a reading at the start and after the reset; every other step right.
    assert scored["steps"] == 200 and scored["given"] == 196 and scored["right"] == 196
    crops[50] = 0  # a blank frame: nothing given there, and the chain starts again
    assert score_lead(fitted, alphabet, crops, byte, resets)["given"] == 193


def test_the_shipped_skiing_reader_reads_the_hundredths_as_ram_says() -> None:
    """weights/Skiing's hud.json, read episode by episode as the env reads it, on a seed never fitted on."""
    from moc_envs.envs.registration import make_ale_env
    from moc_envs.perception.frames import frame_source

    spec = get_game("Skiing")
    doc = json.loads((WEIGHTS / "Skiing" / HUD_JSON).read_text())
    assert any(f["label"] == "clock_ms" and f.get("lead") for f in doc["fields"])
    reader = load_hud(WEIGHTS / "Skiing", "Skiing").fresh()
    env = make_ale_env(spec, frameskip=4, repeat_action_probability=0.25)
    frame_of, ale = frame_source(env), env.unwrapped.ale
    rng = np.random.default_rng(2025)
    env.reset(seed=2025)
    got, action = [], 0
    try:
        for t in range(400):
            if t % 8 == 0:
                action = int(rng.integers(env.action_space.n))
            _, _, term, trunc, _ = env.step(action)
            if term or trunc:
                env.reset()
                reader.reset()
            read = reader.read(frame_of()).get("clock_ms")
            if read is not None:
                got.append(read == int(ale.getRAM()[106]))
    finally:
        env.close()
    assert len(got) >= 0.9 * 400 and np.mean(got) >= 0.9, (len(got), np.mean(got))


def test_each_env_reads_the_lead_over_its_own_steps() -> None:
    """gym.make and the vector env: clock_ms from the third step of an episode, equal to RAM."""
    import gymnasium as gym

    import moc_envs  # noqa: F401 - registers the MOC ids
    from moc_envs.envs.vector import MocVectorEnv

    env = gym.make("MOC/Skiing-v0", ram_labels=True, threads=1)
    try:
        _, info = env.reset(seed=3)
        seen = ["clock_ms" in info["labels"]]
        right = []
        for _ in range(12):
            _, _, _, _, info = env.step(0)
            seen.append("clock_ms" in info["labels"])
            if "clock_ms" in info["labels"]:
                right.append(info["labels"]["clock_ms"] == info["ram_labels"]["clock_ms"])
        assert seen[:2] == [False, False] and all(seen[3:]) and np.mean(right) >= 0.8
        env.reset(seed=4)  # a new episode forgets the old one's clock
        _, _, _, _, info = env.step(0)
        assert "clock_ms" not in info["labels"]
    finally:
        env.close()
    venv = MocVectorEnv("Skiing", 2, ram_labels=True, threads=1)
    try:
        venv.reset(seed=5)
        for _ in range(6):
            _, _, _, _, info = venv.step([0, 0])
        assert list(info["labels"]["clock_ms"]) == list(info["ram_labels"]["clock_ms"])
    finally:
        venv.close()
