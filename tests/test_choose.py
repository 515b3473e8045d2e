"""training.choose: the card's rule on hand-made reports: the largest worst-case margin, within budget."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from training.choose import candidates, main


def public(labels: float, plurality: float, ms: float) -> dict:
    return {"fer2013_accuracy": labels, "plurality_agreement": plurality, "ms_per_face": ms}


def posed(right: float, neutral: float, lowest: float) -> dict:
    recall = {"fear": lowest, "happy": 0.95}
    return {"cfee-dev": {"accuracy": right, "predicted": {"neutral": neutral}, "recall": recall}}


def test_the_worst_margin_decides_and_over_budget_comes_last(tmp_path: Path) -> None:
    compared = {"balanced": public(0.665, 0.775, 1.5), "neutral lean": public(0.67, 0.80, 0.8),
                "big": public(0.70, 0.82, 2.5)}
    scored = {"balanced": {"shipped": posed(0.68, 0.18, 0.35), "margin x0.9": posed(0.69, 0.21, 0.36)},
              "neutral lean": {"shipped": posed(0.70, 0.30, 0.40)},
              "big": {"shipped": posed(0.80, 0.10, 0.60)}}
    found = candidates(compared, scored, "cfee-dev", every_framing=True)
    assert [(c["model"], c["framing"]) for c in found] == [
        ("balanced", "shipped"), ("balanced", "margin x0.9"), ("neutral lean", "shipped"), ("big", "shipped")]
    best = found[0]
    assert best["score"] == pytest.approx(0.5) and best["labels"] == pytest.approx(0.5)  # 66.5 - 66
    assert found[1]["score"] == pytest.approx(-1.0)  # 20 - 21 % neutral
    assert found[2]["score"] == pytest.approx(-10.0) and not found[-1]["eligible"]
    (tmp_path / "c.json").write_text(json.dumps(compared))
    (tmp_path / "p.json").write_text(json.dumps(scored))
    assert main([str(tmp_path / "c.json"), str(tmp_path / "p.json"), "--framings", "all"]) == found
    # The rule as amended: networks compared in the framing as shipped, unless asked for every framing.
    shipped_only = main([str(tmp_path / "c.json"), str(tmp_path / "p.json")])
    assert [(c["model"], c["framing"]) for c in shipped_only] == [
        ("balanced", "shipped"), ("neutral lean", "shipped"), ("big", "shipped")]
