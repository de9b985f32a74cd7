#!/usr/bin/env python3
"""Kar-Wai's single entry point.

    python build.py test [PYTEST ARGS]   set up .venv from the pins, run the tests; then
                                         again on Blender 5.2 LTS (bpy 5.2.x, Python 3.13,
                                         in .venv-py313) when a Python 3.13 is installed
                                         (--require-py313: fail when it is not;
                                         --fast: only the tests not marked slow, on
                                         bpy 5.0.1 alone: the inner loop, about 2 min)
    python build.py demo [ARGS]          set up, run the product in Blender on the built-in example
    python build.py bench NAME [ARGS]    set up, run benchmarks/NAME.py (synth, propagate, ...)
    python build.py extension [ARGS]     set up, build the Blender extension zips into dist/
    python build.py blenders [VERSION ...]  install the linux-x64 zip into bare Blenders
                                         (bpy from PyPI, 4.2 LTS to 5.2 LTS) and run jobs

Set-up creates ``.venv`` with the interpreter running this script (Python 3.11,
which bpy 5.0.1 needs), installs ``requirements.txt`` in one resolve, runs
``pip check``, and is skipped when the pins have not changed since last time.
The Python 3.13 venv gets the same pins except those in ``PY313_PINS`` (bpy 5.2
LTS and the numpy 2 it needs) and without ``PY313_LEFT_OUT`` (torch: the CPU
wheel on this machine is cp311 only, and the torch tests skip without it).
"""

import glob
import hashlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
REQUIREMENTS = ROOT / "requirements.txt"
# bpy's wheel calls itself cp39 in its metadata although it is built for 3.11;
# pip check reports that as "not supported on this platform". Nothing else is
# tolerated.
KNOWN_PIP_CHECK_NOISE = ("bpy 5.0.1 is not supported on this platform",)

#: The second Blender the tests run on: Blender 5.2 LTS, whose bpy module (5.2.x) is
#: built for Python 3.13 and needs numpy>=2.2 (bpy 5.2.3's wheel metadata).
PY313_VENV = ROOT / ".venv-py313"
PY313_PINS = {"bpy": "5.2.3", "numpy": "2.3.5"}
PY313_LEFT_OUT = ("torch",)


def venv_python(venv=VENV):
    if os.name == "nt":
        return venv / "Scripts" / "python.exe"
    return venv / "bin" / "python"


def run(cmd, **kwargs):
    print("+", " ".join(str(c) for c in cmd), flush=True)
    return subprocess.run([str(c) for c in cmd], **kwargs)


def setup():
    """Create or refresh .venv so that it matches requirements.txt exactly."""
    if sys.version_info[:2] != (3, 11):
        sys.exit(f"build.py: Python 3.11 is required (bpy 5.0.1 is built for it); "
                 f"this is {sys.version.split()[0]} at {sys.executable}")
    _install(sys.executable, VENV, REQUIREMENTS.read_text())


def _install(python, venv, requirements):
    """Make ``venv`` (created with ``python``) hold exactly ``requirements``, in one
    resolve; skipped when they are what was installed last time."""
    wanted = hashlib.sha256(requirements.encode()).hexdigest()
    stamp = venv / ".karwai-requirements.sha256"
    if venv_python(venv).exists() and stamp.exists() and stamp.read_text().strip() == wanted:
        return
    if not venv_python(venv).exists():
        run([python, "-m", "venv", venv], check=True)
    py = venv_python(venv)
    pinned = venv / "requirements.txt"
    pinned.write_text(requirements)
    run([py, "-m", "pip", "install", "--quiet", "--upgrade", "pip"], check=True)
    # One resolve for everything: installing numba or opencv on its own later
    # would silently pull another numpy than the one bpy needs.
    run([py, "-m", "pip", "install", "--quiet", "-r", pinned], check=True)
    check = run([py, "-m", "pip", "check"], capture_output=True, text=True)
    problems = [line for line in (check.stdout + check.stderr).splitlines()
                if line.strip() and not _pip_check_noise(line)
                and not line.startswith("No broken requirements")]
    if problems:
        sys.exit("build.py: pip check found conflicts:\n" + "\n".join(problems))
    stamp.write_text(wanted + "\n")


def _pip_check_noise(line):
    # bpy's wheels call themselves cp39 (5.0.1) or similar in their metadata although
    # they are built for one Python; pip check reports that, and nothing else is tolerated.
    return line.strip() in KNOWN_PIP_CHECK_NOISE or re.fullmatch(
        r"bpy [\d.]+ is not supported on this platform", line.strip()) is not None


