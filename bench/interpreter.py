"""The interpreter the bench's workers run under, and whether it holds the worker image's packages.

A worker's memory depends on what it imports, and Celery and kombu import some packages only when
they are installed (PyYAML, greenlet, psutil, pygments: a worker's peak is 4.3 MB higher when run
from the development venv, docs/benchmark.md). The worker image installs
``requirements/worker.txt`` and nothing else; ``make bench`` runs the workers under
``.venv-worker``, a venv made from that same file, so the peak RSS the floors judge is that of the
worker as shipped. ``facts`` records which it was.
"""

from __future__ import annotations

import json
import subprocess
from typing import Any

from packaging.utils import canonicalize_name

from bench import ROOT

REQUIREMENTS = ROOT / "requirements" / "worker.txt"
INSTALLER = {"pip", "setuptools", "wheel", "fer-batch"}  # the venv's own tools; fer-batch is the code under test
_LIST = ("import importlib.metadata as m, json, sys; "
         "print(json.dumps([sys.version.split()[0], [[d.metadata['Name'], d.version] for d in m.distributions()]]))")


def pinned() -> set[str]:
    """``name==version`` of every pin in the worker image's requirements file, names made canonical."""
    pins = (line.split("#")[0].strip() for line in REQUIREMENTS.read_text().splitlines())
    pairs = (pin.partition("==") for pin in pins if pin)
    return {f"{canonicalize_name(name)}=={version}" for name, _, version in pairs}


def facts(python: str) -> dict[str, Any]:
    """The interpreter's path and version, how many packages it holds, and whether those are exactly
    the worker image's (its installer's own packages aside)."""
    done = subprocess.run([python, "-c", _LIST], capture_output=True, text=True, timeout=120, check=True)
    version, found = json.loads(done.stdout)
    installed = {f"{canonicalize_name(name)}=={ver}" for name, ver in found}
    installed = {pin for pin in installed if pin.partition("==")[0] not in INSTALLER}
    image = pinned()
    return {"path": python, "python": version, "packages": len(installed), "image_packages": installed == image,
            "extra": sorted(installed - image), "missing": sorted(image - installed)}
