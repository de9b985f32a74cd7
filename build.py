#!/usr/bin/env python3
"""Kar-Wai's single entry point.

    python build.py test [PYTEST ARGS]   set up .venv from the pins, run the tests
    python build.py demo [ARGS]          set up, run the product in Blender on the built-in example
    python build.py bench NAME [ARGS]    set up, run benchmarks/NAME.py (synth, propagate, ...)
    python build.py extension [ARGS]     set up, build the Blender extension zips into dist/

Set-up creates ``.venv`` with the interpreter running this script (Python 3.11,
which bpy 5.0.1 needs), installs ``requirements.txt`` in one resolve, runs
``pip check``, and is skipped when the pins have not changed since last time.
"""

import hashlib
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
REQUIREMENTS = ROOT / "requirements.txt"
STAMP = VENV / ".karwai-requirements.sha256"
# bpy's wheel calls itself cp39 in its metadata although it is built for 3.11;
# pip check reports that as "not supported on this platform". Nothing else is
# tolerated.
KNOWN_PIP_CHECK_NOISE = ("bpy 5.0.1 is not supported on this platform",)


def venv_python():
    if os.name == "nt":
        return VENV / "Scripts" / "python.exe"
    return VENV / "bin" / "python"


def run(cmd, **kwargs):
    print("+", " ".join(str(c) for c in cmd), flush=True)
    return subprocess.run([str(c) for c in cmd], **kwargs)


def setup():
    """Create or refresh .venv so that it matches requirements.txt exactly."""
    if sys.version_info[:2] != (3, 11):
        sys.exit(f"build.py: Python 3.11 is required (bpy 5.0.1 is built for it); "
                 f"this is {sys.version.split()[0]} at {sys.executable}")
    wanted = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()
    if venv_python().exists() and STAMP.exists() and STAMP.read_text().strip() == wanted:
        return
    if not venv_python().exists():
        run([sys.executable, "-m", "venv", VENV], check=True)
    py = venv_python()
    run([py, "-m", "pip", "install", "--quiet", "--upgrade", "pip"], check=True)
    # One resolve for everything: installing numba or opencv on its own later
    # would silently pull numpy 2, which bpy cannot load.
    run([py, "-m", "pip", "install", "--quiet", "-r", REQUIREMENTS], check=True)
    check = run([py, "-m", "pip", "check"], capture_output=True, text=True)
    problems = [line for line in (check.stdout + check.stderr).splitlines()
                if line.strip() and line.strip() not in KNOWN_PIP_CHECK_NOISE
                and not line.startswith("No broken requirements")]
    if problems:
        sys.exit("build.py: pip check found conflicts:\n" + "\n".join(problems))
    STAMP.write_text(wanted + "\n")


def in_venv(args):
    """Run ``python ARGS`` inside the venv from the repository root; return its exit code."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return run([venv_python(), *args], cwd=ROOT, env=env).returncode


def cmd_test(args):
    setup()
    return in_venv(["-m", "pytest", *args])


def cmd_demo(args):
    import time

    t0 = time.perf_counter()
    setup()
    seconds = time.perf_counter() - t0
    return in_venv(["-m", "tools.demo", f"--setup-seconds={seconds:.1f}", *args])


def cmd_bench(args):
    if not args:
        names = sorted(p.stem for p in (ROOT / "benchmarks").glob("*.py") if p.stem != "common")
        sys.exit("usage: python build.py bench NAME [ARGS]; NAME is one of: " + ", ".join(names))
    name, rest = args[0], args[1:]
    script = ROOT / "benchmarks" / f"{name.replace('-', '_')}.py"  # bench neural-video
    if not script.exists():
        sys.exit(f"build.py: no benchmark named {name!r} (looked for {script})")
    setup()
    return in_venv([script, *rest])


def cmd_extension(args):
    setup()
    return in_venv(["-m", "tools.extension", *args])


COMMANDS = {"test": cmd_test, "demo": cmd_demo, "bench": cmd_bench, "extension": cmd_extension}


def main(argv):
    if not argv or argv[0] not in COMMANDS:
        print(__doc__.strip())
        return 2
    return COMMANDS[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
