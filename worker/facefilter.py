"""A job's face filters: which detected faces it wants answered (``min_face_size``, ``min_score``, ``max_faces``).

People drop faces whose emotion is not worth reading (tiny, doubtful) or want only the few largest
of a crowd. The API checks the values (``FaceFilter.parse``: a ``FilterError`` names the parameter,
and becomes a 400 ``invalid_parameter``), the job store keeps them with the job (``to_fields`` /
``from_fields``), and the worker applies them to each photo's faces (``FaceFilter.keep``) before
cutting them, so a filtered face costs nothing more. A photo whose faces are all filtered out is
a ``no_face`` error whose message says how many were dropped, and by which filter.

Plain Python on purpose: the API imports it and must import no numpy or vision code.

- ``min_face_size``: pixels, default 0: a face whose box's shorter side (its ``size``) is smaller goes;
- ``min_score``: 0-1, default None (each detector model's own threshold, 0.5 for the close-up model,
  0.6 for the full-range one; a lower value changes nothing, as weaker candidates are not kept);
- ``max_faces``: at least 1, default None (every face): the largest faces are kept.

They apply to detected faces only: the ``whole`` faces mode has no detector and ignores them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

PARAMETERS = ("min_face_size", "min_score", "max_faces")
HUGE = 2**53  # a max_faces above this reads as this; a min_face_size above it stays a float (JSON-safe either way)
_NUMBER = re.compile(r"\s*[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?\s*")


class FilterError(ValueError):
    """A bad filter value; ``parameter`` names it."""

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(message)
        self.parameter = parameter


@dataclass(frozen=True)
class FaceFilter:
    min_face_size: float = 0
    min_score: float | None = None
    max_faces: int | None = None

    @property
    def active(self) -> bool:
        return bool(self.min_face_size) or self.min_score is not None or self.max_faces is not None

    @classmethod
    def parse(cls, values: Mapping[str, Any]) -> FaceFilter:
        """The filters among ``values`` (a JSON body's, or a query string's text); absent or None
        is the default. Raises FilterError for a negative, non-numeric or boolean value, a
        ``min_score`` outside 0-1, a ``max_faces`` that is not a whole number of at least 1."""
        size = _number(values, "min_face_size")
        score = _number(values, "min_score")
        faces = _number(values, "max_faces")
        if size is not None and size < 0:
            raise FilterError("min_face_size", f"min_face_size must be at least 0 pixels, got {size:g}")
        if score is not None and not 0 <= score <= 1:
            raise FilterError("min_score", f"min_score must be between 0 and 1, got {score:g}")
        if faces is not None and (faces < 1 or faces != int(faces)):
            raise FilterError("max_faces", f"max_faces must be a whole number of at least 1, got {faces:g}")
        return cls(_whole(size or 0), score, None if faces is None else int(min(faces, HUGE)))

    def to_fields(self) -> dict[str, str]:
        """The filters that are set, as a job's Redis hash fields."""
        fields = {"min_face_size": repr(self.min_face_size)} if self.min_face_size else {}
        if self.min_score is not None:
            fields["min_score"] = repr(self.min_score)
        if self.max_faces is not None:
            fields["max_faces"] = str(self.max_faces)
        return fields

    @classmethod
    def from_fields(cls, data: Mapping[str, Any]) -> FaceFilter:
        """Read back ``to_fields`` (a job hash, or ``as_json``'s dict); missing fields are defaults."""
        size, score, faces = (data.get(name) for name in PARAMETERS)
        return cls(_whole(float(size)) if size is not None else 0, float(score) if score is not None else None,
                   int(faces) if faces is not None else None)

    def as_json(self) -> dict[str, Any]:
        """Every filter with its value (None: the default), as a job's JSON shows them."""
        return {"min_face_size": self.min_face_size, "min_score": self.min_score, "max_faces": self.max_faces}

    def keep(self, faces: Sequence[tuple[int, float]]) -> tuple[list[int], dict[str, int]]:
        """Which of ``faces`` (size, score), sorted largest first, pass: their positions, in order,
        and how many each filter dropped (a face counts once, for the first filter it fails, in the
        order min_score, min_face_size, max_faces)."""
        dropped = dict.fromkeys(("min_score", "min_face_size", "max_faces"), 0)
        kept = []
        for position, (size, score) in enumerate(faces):
            if self.min_score is not None and score < self.min_score:
                dropped["min_score"] += 1
            elif size < self.min_face_size:
                dropped["min_face_size"] += 1
            elif self.max_faces is not None and len(kept) >= self.max_faces:
                dropped["max_faces"] += 1
            else:
                kept.append(position)
        return kept, {name: count for name, count in dropped.items() if count}

    def explain(self, dropped: Mapping[str, int]) -> str:
        """``keep``'s counts in words: '3 by min_face_size 60, 1 by min_score 0.9'."""
        return ", ".join(f"{count} by {name} {getattr(self, name):g}" for name, count in dropped.items())


def _number(values: Mapping[str, Any], name: str) -> float | None:
    value = values.get(name)
    if value is None:
        return None
    if isinstance(value, str) and _NUMBER.fullmatch(value):
        value = float(value)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise FilterError(name, f"{name} must be a number, got {value!r}")
    return float(value)


def _whole(value: float) -> float:
    """A whole number of pixels as an int (60, not 60.0), else the value itself."""
    return int(value) if value == int(value) and value < HUGE else value
