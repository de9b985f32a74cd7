"""Build Kar-Wai's Blender extension zips (one per platform) and its legacy add-on zip.

    python build.py extension [--platform NAME ...] [--out DIR]

1. Stage the add-on in ``build/extension/karwai/``: a copy of ``blender_addon/``
   with the engine vendored inside it (``karwai/engine``), where
   ``engine_import.py`` looks first. ``blender_addon/`` itself is never changed.
2. Download the runtime dependencies as platform wheels, at the versions pinned
   in ``requirements.txt`` (``pip download --only-binary=:all: --platform ...
   --python-version X --no-deps``), for each Python of ``PYTHON_VERSIONS``, into
   ``build/wheels/<platform>/``, a cache: a platform whose wheels are all there is
   not downloaded again. One zip then serves Blender 4.2 to 5.0 (Python 3.11) and
   5.1 on (Python 3.13): Blender's installer keeps the wheels of its own Python
   (``bl_pkg``: ``_extensions_wheel_filter_for_this_system``), and OpenCV's one
   ``abi3`` wheel serves both. numpy
   is left out (Blender ships it) and so is torch (too big; the add-on's
   preferences install it on request). A platform without a wheel for every
   dependency is skipped with a message (macos-x64: numba ships no Intel-Mac
   wheel of the pinned version).
3. Copy the wheels into ``wheels/`` of the staged package and list them, and the
   platforms, in its ``blender_manifest.toml`` (the source manifest, whose
   ``version`` is the one place the version is written, is read, never edited).
4. Build with Blender's own builder, ``blender_ext.py build --split-platforms``,
   which ships inside the bpy wheel, and check every zip with its ``validate``.
5. Zip the legacy add-on: ``karwai/`` with the vendored engine, no wheels.

Run it with the venv's Python (``build.py`` does).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ADDON_DIR = ROOT / "blender_addon"
ENGINE_DIR = ROOT / "engine"
REQUIREMENTS = ROOT / "requirements.txt"
BUILD_DIR = ROOT / "build"
DIST_DIR = ROOT / "dist"

#: The dependencies bundled as wheels (their versions come from requirements.txt).
#: tqdm is not among them: only the command line imports it, never the add-on.
BUNDLED = ("numba", "llvmlite", "opencv-python-headless", "pillow")

#: The Pythons Blender embeds: 3.11 in 4.2 LTS to 5.0, 3.13 from 5.1 (5.2 LTS).
PYTHON_VERSIONS = ("3.11", "3.13")

#: Blender platform -> pip ``--platform`` tags, best first. Blender 4.2 needs
#: glibc 2.28 on Linux, so manylinux_2_28 and older tags fit.
PLATFORMS = {
    "linux-x64": ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64",
                  "manylinux2014_x86_64"),
    "windows-x64": ("win_amd64",),
    "macos-arm64": ("macosx_15_0_arm64", "macosx_14_0_arm64", "macosx_13_0_arm64",
                    "macosx_12_0_arm64", "macosx_11_0_arm64"),
    "macos-x64": ("macosx_15_0_x86_64", "macosx_14_0_x86_64", "macosx_13_0_x86_64",
                  "macosx_12_0_x86_64", "macosx_11_0_x86_64", "macosx_10_15_x86_64",
                  "macosx_10_9_x86_64"),
}

#: Left out of the staged copy: caches, and what needs more than the add-on ships.
_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyo", ".DS_Store")
#: engine/demo.py makes the built-in example from scikit-image, which is not bundled.
_ENGINE_LEFT_OUT = ("demo.py",)


class BuildError(RuntimeError):
    """The build cannot go on; the message says why."""


class DownloadError(BuildError):
    """pip could not download a wheel (no network, or no such wheel for a platform)."""


@dataclass
class Result:
    """What a build produced."""

    zips: dict          # platform -> Path of its extension zip
    legacy: Path        # the legacy add-on zip
    skipped: dict       # platform -> why it was skipped
    stage: Path         # the staged package


# --------------------------------------------------------------------------------------
# inputs


def manifest(path=ADDON_DIR / "blender_manifest.toml"):
    """The add-on's manifest, parsed."""
    with open(path, "rb") as handle:
        return tomllib.load(handle)


