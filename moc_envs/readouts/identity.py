"""The ``identity`` readout: which of several look-alike objects a box is, told by its colours.

Some games hold one RAM x/y pair per named object that the detector finds under one category:
MsPacman's four ghosts (``enemy_sue_x/y`` .. ``enemy_blinky_x/y``), each drawn in its own colour,
and the fruit, which the detector finds as a ghost-like box. This readout gives each identity's
x/y from the box whose pixels show that identity's colours:

- every identity has a set of *signature colours* (exact RGB values): colours that, in fitting play,
  were seen in boxes at that identity's RAM position and almost never elsewhere. A frame pooled
  over two emulator frames mixes colours (a ghost over the background, two ghosts stacked in the
  pen); such a mixture is a signature of every identity it was seen with, so one box may show
  several identities at once (stacked ghosts share a position);
- a box *shows* an identity when at least ``min_pixels`` of its pixels have one of its signature
  colours; each identity is read from the box that shows the most of them;
- *shared colours* are those of boxes at some identity's position that no single identity owns
  (frightened ghosts, all drawn alike). A box showing no identity but shared colours (or, with
  ``search``, such a cluster of pixels away from every box) is a look-alike: it takes the identity,
  among those drawn alike at times (``alike``) and not found this step, last read within
  ``memory``'s reach per step since then and at most its steps ago, when it is the only look-alike
  that identity could be and no other identity could be it. When two look-alikes pass close,
  which is which is unknown: their identities are forgotten (left out) until their colours show
  again. A look-alike with no identity near is left out;
- x/y = the box's top-left corner plus the fitted ``offset``, rounded to a byte;
- optionally (``search``), an identity no box shows is looked for in the frame itself: the pixels
  of its signature colours inside the play ``area``, when they gather in one sprite-sized cluster
  (``size``), give x/y as the cluster's top-left corner plus the search's own offset. This gives
  the labels of a ghost the detector missed. Boxes larger than ``size`` are then not read (one
  box over two sprites: its corner is neither's); the search reads what they hold.

Everything (colours, offset) is fitted from play with RAM as the teacher
(:mod:`trainers.readouts.fit_identity`); nothing here knows a game's palette.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from scipy import ndimage

from moc_envs.games import GameSpec
from moc_envs.perception.detection import FRAME_HEIGHT, FRAME_WIDTH, Detection
from moc_envs.readouts.base import (
    Readout,
    check_byte,
    check_keys,
    check_labels,
    check_number,
    in_colours,
    rgb_codes,
)

__all__ = ["Identity", "IdentityReadout", "Search", "box_colours", "colour_code", "find_cluster", "find_clusters"]

_IDENTITY_KEYS = ("name", "x", "y", "colours", "alike")


def colour_code(rgb: np.ndarray) -> np.ndarray:
    """One int per RGB pixel (``r << 16 | g << 8 | b``), shape ``rgb.shape[:-1]``: exact colours
    compared as numbers."""
    rgb = np.asarray(rgb)
    if rgb.shape[-1:] != (3,):
        raise ValueError(f"colours must have a last axis of 3 (RGB), got shape {rgb.shape}")
    return rgb_codes(rgb).astype(np.int64)


def box_colours(box: Detection, frame: np.ndarray) -> np.ndarray:
    """The colour codes (:func:`colour_code`) of the frame's pixels inside ``box`` (rounded to whole
    pixels, clipped to the frame), flattened; empty when the box lies outside the frame."""
    h, w = frame.shape[:2]
    x0, y0 = max(int(round(box.x)), 0), max(int(round(box.y)), 0)
    x1, y1 = min(int(round(box.x + box.w)), w), min(int(round(box.y + box.h)), h)
    if x1 <= x0 or y1 <= y0:
        return np.zeros(0, dtype=np.int64)
    return colour_code(frame[y0:y1, x0:x1]).ravel()


@dataclass(frozen=True)
class Search:
    """Where and how an identity no box shows is looked for in the frame: the play ``area``
    ``(x0, y0, x1, y1)`` (frame pixels, end exclusive), a sprite's largest ``size`` ``(w, h)``,
    and the ``offset`` from a cluster's top-left corner to the RAM x/y."""

    area: tuple[int, int, int, int]
    size: tuple[int, int]
    offset: tuple[float, float]

    def __post_init__(self) -> None:
        x0, y0, x1, y1 = (check_byte("search area", v) for v in self.area)
        if not (x0 < x1 <= FRAME_WIDTH and y0 < y1 <= FRAME_HEIGHT):
            raise ValueError(f"search area must be x0 < x1 <= {FRAME_WIDTH}, y0 < y1 <= {FRAME_HEIGHT}, got {list(self.area)}")
        for v in self.size:
            if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 64:
                raise ValueError(f"search size must be two ints 1..64, got {list(self.size)}")
        for v in self.offset:
            check_number("search offset", v)

    def to_json(self) -> dict[str, Any]:
        """The search as a JSON object."""
        return {"area": list(self.area), "size": list(self.size), "offset": list(self.offset)}

    @classmethod
    def from_json(cls, row: object) -> Search:
        """Rebuild from :meth:`to_json`'s object (ValueError on anything malformed)."""
        if not isinstance(row, Mapping) or set(row) != {"area", "size", "offset"}:
            got = sorted(row) if isinstance(row, Mapping) else type(row).__name__
            raise ValueError(f"readout 'identity': search must have the keys ['area', 'offset', 'size'], got {got}")
        area, size, offset = row["area"], row["size"], row["offset"]
        if not (isinstance(area, list) and len(area) == 4 and isinstance(size, list) and len(size) == 2
                and isinstance(offset, list) and len(offset) == 2):
            raise ValueError(f"readout 'identity': search needs area [x0, y0, x1, y1], size [w, h], offset [dx, dy], got {dict(row)!r}")
        return cls(tuple(area), tuple(size), (check_number("search offset", offset[0]), check_number("search offset", offset[1])))  # type: ignore[arg-type]


