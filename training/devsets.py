"""Rebuild the development sets of posed, labelled photos into build/devsets from public repositories.

Usage::

    git clone https://github.com/znj592277593/Facial-Emotion-Recognition    # CFEE
    git clone https://github.com/freelance-work/mit_psycology_dept           # WSEFEP photos
    git clone https://github.com/GreysonShafiei/GPT-4_Facial_Expressions     # WSEFEP norms
    git clone https://github.com/muxspace/facial_expressions                 # optional, in the wild
    python -m training.devsets --cfee Facial-Emotion-Recognition --wsefep mit_psycology_dept \\
        --wsefep-norms GPT-4_Facial_Expressions [--muxspace facial_expressions] [--out build/devsets]

Each argument is a clone (or a bare git directory); files are read from the pinned commit below
with ``git show``, so a clone's later commits change nothing. Every set is a folder with the
photos and a ``photos.csv`` (``file, expression, person, source_repo, source_commit,
source_path``) in FER2013's label names, the format ``training.framing_eval`` and
``training.posed`` read, and ``build/devsets/manifest.json`` records counts and SHA-256s.

The sets (models/README.md, "Development sets", gives their terms):

- ``cfee-dev`` and ``cfee-final``: the 806 photos of the seven basic expressions of CFEE (Du, Tao
  and Martinez 2014; 230 people, 1000x750), split by person: two thirds to choose with, one third
  looked at only to report the chosen model (``FINAL_SHARE``, by a hash of the person's id);
- ``wsefep``: the 131 photos of WSEFEP (Olszanowski et al. 2015) in the repository, labelled with
  the display the norms give each photo;
- ``muxspace``: crowd-labelled news and film photos, in the wild, at most ``MUXSPACE_PER_CLASS``
  per expression (a deterministic sample: the set is 91 % happy and neutral).

These photos are research material: they serve evaluation and model selection only, never
training, and they stay out of the repository (build/ is ignored by git).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import subprocess
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from training.labels import LABELS

FINAL_SHARE = 1 / 3
MUXSPACE_PER_CLASS = 300


@dataclass(frozen=True)
class Source:
    repo: str  # owner/name on GitHub
    commit: str


CFEE = Source("znj592277593/Facial-Emotion-Recognition", "80d146500311c86748850b081c706559a7827873")
WSEFEP = Source("freelance-work/mit_psycology_dept", "a5c5d4bc62a22136f53c7597074172788079a6bc")
WSEFEP_NORMS = Source("GreysonShafiei/GPT-4_Facial_Expressions", "965a2506a1332efddae8f8b9dcc80893e9112f5d")
MUXSPACE = Source("muxspace/facial_expressions", "5fb9c13afac07c55eae8d25eb6b50af344ad60c9")

CFEE_BASIC = {1: "neutral", 2: "happy", 3: "sad", 4: "angry", 5: "surprise", 6: "disgust", 7: "fear"}
WSEFEP_DISPLAYS = {"neutral": "neutral", "joy": "happy", "sadness": "sad", "anger": "angry",
                   "surprise": "surprise", "disgust": "disgust", "fear": "fear"}
MUXSPACE_EMOTIONS = {"neutral": "neutral", "happiness": "happy", "sadness": "sad", "anger": "angry",
                     "surprise": "surprise", "disgust": "disgust", "fear": "fear"}  # contempt left out
FIELDS = ("file", "expression", "person", "source_repo", "source_commit", "source_path")


class Repo:
    """Files of one pinned commit of a clone."""

    def __init__(self, path: Path, source: Source) -> None:
        self.path, self.source = Path(path), source

    def read(self, name: str) -> bytes:
        return subprocess.run(["git", "-C", str(self.path), "show", f"{self.source.commit}:{name}"],
                              check=True, capture_output=True).stdout

    def text(self, name: str) -> str:
        return self.read(name).decode("utf-8-sig")

    def names(self, folder: str) -> list[str]:
        listing = subprocess.run(["git", "-C", str(self.path), "ls-tree", "--name-only", self.source.commit,
                                  folder.rstrip("/") + "/"], check=True, capture_output=True, text=True).stdout
        return listing.split()

    def row(self, name: str, file: str, expression: str, person: str) -> dict[str, str]:
        return {"file": file, "expression": expression, "person": person, "source_repo": self.source.repo,
                "source_commit": self.source.commit, "source_path": name}


def is_final(person: str) -> bool:
    """Whether a CFEE person belongs to the part kept for the end (a fixed hash, not Python's)."""
    digest = hashlib.sha256(f"cfee-person-{person}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < FINAL_SHARE


def cfee(repo: Repo) -> dict[str, list[dict[str, str]]]:
    sets: dict[str, list[dict[str, str]]] = {"cfee-dev": [], "cfee-final": []}
    for row in csv.DictReader(io.StringIO(repo.text("data/train_set/label.csv"))):
        emotion = CFEE_BASIC.get(int(row["emotion_idx"]))
        if emotion is None:  # 8-22 are compound expressions
            continue
        name = f"data/train_set/images/{int(row['Index']):04d}.jpg"
        person = row["identity"]
        sets["cfee-final" if is_final(person) else "cfee-dev"].append(
            repo.row(name, f"{int(row['Index']):04d}.jpg", emotion, person))
    return sets


def wsefep(photos: Repo, norms: Repo) -> dict[str, list[dict[str, str]]]:
    table = norms.text("WSEFEP - norms & FACS - Arkusz1.csv")
    display = {row["Picture ID"].strip(): (row["Display"].strip().lower(), row["Displayer ID"].strip())
               for row in csv.DictReader(io.StringIO(table))}
    rows = []
    for name in photos.names("assets/faces"):
        file = name.rsplit("/", 1)[-1]
        label, person = display[file]
        rows.append(photos.row(name, file, WSEFEP_DISPLAYS[label], person))
    return {"wsefep": rows}


def muxspace(repo: Repo) -> dict[str, list[dict[str, str]]]:
    chosen: Counter[str] = Counter()
    rows = []
    listed = sorted(csv.DictReader(io.StringIO(repo.text("data/legend.csv"))),
                    key=lambda row: hashlib.sha256(row["image"].encode()).hexdigest())
    for row in listed:
        emotion = MUXSPACE_EMOTIONS.get(row["emotion"].strip().lower())
        if emotion is None or chosen[emotion] >= MUXSPACE_PER_CLASS:
            continue
        chosen[emotion] += 1
        rows.append(repo.row(f"images/{row['image']}", row["image"], emotion, row["user.id"]))
    return {"muxspace": rows}


def write(out: Path, sets: dict[str, list[dict[str, str]]], repos: dict[str, Repo]) -> dict:
    manifest = {}
    for name, rows in sets.items():
        folder = out / name
        folder.mkdir(parents=True, exist_ok=True)
        digests = {}
        for row in rows:
            data = repos[row["source_repo"]].read(row["source_path"])
            (folder / row["file"]).write_bytes(data)
            digests[row["file"]] = hashlib.sha256(data).hexdigest()
        with open(folder / "photos.csv", "w", newline="") as handle:
            writer = csv.DictWriter(handle, FIELDS)
            writer.writeheader()
            writer.writerows(rows)
        counts = Counter(row["expression"] for row in rows)
        manifest[name] = {"photos": len(rows), "people": len({row["person"] for row in rows}),
                          "per_class": {label: counts[label] for label in LABELS},
                          "sources": sorted({f"{row['source_repo']}@{row['source_commit']}" for row in rows}),
                          "sha256": digests}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m training.devsets", description=__doc__.splitlines()[0])
    parser.add_argument("--cfee", type=Path, required=True, help=f"a clone of {CFEE.repo}")
    parser.add_argument("--wsefep", type=Path, required=True, help=f"a clone of {WSEFEP.repo}")
    parser.add_argument("--wsefep-norms", type=Path, required=True, help=f"a clone of {WSEFEP_NORMS.repo}")
    parser.add_argument("--muxspace", type=Path, help=f"a clone of {MUXSPACE.repo} (optional)")
    parser.add_argument("--out", type=Path, default=Path("build/devsets"))
    args = parser.parse_args(argv)
    repos = {source.repo: Repo(path, source) for path, source in
             ((args.cfee, CFEE), (args.wsefep, WSEFEP), (args.wsefep_norms, WSEFEP_NORMS), (args.muxspace, MUXSPACE))
             if path is not None}
    sets = cfee(repos[CFEE.repo]) | wsefep(repos[WSEFEP.repo], repos[WSEFEP_NORMS.repo])
    if args.muxspace:
        sets |= muxspace(repos[MUXSPACE.repo])
    manifest = write(args.out, sets, repos)
    for name, entry in manifest.items():
        print(f"{name}: {entry['photos']} photos of {entry['people']} people, {entry['per_class']}")
    return manifest


if __name__ == "__main__":
    main()