def version():
    """The add-on's version, from its manifest (the one place it is written)."""
    return manifest()["version"]


def canonical(name):
    """A distribution name in the form wheel file names use (``opencv_python_headless``)."""
    return re.sub(r"[-_.]+", "_", name).lower()


def pinned_versions(path=REQUIREMENTS, names=BUNDLED):
    """``{name: version}`` of the bundled dependencies, from ``name==version`` pins."""
    pins = {}
    for line in Path(path).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)\s*==\s*([^\s;]+)", line)
        if match:
            pins[canonical(match.group(1))] = match.group(2)
    missing = [n for n in names if canonical(n) not in pins]
    if missing:
        raise BuildError(f"{path}: no '==' pin for {', '.join(missing)}")
    return {n: pins[canonical(n)] for n in names}


def blender_ext_tool():
    """Path of Blender's extension command-line tool inside the installed bpy module
    (``bpy/<version>/scripts/addons_core/bl_pkg/cli/blender_ext.py``), found without
    importing bpy."""
    import importlib.util

    spec = importlib.util.find_spec("bpy")
    if spec is None or not spec.submodule_search_locations:
        raise BuildError("the bpy module is not installed; run this with .venv's Python")
    tools = sorted(Path(spec.submodule_search_locations[0]).glob(
        "*/scripts/addons_core/bl_pkg/cli/blender_ext.py"))
    if not tools:
        raise BuildError(f"Blender's extension builder is not in the bpy module at "
                         f"{spec.submodule_search_locations[0]}")
    return tools[-1]


# --------------------------------------------------------------------------------------
# wheels


def _serves(wheel_name, python):
    """Whether the wheel file ``wheel_name`` runs on CPython ``python`` ("3.13"): its
    python tag is that version's, or it is built for the stable ABI (``abi3``) of an
    older one. The rule of Blender's installer (``bl_pkg/bl_extension_ops.py``)."""
    python_tag, abi_tag = wheel_name[:-4].split("-")[-3:-1]
    wanted = tuple(int(p) for p in python.split("."))
    for tag in python_tag.split("."):
        match = re.fullmatch(r"(?:cp|py)(\d)(\d*)", tag)
        if not match:
            continue
        version = (int(match.group(1)), int(match.group(2))) if match.group(2) else (
            int(match.group(1)),)
        if version == wanted or version == wanted[:1]:
            return True
        if "abi3" in abi_tag.split(".") and len(version) == 2 and version <= wanted:
            return True
    return False


def _wheel_for(folder, name, version_, python):
    """The cached wheel of ``name==version_`` for CPython ``python`` in ``folder``, or None."""
    prefix = f"{canonical(name)}-{version_}-"
    for path in sorted(Path(folder).glob("*.whl")):
        if path.name.lower().startswith(prefix.lower()) and _serves(path.name, python):
            return path
    return None


