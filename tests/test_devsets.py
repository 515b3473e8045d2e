"""Development sets: rebuilt from a pinned commit of a real git clone, split by person, labels mapped."""

from __future__ import annotations

import csv
import io
import json
import subprocess
from pathlib import Path

from PIL import Image

from training import devsets
from training.devsets import Repo, Source

PHOTO = Path(__file__).parent / "data" / "photos" / "fer_justin.jpg"


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout.strip()


def commit_all(repo: Path) -> str:
    git(repo, "add", "-A")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "-q", "-m", "files")
    return git(repo, "rev-parse", "HEAD")


def make_cfee(root: Path, people: int = 30) -> Source:
    """A repository in CFEE's layout: every person with the 7 basic and one compound expression."""
    (root / "data" / "train_set" / "images").mkdir(parents=True)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["", "Index", "identity", "emotion_idx", "emotion_cat", "type"])
    index = 0
    for person in range(100, 100 + people):
        for emotion in (*range(1, 8), 11):
            index += 1
            writer.writerow([index, index, person, emotion, "x", "simple" if emotion < 8 else "compound"])
            (root / "data" / "train_set" / "images" / f"{index:04d}.jpg").write_bytes(PHOTO.read_bytes())
    (root / "data" / "train_set" / "label.csv").write_text(out.getvalue())
    git(root, "init", "-q")
    return Source("someone/cfee", commit_all(root))


def test_cfee_keeps_the_basic_expressions_and_splits_by_person(tmp_path: Path) -> None:
    source = make_cfee(tmp_path / "cfee")
    (tmp_path / "cfee" / "data" / "train_set" / "label.csv").write_text("later commits change nothing\n")
    commit_all(tmp_path / "cfee")
    repo = Repo(tmp_path / "cfee", source)
    sets = devsets.cfee(repo)
    rows = sets["cfee-dev"] + sets["cfee-final"]
    assert len(rows) == 30 * 7  # compound expressions (8-22) left out
    assert {row["expression"] for row in rows} == set(devsets.CFEE_BASIC.values())
    dev, final = ({row["person"] for row in sets[name]} for name in ("cfee-dev", "cfee-final"))
    assert not dev & final and 3 <= len(final) <= 18  # about a third of the people, none in both
    manifest = devsets.write(tmp_path / "out", sets, {source.repo: repo})
    assert manifest["cfee-dev"]["photos"] + manifest["cfee-final"]["photos"] == 210
    with open(tmp_path / "out" / "cfee-dev" / "photos.csv", newline="") as handle:
        written = list(csv.DictReader(handle))
    assert written[0]["source_commit"] == source.commit and written[0]["expression"] in devsets.CFEE_BASIC.values()
    with Image.open(tmp_path / "out" / "cfee-dev" / written[0]["file"]) as copy, Image.open(PHOTO) as original:
        assert copy.size == original.size
    assert json.loads((tmp_path / "out" / "manifest.json").read_text())["cfee-final"]["people"] == len(final)


def test_wsefep_photos_take_the_display_their_norms_give(tmp_path: Path) -> None:
    photos, norms = tmp_path / "photos", tmp_path / "norms"
    (photos / "assets" / "faces").mkdir(parents=True)
    norms.mkdir()
    table = ["Displayer ID,Picture ID,Male/ Female,Display,Agreement (%)"]
    for i, display in enumerate(devsets.WSEFEP_DISPLAYS):
        (photos / "assets" / "faces" / f"AB_{i}.jpg").write_bytes(PHOTO.read_bytes())
        table.append(f"AB,AB_{i}.jpg,F,{display},90")
    table.append("AB,AB_absent.jpg,F,joy,90")  # a normed photo the repository lacks is no sample
    (norms / "WSEFEP - norms & FACS - Arkusz1.csv").write_text("\n".join(table) + "\n")
    for folder in (photos, norms):
        git(folder, "init", "-q")
    rows = devsets.wsefep(Repo(photos, Source("a/photos", commit_all(photos))),
                          Repo(norms, Source("a/norms", commit_all(norms))))["wsefep"]
    assert sorted(row["expression"] for row in rows) == sorted(devsets.WSEFEP_DISPLAYS.values())
    assert {row["person"] for row in rows} == {"AB"}
