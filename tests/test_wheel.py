"""The package installs: a wheel built from the source, installed in a fresh venv, runs ``fer-batch run``
outside the checkout with the models it ships (pyproject's package data, found by importlib.resources).

Offline: the wheel is built with the development venv's setuptools (``--no-build-isolation``) and
installed with ``--no-deps --no-index``; the new venv reaches its dependencies through a ``.pth`` file
naming the development venv's site-packages (whose editable install of fer-batch it does not load:
a ``.pth`` line only adds a folder to ``sys.path``, it runs none of that folder's ``.pth`` files).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from tests.conftest import TEST_ENV
from tests.imageserver import ImageServer
from tests.services import ROOT, free_port

pytestmark = pytest.mark.slow
SOURCES = ("pyproject.toml", "README.md", "api", "worker", "training", "models")


def run(*args: str | Path, cwd: Path, env: dict[str, str] | None = None,
        timeout: float = 240) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{args}: {done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel, built from a copy of the sources (no build/ or egg-info left in the checkout)."""
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "source"
    source.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(ROOT / name, source / name)
    run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
        "--wheel-dir", tmp / "dist", source, cwd=tmp)
    [built] = (tmp / "dist").glob("fer_batch-*.whl")
    return built


def test_the_wheel_ships_the_workers_model_files_and_no_training_checkpoints(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in ("models/__init__.py", "models/emotion_classifier.tflite", "models/emotion_classifier.json",
                 "models/face_detection.json", "models/face_detection_short_range.tflite",
                 "models/face_detection_full_range_sparse.tflite", "worker/vision/classifier.py",
                 "worker/store/jobs.py", "api/static/index.html"):
        assert name in names, name
    assert not [name for name in names if name.endswith(".keras")]


def test_an_installed_wheel_runs_fer_batch_run_from_any_directory(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", venv, cwd=tmp_path)
    python = venv / "bin" / "python"
    run(python, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", wheel, cwd=tmp_path)
    site = Path(run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])",
                    cwd=tmp_path).stdout.strip())
    (site / "fer_batch_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), **TEST_ENV,
           "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0", "FER_API_URL": "http://127.0.0.1:9"}
    where = run(python, "-c", "import api, models, worker; from worker.settings import MODELS_DIR; "
                "print(api.__file__, models.__file__, worker.__file__, MODELS_DIR)", cwd=work, env=env)
    assert all(Path(path).is_relative_to(site) for path in where.stdout.split()), where.stdout

    with ImageServer() as images:
        urls = [images.url(f"/photos/{name}") for name in ("fer_justin.jpg", "vnsst_sad.jpg")]
        urls.append(images.url("/status/404"))
        (work / "urls.txt").write_text("".join(f"{url}\n" for url in urls))
        done = run(venv / "bin" / "fer-batch", "run", "urls.txt", "--out", "out.json", cwd=work, env=env)
    assert "3 URLs: 2 ok, 1 failed" in done.stderr
    rows = json.loads((work / "out.json").read_text())
    assert [row["status"] for row in rows] == ["ok", "ok", "error"]
    assert all(row["top"] == max(row["emotions"], key=row["emotions"].get) for row in rows[:2])