def download_wheels(platform, *, pins=None, pythons=PYTHON_VERSIONS, cache=BUILD_DIR / "wheels",
                    log=print):
    """The wheels of the bundled dependencies for ``platform`` and each of ``pythons``,
    downloaded once.

    Returns
    -------
    list of Path
        The wheels from ``cache/<platform>/``: one per dependency and Python, a wheel
        that serves several Pythons (``abi3``) once.

    Raises
    ------
    DownloadError
        When pip cannot download them; the message holds pip's last error lines.
    """
    pins = pins or pinned_versions()
    folder = Path(cache) / platform
    folder.mkdir(parents=True, exist_ok=True)
    found = []
    for python in pythons:
        wanted = {name: _wheel_for(folder, name, v, python) for name, v in pins.items()}
        missing = [name for name, path in wanted.items() if path is None]
        if missing:
            log(f"downloading {platform} wheels for Python {python}: "
                f"{', '.join(f'{n}=={pins[n]}' for n in missing)}")
            command = [sys.executable, "-m", "pip", "download", "--only-binary=:all:", "--no-deps",
                       "--python-version", python, "--implementation", "cp",
                       "--disable-pip-version-check", "--dest", str(folder)]
            for tag in PLATFORMS[platform]:
                command += ["--platform", tag]
            command += [f"{name}=={pins[name]}" for name in missing]
            run = subprocess.run(command, capture_output=True, text=True)
            if run.returncode != 0:
                lines = [ln for ln in (run.stdout + run.stderr).splitlines() if ln.strip()]
                unmatched = re.findall(r"No matching distribution found for (\S+)", "\n".join(lines))
                if unmatched:
                    raise DownloadError(f"no {platform} wheel of {', '.join(unmatched)} for "
                                        f"Python {python} (pip download found none)")
                errors = [ln for ln in lines if "ERROR" in ln or "error" in ln.lower()] or lines
                raise DownloadError(f"pip download for {platform} (Python {python}) failed:\n  "
                                    + "\n  ".join(errors[-4:]))
            wanted = {name: _wheel_for(folder, name, v, python) for name, v in pins.items()}
            still = [name for name, path in wanted.items() if path is None]
            if still:
                raise DownloadError(f"pip download for {platform} (Python {python}) left out "
                                    f"{', '.join(still)}")
        found += [wanted[name] for name in pins if wanted[name] not in found]
    return found


# --------------------------------------------------------------------------------------
# staging


def _with_wheels(text, wheels, platforms):
    """The manifest ``text`` with top-level ``wheels`` and ``platforms`` lists added.

    They go before the first table (``[permissions]``): keys after a table header
    would belong to that table.
    """
    data = tomllib.loads(text)
    if "wheels" in data or "platforms" in data:
        raise BuildError("blender_addon/blender_manifest.toml already lists wheels or platforms; "
                         "the build adds them")
    block = ["# Added by tools/extension.py for the build.",
             "platforms = [" + ", ".join(f'"{p}"' for p in platforms) + "]",
             "wheels = ["] + [f'  "{w}",' for w in wheels] + ["]", ""]
    lines = text.splitlines()
    at = next((i for i, line in enumerate(lines) if re.match(r"\[[A-Za-z_]", line)), len(lines))
    new = "\n".join(lines[:at] + block + lines[at:]) + "\n"
    parsed = tomllib.loads(new)
    assert parsed["wheels"] == list(wheels) and parsed["platforms"] == list(platforms)
    assert {k: v for k, v in parsed.items() if k not in ("wheels", "platforms")} == data
    return new


def stage(wheels_by_platform, *, stage_root=BUILD_DIR / "extension"):
    """Stage the package: the add-on, its vendored engine, ``wheels/`` and a manifest
    listing them. Returns the package folder (``stage_root/karwai``)."""
    package = Path(stage_root) / manifest()["id"]
    if package.exists():
        shutil.rmtree(package)
    shutil.copytree(ADDON_DIR, package, ignore=_IGNORE)
    shutil.copytree(ENGINE_DIR, package / "engine",
                    ignore=shutil.ignore_patterns(*_ENGINE_LEFT_OUT, "__pycache__", "*.pyc"))
    names = []
    if wheels_by_platform:
        (package / "wheels").mkdir()
        for wheels in wheels_by_platform.values():
            for wheel in wheels:
                if not (package / "wheels" / wheel.name).exists():
                    shutil.copy2(wheel, package / "wheels" / wheel.name)
                    names.append(f"./wheels/{wheel.name}")
        text = (ADDON_DIR / "blender_manifest.toml").read_text()
        (package / "blender_manifest.toml").write_text(
            _with_wheels(text, sorted(names), list(wheels_by_platform)))
    return package


# --------------------------------------------------------------------------------------
# building


