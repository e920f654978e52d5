"""Keeping each detected object in the same observation slot from step to step."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment

from moc_envs.games import GameSpec
from moc_envs.perception.detection import Detection

__all__ = ["SlotTracker", "check_coast"]

_FREE = -1

_FEW_PLACED = 4
"""Up to this many objects a step, :meth:`SlotTracker._store` writes them one by one (cheaper
than its array path there)."""


def check_coast(coast: object, max_age: int = 30) -> None:
    """Refuse a ``coast`` that is not an int in ``0 .. max_age`` steps."""
    if isinstance(coast, bool) or not isinstance(coast, int | np.integer):
        raise TypeError(f"coast must be an int number of steps, got {type(coast).__name__} {coast!r}")
    if not 0 <= coast <= max_age:
        raise ValueError(f"coast must be in 0..max_age={max_age} steps, got {coast}")


class SlotTracker:
    """Assigns detections to stable per-category slots (Hungarian matching on position).

    Each category owns the slot range ``spec.slot_ranges[category]``. Every step
    the detections of a category are matched to that category's remembered slots
    by the distance between each detection's centre and the slot's predicted
    centre (last centre plus velocity times the steps since it was seen), so two
    objects that cross keep their slots. A slot whose object is not seen keeps
    its memory for ``max_age`` steps, so an object that blinks out and comes back
    near where it was expected gets its old slot back. Pairs further apart than
    ``max_distance`` pixels are never matched; new objects take a free slot, or
    else the slot whose memory is oldest. Detections of categories outside the
    spec, or beyond a category's slot count, get ``slot = -1``.

    ``coast`` (steps, default 0) lets an observation keep a missed object for up to that many
    steps at its predicted box (:meth:`shown`): a detector that drops a fast ball on one frame
    then does not blank its slot. Detections, ``info["objects"]`` and labels are unaffected.

    Slots are global row indexes of the observation, ``0 .. spec.n_slots - 1``.
    """

    def __init__(
        self, spec: GameSpec, max_distance: float = 40.0, max_age: int = 30, coast: int = 0
    ) -> None:
        if max_distance <= 0:
            raise ValueError(f"max_distance must be > 0 pixels, got {max_distance}")
        if max_age < 0:
            raise ValueError(f"max_age must be >= 0 steps, got {max_age}")
        check_coast(coast, max_age)
        self.spec = spec
        self.max_distance = float(max_distance)
        self.max_age = int(max_age)
        self.coast = int(coast)
        self._ranges = spec.slot_ranges
        n = spec.n_slots
        self.boxes = np.zeros((n, 4), dtype=np.float64)
        """Last box (x, y, w, h) of every slot, frame pixels."""
        self.velocity = np.zeros((n, 2), dtype=np.float64)
        """Centre displacement per step (dx, dy) of every slot, frame pixels."""
        self.present = np.zeros(n, dtype=bool)
        """Whether the slot's object was detected in the latest step."""
        self.age = np.full(n, _FREE, dtype=np.int64)
        """Steps since each slot's object was last seen; -1 for a free slot."""

    def shown(self) -> tuple[np.ndarray, np.ndarray]:
        """Which slots an observation shows and their boxes: (n_slots,) bool, (n_slots, 4).

        The slots detected this step at their boxes, plus those missed for at most ``coast``
        steps at the box their velocity predicts (last centre + velocity x steps missed).
        """
        coasting = (self.age > 0) & (self.age <= self.coast)
        boxes = self.boxes.copy()
        boxes[coasting, :2] += self.velocity[coasting] * self.age[coasting, None]
        return self.present | coasting, boxes

    def reset(self) -> None:
        """Forget every slot (call at episode start)."""
        self.boxes[:] = 0.0
        self.velocity[:] = 0.0
        self.present[:] = False
        self.age[:] = _FREE

    def update(self, detections: Sequence[Detection]) -> list[Detection]:
        """Track one step's detections; return them (same order) with ``slot`` set."""
        slots = [_FREE] * len(detections)
        seen = np.zeros(self.spec.n_slots, dtype=bool)
        by_cat: dict[str, list[int]] = {}
        for i, det in enumerate(detections):
            if det.category in self._ranges:
                by_cat.setdefault(det.category, []).append(i)
        placed: list[tuple[int, int]] = []
        for category, idx in by_cat.items():
            placed += self._assign(detections, idx, self._ranges[category], slots, seen)
        self._store(detections, placed)
        self._age_unseen(seen)
        self.present = seen
        # A new record per detection (Detection is frozen); the constructor, not
        # dataclasses.replace, which costs several times as much on this per-step path.
        return [
            d if s == d.slot else Detection(d.category, d.x, d.y, d.w, d.h, d.score, s, d.z_what)
            for d, s in zip(detections, slots, strict=True)
        ]

    def _assign(
        self,
        detections: Sequence[Detection],
        idx: list[int],
        rng: range,
        slots: list[int],
        seen: np.ndarray,
    ) -> list[tuple[int, int]]:
        """Match one category's detections ``idx`` to its slots ``rng``; mark them in ``slots`` and
        ``seen`` and return the (detection, slot) pairs, whose boxes :meth:`_store` writes."""
        # The category's slots are only this category's: their ages read once stay right for
        # the whole call (matched slots become seen, which the spare list below leaves out).
        ages = dict(zip(rng, self.age[rng.start : rng.stop].tolist(), strict=True))
        known = [s for s in rng if ages[s] != _FREE]
        unmatched = list(range(len(idx)))
        placed: list[tuple[int, int]] = []

        def place(r: int, slot: int) -> None:
            seen[slot] = True
            slots[idx[r]] = slot
            placed.append((idx[r], slot))

        if len(known) == 1 and len(idx) == 1:
            # One remembered slot, one detection: the assignment is that pair; the same float
            # arithmetic as the matrix below (centre minus prediction, then its norm).
            k, det = known[0], detections[idx[0]]
            bx, by, bw, bh = self.boxes[k].tolist()
            vx, vy = self.velocity[k].tolist()
            steps = ages[k] + 1
            cx, cy = det.center
            dx, dy = cx - (bx + bw / 2.0 + vx * steps), cy - (by + bh / 2.0 + vy * steps)
            if math.sqrt(dx * dx + dy * dy) <= self.max_distance:
                place(0, k)
                return placed
        elif known:
            k = np.array(known)
            centres = np.array([detections[i].center for i in idx], dtype=np.float64)
            last = self.boxes[k, :2] + self.boxes[k, 2:] / 2.0
            pred = last + self.velocity[k] * (self.age[k, None] + 1)
            cost = np.linalg.norm(centres[:, None, :] - pred[None, :, :], axis=2)
            rows, cols = linear_sum_assignment(np.where(cost > self.max_distance, 1e9, cost))
            for r, c in zip(rows.tolist(), cols.tolist(), strict=True):
                if cost[r, c] <= self.max_distance:
                    place(r, known[c])
                    unmatched.remove(r)
        if not unmatched:
            return placed
        # New objects: free slots first, then the slots whose memory is oldest.
        free = [s for s in rng if ages[s] == _FREE]
        stale = sorted((s for s in rng if ages[s] != _FREE and not seen[s]), key=lambda s: -ages[s])
        spare = free + stale
        order = sorted(unmatched, key=lambda r: -detections[idx[r]].score)
        for r, s in zip(order, spare, strict=False):
            self.age[s] = _FREE  # a new object: no velocity from the slot's old one
            place(r, s)
        return placed

    def _store(self, detections: Sequence[Detection], placed: list[tuple[int, int]]) -> None:
        """Write the placed detections' boxes into their slots: velocity = centre moved per step
        since the slot was last seen (0 for a free slot), age 0. The slots are distinct."""
        if len(placed) <= _FEW_PLACED:
            for i, slot in placed:
                det, age = detections[i], int(self.age[slot])
                if age == _FREE:
                    self.velocity[slot] = 0.0
                else:
                    bx, by, bw, bh = self.boxes[slot].tolist()
                    self.velocity[slot] = (
                        ((det.x + det.w / 2.0) - (bx + bw / 2.0)) / (age + 1),
                        ((det.y + det.h / 2.0) - (by + bh / 2.0)) / (age + 1),
                    )
                self.boxes[slot] = (det.x, det.y, det.w, det.h)
                self.age[slot] = 0
            return
        # Many objects (SpaceInvaders' formation): the same float64 arithmetic on arrays.
        rows = np.array([slot for _, slot in placed])
        new = np.array([(d.x, d.y, d.w, d.h) for d in (detections[i] for i, _ in placed)], dtype=np.float64)
        age = self.age[rows]
        old = self.boxes[rows]
        free = age == _FREE
        steps = np.where(free, 1, age + 1)[:, None]
        velocity = ((new[:, :2] + new[:, 2:] / 2.0) - (old[:, :2] + old[:, 2:] / 2.0)) / steps
        velocity[free] = 0.0
        self.velocity[rows] = velocity
        self.boxes[rows] = new
        self.age[rows] = 0

    def _age_unseen(self, seen: np.ndarray) -> None:
        unseen = ~seen & (self.age != _FREE)
        self.age[unseen] += 1
        expired = unseen & (self.age > self.max_age)
        self.age[expired] = _FREE
        self.velocity[expired] = 0.0