def find_cluster(mask: np.ndarray, size: tuple[int, int], min_pixels: int) -> tuple[int, int] | None:
    """Top-left corner (x, y) of the one sprite-sized cluster of ``mask``'s set pixels: those within
    ``size`` of their median; None when fewer than ``min_pixels`` are set or a fifth or more lie
    outside that cluster (two objects of those colours: which one is unknown)."""
    ys, xs = np.nonzero(mask)
    if len(xs) < min_pixels:
        return None
    mx, my = np.median(xs), np.median(ys)
    near = (np.abs(xs - mx) <= size[0]) & (np.abs(ys - my) <= size[1])
    if near.sum() < min_pixels or near.sum() < 0.8 * len(xs):
        return None
    return int(xs[near].min()), int(ys[near].min())


def find_clusters(mask: np.ndarray, size: tuple[int, int], min_pixels: int) -> list[tuple[int, int]]:
    """Top-left corners (x, y) of ``mask``'s clusters (8-connected after closing one-pixel gaps) of at
    least ``min_pixels`` set pixels and at most ``size`` (w, h) plus a pixel: each one sprite."""
    if not mask.any():  # most frames show no look-alike: skip the dilation and the labelling
        return []
    lab, _ = ndimage.label(ndimage.binary_dilation(mask), structure=np.ones((3, 3), dtype=bool))
    out = []
    for k, sl in enumerate(ndimage.find_objects(lab)):
        if sl is None:
            continue
        ys, xs = np.nonzero(mask[sl] & (lab[sl] == k + 1))
        if len(xs) < min_pixels or np.ptp(xs) > size[0] or np.ptp(ys) > size[1]:
            continue
        out.append((int(xs.min() + sl[1].start), int(ys.min() + sl[0].start)))
    return out


@dataclass(frozen=True)
class Identity:
    """One named object: its x and y labels, its signature colours (RGB triples), and whether it
    is at times drawn alike the others (in the shared colours: a slot may then keep it)."""

    name: str
    x: str
    y: str
    colours: tuple[tuple[int, int, int], ...]
    alike: bool = False

    def to_json(self) -> dict[str, Any]:
        """The identity as a JSON object."""
        return {"name": self.name, "x": self.x, "y": self.y, "colours": [list(c) for c in self.colours], "alike": self.alike}


