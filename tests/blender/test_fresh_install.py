"""The built linux-x64 zip in a bare Blender, in a fresh process (issue 10).

A bare Blender is the bpy module, numpy and bpy's own dependencies (what Blender
ships), nothing else: no numba, OpenCV, Pillow, torch or Kar-Wai engine on the path,
an empty user folder, a new process. The environment is made from the running
interpreter's bpy (``-S`` keeps its site-packages off the path; only links to bpy,
numpy and their requirements are put on it), so the same test runs on every bpy the
suite runs on: 5.0.1 (Python 3.11) and 5.2.x (Python 3.13).
"""

import importlib.metadata
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

bpy = pytest.importorskip("bpy")

from conftest import ROOT, write_images, write_movie  # noqa: E402

pytestmark = [pytest.mark.blender, pytest.mark.slow]

CHECK = ROOT / "tools" / "fresh_install_check.py"


def _requirement_names(distribution):
    names = []
    for requirement in importlib.metadata.requires(distribution) or ():
        if ";" in requirement and "extra ==" in requirement.split(";", 1)[1]:
            continue
        names.append(re.match(r"[A-Za-z0-9._-]+", requirement).group(0))
    return names


def bare_path(folder):
    """A folder of links to bpy, numpy and everything bpy's metadata requires (closed
    over their own requirements): the modules a downloaded Blender has."""
    folder.mkdir()
    todo, seen = ["bpy", "numpy"], set()
    while todo:
        name = todo.pop()
        key = name.lower().replace("_", "-")
        if key in seen:
            continue
        seen.add(key)
        try:
            distribution = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue  # an optional dependency this environment lacks; Blender may too
        tops = {Path(str(f)).parts[0] for f in distribution.files or ()}
        for top in tops - {"..", "__pycache__"}:
            source = Path(distribution.locate_file(top))
            if source.exists() and not (folder / top).exists():
                (folder / top).symlink_to(source)
        todo += _requirement_names(name)
    return folder


def test_the_zip_installs_and_runs_in_a_bare_blender(linux_zip, tmp_path):
    media = tmp_path / "media"
    images = write_images(media / "frames", n=12, prefix="plate_")
    movie = write_movie(media / "shot.mp4", 12)
    user = tmp_path / "user"
    user.mkdir()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTHON", "NUMBA_", "BLENDER_"))}
    env.update(PYTHONPATH=str(bare_path(tmp_path / "bare")), BLENDER_USER_RESOURCES=str(user),
               PYTHONNOUSERSITE="1")
    run = subprocess.run(
        [sys.executable, "-S", str(CHECK), "--zip", str(linux_zip.zips["linux-x64"]),
         "--work", str(tmp_path / "work"), "--images", str(images), "--movie", str(movie)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    lines = [ln for ln in run.stdout.splitlines() if ln.startswith("KARWAI-CHECK ")]
    assert lines, f"no report (exit {run.returncode}):\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    report = json.loads(lines[-1].split(" ", 1)[1])
    assert report["ok"], f"{report['error']}\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    assert run.returncode == 0
    assert report["blender"].startswith(bpy.app.version_string.split()[0])
    assert report["python"] == sys.version.split()[0]
    assert set(report["strips"]) == {"seq", "clip"}
    assert {s["type"] for s in report["strips"].values()} == {"IMAGE", "MOVIE"}
    assert Path(report["site"]).is_relative_to(user)
