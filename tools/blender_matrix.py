"""The built extension zip in bare Blenders of several versions, from PyPI's bpy module.

    python build.py blenders [VERSION ...] [--zip ZIP]

For each Blender version (default: ``DEFAULT_VERSIONS``), a venv in
``build/blenders/bpy-VERSION`` holds ``bpy==VERSION`` and numpy, and nothing else
but what bpy itself requires: the Blender a user downloads. Its Python is the one
that Blender embeds (3.11 up to 5.0, 3.13 from 5.1; ``build.find_python313`` finds
3.13). ``tools/fresh_install_check.py`` then installs the linux-x64 zip into it with
an empty user folder, in a fresh process, and runs an image-sequence job and a movie
job through the operators. One line per version says what happened.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: 4.2 LTS (end of support mid-2026), 4.5 LTS, 5.0, 5.2 LTS.
DEFAULT_VERSIONS = ("4.2.23", "4.5.15", "5.0.1", "5.2.3")


def python_for(version):
    """The Python that Blender ``version`` embeds."""
    major, minor = (int(p) for p in version.split(".")[:2])
    return "3.13" if (major, minor) >= (5, 1) else "3.11"


def bare_venv(version, *, log=print):
    """``build/blenders/bpy-VERSION``, made once: bpy, numpy and bpy's requirements."""
    sys.path.insert(0, str(ROOT))
    import build

    folder = ROOT / "build" / "blenders" / f"bpy-{version}"
    python = folder / "bin" / "python"
    stamp = folder / ".karwai-bare"
    if stamp.exists():
        return python
    wanted = python_for(version)
    base = sys.executable if wanted == "3.11" else build.find_python313()
    if base is None:
        raise RuntimeError(f"Blender {version} needs Python {wanted}, which is not installed")
    # numpy as Blender bundles it: 1.x with Python 3.11, 2.x with 3.13 (bpy's own pins).
    numpy = "numpy<2" if wanted == "3.11" else "numpy>=2.2,<3"
    log(f"making a bare Blender {version} (Python {wanted}) in {folder}")
    subprocess.run([base, "-m", "venv", "--clear", str(folder)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", f"bpy=={version}", numpy],
                   check=True)
    stamp.write_text(version + "\n")
    return python


def linux_zip(log=print):
    from tools import extension

    path = extension.DIST_DIR / f"karwai-{extension.version()}-linux_x64.zip"
    if not path.exists():
        extension.build(["linux-x64"], log=log)
    return path


def check(version, zip_path, media, *, log=print):
    """Run the fresh-install check on Blender ``version``; returns its report (a dict)."""
    python = bare_venv(version, log=log)
    with tempfile.TemporaryDirectory(prefix=f"karwai-bpy-{version}-") as temp:
        user = Path(temp) / "user"
        user.mkdir()
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("PYTHON", "NUMBA_", "BLENDER_"))}
        env.update(BLENDER_USER_RESOURCES=str(user), PYTHONNOUSERSITE="1")
        run = subprocess.run(
            [str(python), "-s", str(ROOT / "tools" / "fresh_install_check.py"), "--zip",
             str(zip_path), "--work", str(Path(temp) / "work"), "--images", str(media["images"]),
             "--movie", str(media["movie"])],
            cwd=temp, env=env, capture_output=True, text=True, timeout=1800)
    lines = [ln for ln in run.stdout.splitlines() if ln.startswith("KARWAI-CHECK ")]
    if not lines:
        tail = (run.stdout + run.stderr).strip().splitlines()[-8:]
        return {"ok": False, "error": f"exit {run.returncode}: " + " | ".join(tail)}
    return json.loads(lines[-1].split(" ", 1)[1])


def make_media(folder, n=12):
    """An image sequence and a movie of ``n`` frames (the add-on tests' generated shot)."""
    sys.path.insert(0, str(ROOT / "tests" / "blender"))
    from conftest import write_images, write_movie

    return {"images": write_images(Path(folder) / "frames", n=n, prefix="plate_"),
            "movie": write_movie(Path(folder) / "shot.mp4", n)}


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python build.py blenders",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("versions", nargs="*", default=list(DEFAULT_VERSIONS))
    parser.add_argument("--zip", type=Path, help="the zip to install (default: build linux-x64)")
    args = parser.parse_args(argv)
    zip_path = args.zip or linux_zip()
    failed = 0
    with tempfile.TemporaryDirectory(prefix="karwai-media-") as temp:
        media = make_media(temp)
        for version in args.versions:
            report = check(version, zip_path, media)
            if report.get("ok"):
                strips = ", ".join(f"{name} ({s['type'].lower()}, {s['frames']} frames)"
                                   for name, s in report["strips"].items())
                print(f"Blender {version}: ok (bpy {report['blender']}, Python "
                      f"{report['python']}): installed {zip_path.name}, ran {strips}; "
                      f"numba and cv2 from {report['site']}", flush=True)
            else:
                failed += 1
                print(f"Blender {version}: FAILED: {report['error']}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