def py313_requirements():
    """requirements.txt with ``PY313_PINS`` swapped in and ``PY313_LEFT_OUT`` dropped."""
    lines, seen = [], set()
    for line in REQUIREMENTS.read_text().splitlines():
        match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*==", line)
        name = match.group(1).lower() if match else None
        if name in PY313_LEFT_OUT:
            continue
        if name in PY313_PINS:
            line, _ = f"{name}=={PY313_PINS[name]}", seen.add(name)
        lines.append(line)
    missing = set(PY313_PINS) - seen
    if missing:
        sys.exit(f"build.py: requirements.txt pins none of {', '.join(sorted(missing))}")
    return "\n".join(lines) + "\n"


def find_python313():
    """A Python 3.13 interpreter: ``python3.13`` on PATH, else pyenv's; None if none runs.

    pyenv's ``python3.13`` shim refuses while another version is pyenv's global, so
    each candidate is asked for its version instead of being trusted by name.
    """
    root = os.environ.get("PYENV_ROOT") or str(Path.home() / ".pyenv")
    candidates = [shutil.which("python3.13")]
    candidates += sorted(glob.glob(os.path.join(root, "versions", "3.13*", "bin", "python3.13")),
                         reverse=True)
    for candidate in filter(None, candidates):
        try:
            out = subprocess.run([candidate, "-c", "import sys; print(sys.version_info[:2])"],
                                 capture_output=True, text=True, timeout=60)
        except OSError:
            continue
        if out.returncode == 0 and out.stdout.strip() == "(3, 13)":
            return candidate
    return None


def in_venv(args, venv=VENV):
    """Run ``python ARGS`` inside the venv from the repository root; return its exit code."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return run([venv_python(venv), *args], cwd=ROOT, env=env).returncode


def cmd_test(args):
    """The tests on bpy 5.0.1 (Python 3.11), then on bpy 5.2 LTS (Python 3.13)."""
    require_py313 = "--require-py313" in args
    fast = "--fast" in args
    args = [a for a in args if a not in ("--require-py313", "--fast")]
    setup()
    if fast:
        return in_venv(["-m", "pytest", "-m", "not slow", *args])
    code = in_venv(["-m", "pytest", *args])
    python313 = find_python313()
    if python313 is None:
        message = ("build.py: no Python 3.13 found (python3.13 on PATH, or pyenv's), so the "
                   "tests did not run on Blender 5.2 LTS (bpy 5.2.x needs Python 3.13)")
        if require_py313:
            print(message, file=sys.stderr)
            return code or 1
        print(message + "; install Python 3.13 to run them there too", file=sys.stderr)
        return code
    _install(python313, PY313_VENV, py313_requirements())
    print(f"build.py: the same tests on bpy {PY313_PINS['bpy']} (Python 3.13)", flush=True)
    code313 = in_venv(["-m", "pytest", *args], venv=PY313_VENV)
    return code or code313


def cmd_demo(args):
    import time

    t0 = time.perf_counter()
    setup()
    seconds = time.perf_counter() - t0
    return in_venv(["-m", "tools.demo", f"--setup-seconds={seconds:.1f}", *args])


def cmd_bench(args):
    if not args:
        names = sorted({p.stem for p in (ROOT / "benchmarks").glob("*.py") if p.stem not in ("common", "cases", "__init__")}
                       | {"fuzz"})
        sys.exit("usage: python build.py bench NAME [ARGS]; NAME is one of: " + ", ".join(names))
    name, rest = args[0], args[1:]
    script = ROOT / "benchmarks" / f"{name.replace('-', '_')}.py"  # bench neural-video
    if name == "fuzz":  # the fuzz harness is test code (tests/fuzzing.py), run like a benchmark
        script = ROOT / "tests" / "fuzzing.py"
    if not script.exists():
        sys.exit(f"build.py: no benchmark named {name!r} (looked for {script})")
    setup()
    return in_venv([script, *rest])


def cmd_extension(args):
    setup()
    return in_venv(["-m", "tools.extension", *args])


def cmd_blenders(args):
    setup()
    return in_venv(["-m", "tools.blender_matrix", *args])


COMMANDS = {"test": cmd_test, "demo": cmd_demo, "bench": cmd_bench, "extension": cmd_extension,
            "blenders": cmd_blenders}


def main(argv):
    if not argv or argv[0] not in COMMANDS:
        print(__doc__.strip())
        return 2
    return COMMANDS[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
