"""A job's face filters as values: parsed (JSON or query text), stored, applied and explained."""

from __future__ import annotations

from typing import Any

import pytest

from worker.facefilter import PARAMETERS, FaceFilter, FilterError


def test_defaults_filter_nothing() -> None:
    default = FaceFilter.parse({})
    assert default == FaceFilter() and not default.active
    assert default.as_json() == {"min_face_size": 0, "min_score": None, "max_faces": None}
    assert default.keep([(50, 0.9), (10, 0.6)]) == ([0, 1], {})
    assert default.to_fields() == {}


@pytest.mark.parametrize(("values", "expected"), [
    ({"min_face_size": 60}, FaceFilter(min_face_size=60)),
    ({"min_face_size": "60"}, FaceFilter(min_face_size=60)),  # a query string's text
    ({"min_face_size": 12.5, "min_score": 0.75}, FaceFilter(12.5, 0.75)),
    ({"min_score": "1", "max_faces": "3"}, FaceFilter(0, 1.0, 3)),
    ({"max_faces": 2.0, "min_face_size": None}, FaceFilter(max_faces=2)),
    ({"min_score": 0}, FaceFilter(min_score=0.0)),
])
def test_good_values(values: dict[str, Any], expected: FaceFilter) -> None:
    parsed = FaceFilter.parse(values)
    assert parsed == expected and parsed.active
    assert FaceFilter.from_fields(parsed.to_fields()) == parsed  # as the job store keeps them
    assert FaceFilter.from_fields(parsed.as_json()) == parsed
    assert isinstance(parsed.min_face_size, int) == (parsed.min_face_size == int(parsed.min_face_size))


@pytest.mark.parametrize(("values", "parameter"), [
    ({"min_face_size": -3}, "min_face_size"),
    ({"min_face_size": "-3"}, "min_face_size"),
    ({"min_face_size": "big"}, "min_face_size"),
    ({"min_face_size": ""}, "min_face_size"),
    ({"min_face_size": True}, "min_face_size"),
    ({"min_face_size": [60]}, "min_face_size"),
    ({"min_face_size": "nan"}, "min_face_size"),
    ({"min_face_size": float("inf")}, "min_face_size"),
    ({"min_score": 1.5}, "min_score"),
    ({"min_score": -0.1}, "min_score"),
    ({"min_score": False}, "min_score"),
    ({"max_faces": 0}, "max_faces"),
    ({"max_faces": 2.5}, "max_faces"),
    ({"max_faces": "-1"}, "max_faces"),
    ({"max_faces": "two"}, "max_faces"),
])
def test_bad_values_name_their_parameter(values: dict[str, Any], parameter: str) -> None:
    with pytest.raises(FilterError) as caught:
        FaceFilter.parse(values)
    assert caught.value.parameter == parameter and parameter in str(caught.value)


def test_keep_counts_each_face_once_for_the_first_filter_it_fails() -> None:
    faces = [(120, 0.95), (80, 0.55), (70, 0.9), (40, 0.9), (30, 0.5), (65, 0.99)]  # (size, score), largest first
    kept, dropped = FaceFilter(min_face_size=60, min_score=0.6, max_faces=2).keep(faces)
    assert kept == [0, 2]
    assert dropped == {"min_score": 2, "min_face_size": 1, "max_faces": 1}
    assert FaceFilter(min_face_size=60, min_score=0.6, max_faces=2).explain(dropped) == \
        "2 by min_score 0.6, 1 by min_face_size 60, 1 by max_faces 2"
    assert FaceFilter(max_faces=1).keep(faces) == ([0], {"max_faces": 5})
    assert FaceFilter(min_face_size=200).keep(faces) == ([], {"min_face_size": 6})
    assert set(PARAMETERS) == set(FaceFilter().as_json())


def test_huge_values_stay_json_numbers() -> None:
    """A 300-digit whole number would not fit JSON encoders' 64-bit integers (a 500, found by fuzzing)."""
    parsed = FaceFilter.parse({"min_face_size": "4.048364682605086e+307", "max_faces": 1e300})
    assert parsed.min_face_size == 4.048364682605086e307 and isinstance(parsed.min_face_size, float)
    assert parsed.max_faces == 2**53
    assert FaceFilter.from_fields(parsed.to_fields()) == parsed