def _check_colours(name: str, colours: object) -> tuple[tuple[int, int, int], ...]:
    if not isinstance(colours, list | tuple):
        raise ValueError(f"{name} must be a list of [r, g, b] colours, got {colours!r}")
    out = []
    for c in colours:
        if not isinstance(c, list | tuple) or len(c) != 3:
            raise ValueError(f"{name}: a colour must be [r, g, b], got {c!r}")
        out.append(tuple(check_byte(f"{name} channel", v) for v in c))
    if len(set(out)) != len(out):
        raise ValueError(f"{name}: a colour is listed twice")
    return tuple(out)  # type: ignore[return-value]


def _codes(colours: Sequence[tuple[int, int, int]]) -> np.ndarray:
    if not colours:
        return np.zeros(0, dtype=np.int64)
    return colour_code(np.array(colours, dtype=np.int64))


class IdentityReadout(Readout):
    """x/y labels per identity, each from the box that shows its colours (module docstring)."""

    kind: ClassVar[str] = "identity"

    def __init__(
        self,
        spec: GameSpec,
        categories: Sequence[str],
        identities: Sequence[Identity],
        shared: Sequence[tuple[int, int, int]] = (),
        offset: tuple[float, float] = (0.0, 0.0),
        min_pixels: int = 2,
        search: Search | None = None,
        memory: tuple[float, int] | None = None,
    ) -> None:
        """``categories``: the detector categories whose boxes may be any identity (boxes outside
        the slots count too: the detector may name an object by another category); ``shared``:
        colours of an identity's box that no one identity owns; ``offset``: RAM x/y minus the
        box's top-left corner; ``min_pixels``: pixels of a colour set a box needs to show it;
        ``search``: where to look for an identity no box shows (None: nowhere); ``memory``:
        ``(reach, steps)``, how far (px per step) and for how many steps an identity drawn alike
        the others may be followed from where it was last read (None: never)."""
        cats = tuple(categories)
        if not cats or not all(isinstance(c, str) for c in cats) or len(set(cats)) != len(cats):
            raise ValueError(f"readout 'identity': categories must be distinct names, got {list(cats)}")
        known = set(spec.category_names)
        if not set(cats) <= known:
            raise ValueError(f"readout 'identity': categories must be some of {sorted(known)}, got {list(cats)}")
        if not identities or not all(isinstance(i, Identity) for i in identities):
            raise ValueError("readout 'identity': needs at least one Identity")
        names = [i.name for i in identities]
        if len(set(names)) != len(names):
            raise ValueError(f"readout 'identity': identity names must be distinct, got {names}")
        self.labels = check_labels(spec, [lab for i in identities for lab in (i.x, i.y)], self.kind)
        if len(offset) != 2:
            raise ValueError(f"readout 'identity': offset must be [dx, dy], got {offset!r}")
        if isinstance(min_pixels, bool) or not isinstance(min_pixels, int) or min_pixels < 1:
            raise ValueError(f"readout 'identity': min_pixels must be an int >= 1, got {min_pixels!r}")
        self.categories = cats
        self.identities = tuple(identities)
        self.shared = _check_colours("shared", list(shared))
        self.offset = (check_number("offset x", offset[0]), check_number("offset y", offset[1]))
        self.min_pixels = int(min_pixels)
        if search is not None and not isinstance(search, Search):
            raise ValueError(f"readout 'identity': search must be a Search or None, got {type(search).__name__}")
        self.search = search
        self._codes = [_codes(i.colours) for i in self.identities]
        self._shared = _codes(self.shared)
        if memory is not None:
            if len(memory) != 2:
                raise ValueError(f"readout 'identity': memory must be [reach, steps], got {memory!r}")
            reach = check_number("memory reach", memory[0])
            steps = memory[1]
            if reach <= 0 or isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= 1000:
                raise ValueError(f"readout 'identity': memory needs reach > 0 and steps an int 1..1000, got {list(memory)}")
            memory = (reach, int(steps))
        self.memory = memory
        self.reset()

    @property
    def identity_codes(self) -> tuple[np.ndarray, ...]:
        """Per identity, its signature colours as codes (:func:`colour_code`)."""
        return tuple(self._codes)

    def reset(self) -> None:
        """Forget where each identity was last read."""
        self._last: dict[int, tuple[float, float, int]] = {}  # identity -> RAM x, y and step last read
        self._step = 0

    def shows(self, box: Detection, frame: np.ndarray) -> tuple[np.ndarray, int]:
        """Per identity, the box's pixels with one of its colours; and its pixels of shared colours."""
        codes = box_colours(box, frame)
        counts = np.array([int(in_colours(codes, c).sum()) for c in self._codes], dtype=np.int64)
        return counts, int(in_colours(codes, self._shared).sum())

    def _from_box(self, box: Detection) -> tuple[float, float]:
        return box.x + self.offset[0], box.y + self.offset[1]

    def read(self, objects: Sequence[Detection], frame: np.ndarray | None) -> dict[str, int]:
        """Each identity's x/y from the box showing it most, else from its colours in the frame,
        else from a look-alike near where it was last read; nothing without a frame."""
        if frame is None:
            return {}
        self._step += 1
        boxes = [d for d in objects if d.category in self.categories]
        if self.search is not None:
            # A box larger than a sprite holds two (look-alikes side by side): its corner is neither's.
            w, h = self.search.size
            boxes = [d for d in boxes if d.w <= w + 1 and d.h <= h + 1]
        best: dict[int, tuple[int, Detection]] = {}
        unnamed: list[tuple[float, float]] = []
        for d in boxes:
            counts, shared = self.shows(d, frame)
            shown = np.flatnonzero(counts >= self.min_pixels)
            for k in shown:
                if k not in best or counts[k] > best[k][0]:
                    best[int(k)] = (int(counts[k]), d)
            if not len(shown) and shared >= self.min_pixels:
                unnamed.append(self._from_box(d))
        found = {k: self._from_box(d) for k, (_, d) in best.items()}
        if self.search is not None and len(found) < len(self.identities):
            found.update(self._searched(frame, found, boxes, unnamed))
        if self.memory is not None and unnamed:
            found.update(self._remembered(found, unnamed))
        out: dict[str, int] = {}
        for k, (x, y) in found.items():
            self._last[k] = (x, y, self._step)
            ident = self.identities[k]
            out[ident.x] = int(np.clip(round(x), 0, 255))
            out[ident.y] = int(np.clip(round(y), 0, 255))
        return out

    def _searched(
        self, frame: np.ndarray, found: Mapping[int, tuple[float, float]], boxes: Sequence[Detection],
        unnamed: list[tuple[float, float]],
    ) -> dict[int, tuple[float, float]]:
        """Identities no box showed, from their colours' one cluster in the search area; clusters of
        shared colours away from every box join ``unnamed`` (look-alikes the detector missed)."""
        assert self.search is not None
        x0, y0, x1, y1 = self.search.area
        ox, oy = x0 + self.search.offset[0], y0 + self.search.offset[1]
        codes = colour_code(frame[y0:y1, x0:x1])
        more: dict[int, tuple[float, float]] = {}
        for k in range(len(self.identities)):
            if k in found or not len(self._codes[k]):
                continue
            corner = find_cluster(in_colours(codes, self._codes[k]), self.search.size, self.min_pixels)
            if corner is not None:
                more[k] = (corner[0] + ox, corner[1] + oy)
        if self.memory is not None and len(self._shared):
            taken = [self._from_box(d) for d in boxes] + list(more.values())
            for cx, cy in find_clusters(in_colours(codes, self._shared), self.search.size, self.min_pixels):
                x, y = cx + ox, cy + oy
                if all(max(abs(x - tx), abs(y - ty)) > self.search.size[0] for tx, ty in taken):
                    unnamed.append((x, y))
        return more

    def _remembered(
        self, found: Mapping[int, tuple[float, float]], unnamed: Sequence[tuple[float, float]]
    ) -> dict[int, tuple[float, float]]:
        """Look-alikes named after the identities not found that are drawn alike at times: an
        identity last read at most ``steps`` steps ago takes the one look-alike within ``reach``
        px per step since then, when no other identity could be that look-alike either. Where
        reaches overlap (two look-alikes passing close), which is which is unknown: those
        identities are forgotten, not guessed."""
        assert self.memory is not None
        reach, steps = self.memory
        ks = [
            k for k, (_, _, t) in self._last.items()
            if k not in found and self.identities[k].alike and self._step - t <= steps
        ]  # fmt: skip
        if not ks:
            return {}
        last = np.array([self._last[k][:2] for k in ks])
        limit = np.array([reach * (self._step - self._last[k][2]) for k in ks])
        pos = np.array(unnamed, dtype=np.float64)
        near = np.abs(last[:, None, :] - pos[None]).max(axis=-1) <= limit[:, None]
        out: dict[int, tuple[float, float]] = {}
        for r, k in enumerate(ks):
            cols = np.flatnonzero(near[r])
            if not len(cols):
                continue
            if len(cols) == 1 and near[:, cols[0]].sum() == 1:
                out[k] = (float(pos[cols[0], 0]), float(pos[cols[0], 1]))
            else:
                del self._last[k]
        return out

    def to_json(self) -> dict[str, Any]:
        """The JSON row of this readout."""
        return {
            "kind": self.kind, "labels": list(self.labels), "categories": list(self.categories),
            "identities": [i.to_json() for i in self.identities], "shared": [list(c) for c in self.shared],
            "offset": list(self.offset), "min_pixels": self.min_pixels,
            "search": self.search.to_json() if self.search is not None else None,
            "memory": list(self.memory) if self.memory is not None else None,
        }  # fmt: skip

    @classmethod
    def from_json(cls, row: Mapping[str, Any], spec: GameSpec) -> IdentityReadout:
        """Rebuild from :meth:`to_json`'s row (ValueError on anything malformed)."""
        check_keys(row, ("labels", "categories", "identities", "shared", "offset", "min_pixels"), ("search", "memory"))
        labels = check_labels(spec, row["labels"], cls.kind)
        cats = row["categories"]
        if not isinstance(cats, list) or not all(isinstance(c, str) for c in cats):
            raise ValueError(f"readout 'identity': categories must be a list of strings, got {cats!r}")
        rows = row["identities"]
        if not isinstance(rows, list) or not rows:
            raise ValueError(f"readout 'identity': identities must be a non-empty list, got {rows!r}")
        identities = []
        for i in rows:
            if not isinstance(i, Mapping) or set(i) != set(_IDENTITY_KEYS):
                got = sorted(i) if isinstance(i, Mapping) else type(i).__name__
                raise ValueError(f"readout 'identity': an identity must have the keys {list(_IDENTITY_KEYS)}, got {got}")
            if not all(isinstance(i[k], str) for k in ("name", "x", "y")) or not isinstance(i["alike"], bool):
                raise ValueError(f"readout 'identity': an identity's name, x and y must be strings, alike a bool, got {dict(i)!r}")
            colours = _check_colours(f"identity {i['name']!r} colours", i["colours"])
            identities.append(Identity(i["name"], i["x"], i["y"], colours, i["alike"]))
        offset = row["offset"]
        if not isinstance(offset, list) or len(offset) != 2:
            raise ValueError(f"readout 'identity': offset must be [dx, dy], got {offset!r}")
        shared = row["shared"]
        if not isinstance(shared, list):
            raise ValueError(f"readout 'identity': shared must be a list of colours, got {shared!r}")
        search = Search.from_json(row["search"]) if row.get("search") is not None else None
        memory = row.get("memory")
        if memory is not None and (not isinstance(memory, list) or len(memory) != 2):
            raise ValueError(f"readout 'identity': memory must be [reach, steps] or null, got {memory!r}")
        readout = cls(
            spec, cats, identities, _check_colours("shared", shared), (offset[0], offset[1]), row["min_pixels"],
            search, (memory[0], memory[1]) if memory is not None else None,
        )  # fmt: skip
        if readout.labels != labels:
            raise ValueError(
                f"readout 'identity': labels must be the identities' x and y in order, "
                f"expected {list(readout.labels)}, got {list(labels)}"
            )
        return readout
