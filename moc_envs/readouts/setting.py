"""The ``setting`` readout: a label that the game's settings fix, whatever the frame shows.

Some AtariARI bytes never change during play: MsPacman's ``ghosts_count`` (RAM 19) is 3 in ALE's
game mode 0 and 0, 1, 2 in modes 1, 2, 3, and nothing on the screen tells it. Such a byte comes
from the env's settings, not from pixels: ``values`` maps each game mode the fitting play tried
(``"default"``: the env made without ``mode=``) to the byte seen on every step of that mode
(:func:`trainers.readouts.fit_count.fit_setting`). An env in a mode the table lacks gets no label.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from moc_envs.games import GameSpec
from moc_envs.perception.detection import Detection
from moc_envs.readouts.base import Readout, check_byte, check_keys, check_labels

__all__ = ["DEFAULT_MODE", "SettingReadout", "mode_key"]

DEFAULT_MODE = "default"
"""The key of ``values`` for an env made without ``mode=`` (ALE's default mode)."""


def mode_key(game_mode: int | None) -> str:
    """The key of ``values`` for an env's game mode (None: made without ``mode=``)."""
    return DEFAULT_MODE if game_mode is None else str(int(game_mode))


class SettingReadout(Readout):
    """One label fixed by the env's game mode (module docstring)."""

    kind: ClassVar[str] = "setting"

    def __init__(self, spec: GameSpec, label: str, values: Mapping[str, int]) -> None:
        """``values``: game mode (``"default"`` or a mode number as a string) -> byte."""
        self.labels = check_labels(spec, [label], self.kind)
        if not isinstance(values, Mapping) or not values:
            raise ValueError(f"readout 'setting': values must map game modes to bytes, got {values!r}")
        for key in values:
            if not isinstance(key, str) or not (key == DEFAULT_MODE or key.isdigit()):
                raise ValueError(f"readout 'setting': a game mode is {DEFAULT_MODE!r} or a mode number, got {key!r}")
        self.label = label
        self.values = {k: check_byte(f"readout 'setting': value of mode {k}", v) for k, v in values.items()}
        self._value = self.values.get(DEFAULT_MODE)

    def configure(self, game_mode: int | None) -> None:
        """Read the byte of the env's game mode from now on (None when the table lacks it)."""
        self._value = self.values.get(mode_key(game_mode))

    def read(self, objects: Sequence[Detection], frame: np.ndarray | None) -> dict[str, int]:
        """The mode's byte, on every step."""
        return {} if self._value is None else {self.label: self._value}

    def to_json(self) -> dict[str, Any]:
        """The JSON row of this readout."""
        return {"kind": self.kind, "labels": [self.label], "values": dict(self.values)}

    @classmethod
    def from_json(cls, row: Mapping[str, Any], spec: GameSpec) -> SettingReadout:
        """Rebuild from :meth:`to_json`'s row (ValueError on anything malformed)."""
        check_keys(row, ("labels", "values"))
        labels = check_labels(spec, row["labels"], cls.kind)
        if len(labels) != 1:
            raise ValueError(f"readout 'setting' gives one label, got {list(labels)}")
        if not isinstance(row["values"], Mapping):
            raise ValueError(f"readout 'setting': values must be a JSON object, got {row['values']!r}")
        return cls(spec, labels[0], row["values"])