def _tool(*args):
    """Run Blender's extension tool; returns its output, raises BuildError on failure."""
    run = subprocess.run([sys.executable, str(blender_ext_tool()), *map(str, args)],
                         capture_output=True, text=True)
    output = (run.stdout + run.stderr).strip()
    if run.returncode != 0:
        raise BuildError(f"blender_ext.py {args[0]} failed:\n{output}")
    return output


def validate(path):
    """Blender's ``validate`` on a package folder or zip; raises BuildError if it fails."""
    return _tool("validate", path)


def build_legacy(package, out_dir=DIST_DIR):
    """The legacy add-on zip: ``karwai/...`` with the vendored engine, no wheels."""
    data = manifest()
    out = Path(out_dir) / f"{data['id']}-{data['version']}-legacy.zip"
    temp = out.with_name("." + out.name)
    with zipfile.ZipFile(temp, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(Path(package).rglob("*")):
            rel = path.relative_to(package)
            if not path.is_file() or rel.parts[0] == "wheels":
                continue
            if rel.as_posix() == "blender_manifest.toml":
                # The source manifest: without the wheels this zip does not carry.
                archive.write(ADDON_DIR / "blender_manifest.toml",
                              f"{data['id']}/blender_manifest.toml")
                continue
            archive.write(path, f"{data['id']}/{rel.as_posix()}")
    os.replace(temp, out)
    return out


def build(platforms=None, *, out_dir=DIST_DIR, cache=BUILD_DIR / "wheels",
          stage_root=BUILD_DIR / "extension", log=print):
    """Build the extension zips for ``platforms`` (default all) and the legacy zip.

    Raises
    ------
    DownloadError
        When no platform's wheels could be had (for example, PyPI is unreachable
        and nothing is cached).
    BuildError
        When Blender's builder or validator refuses the package.
    """
    platforms = list(platforms or PLATFORMS)
    unknown = [p for p in platforms if p not in PLATFORMS]
    if unknown:
        raise BuildError(f"unknown platform(s) {', '.join(unknown)}; known: {', '.join(PLATFORMS)}")
    pins = pinned_versions()
    wheels, skipped, errors = {}, {}, []
    for platform in platforms:
        try:
            wheels[platform] = download_wheels(platform, pins=pins, cache=cache, log=log)
        except DownloadError as exc:
            skipped[platform] = str(exc)
            errors.append(exc)
    if not wheels:
        raise DownloadError("no platform's wheels could be downloaded:\n"
                            + "\n".join(str(e) for e in errors))
    package = stage(wheels, stage_root=stage_root)
    validate(package)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    data = manifest()
    for platform in wheels:
        old = out_dir / f"{data['id']}-{data['version']}-{platform.replace('-', '_')}.zip"
        if old.exists():
            old.unlink()
    _tool("build", "--source-dir", package, "--output-dir", out_dir, "--split-platforms")
    zips = {}
    for platform in wheels:
        path = out_dir / f"{data['id']}-{data['version']}-{platform.replace('-', '_')}.zip"
        if not path.is_file():
            raise BuildError(f"Blender's builder made no zip for {platform} (looked for {path})")
        validate(path)
        zips[platform] = path
    legacy = build_legacy(package, out_dir)
    return Result(zips=zips, legacy=legacy, skipped=skipped, stage=package)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python build.py extension",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--platform", action="append", choices=sorted(PLATFORMS),
                        help="build only this platform (repeatable; default: all)")
    parser.add_argument("--out", default=str(DIST_DIR), help="output folder (default: dist/)")
    args = parser.parse_args(argv)
    try:
        result = build(args.platform, out_dir=args.out)
    except BuildError as exc:
        print(f"build.py extension: {exc}", file=sys.stderr)
        return 1
    print(f"staged package   {result.stage}")
    for platform, path in result.zips.items():
        print(f"{platform:16s} {path.resolve()}  ({path.stat().st_size / 1e6:.1f} MB, validated)")
    print(f"{'legacy add-on':16s} {result.legacy.resolve()}  "
          f"({result.legacy.stat().st_size / 1e6:.1f} MB, no wheels)")
    for platform, why in result.skipped.items():
        print(f"not built: {platform}: {why}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
