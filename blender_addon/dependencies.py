"""PyTorch for the neural methods: whether it is there, and installing it on request.

The painterly filters, painted keys and propagation need only what the
extension bundles (numba, llvmlite, OpenCV, Pillow) and Blender's own numpy.
The neural style transfer and Deep Dream need PyTorch, which is too big to
bundle. Kar-Wai looks for it on Blender's Python path and in its own site
folder; when it is missing, those methods show as unavailable and the add-on's
preferences offer Install PyTorch, which runs pip in a background process:

* on Linux and Windows with an NVIDIA GPU, the CUDA build
  (``download.pytorch.org/whl/cu128``); without one, the CPU build
  (``download.pytorch.org/whl/cpu``); on macOS the standard build from PyPI,
  which uses Apple's Metal GPU;
* into ``site-packages-X.Y`` (X.Y: Blender's Python) of the add-on's own user
  folder (an extension's ``extension_path_user``; for the legacy add-on,
  ``datafiles/karwai``), never into Blender's installation; pip writes to
  ``site-packages-X.Y.partial`` first,
  which replaces the site folder only once ``import torch`` works from it;
* its output goes to ``install-torch.log`` next to the site folder; the
  progress shown is pip's ("Downloading torch-...whl", bytes so far).

Nothing here imports the engine's pixel code: pip and the check that PyTorch
imports run as :class:`engine.child.ChildProcess` children (standard library
only, loaded on its own). Only :func:`site_dir` and :func:`online_access` use
``bpy``.
"""

import importlib
import importlib.metadata
import importlib.util
import os
import platform
import shutil
import subprocess
import sys
import time

#: What pip is asked for, and the module that must then import.
TORCH_REQUIREMENT = "torch"
TORCH_MODULE = "torch"
#: PyTorch's package indexes (the CUDA one matches drivers from CUDA 12.8 on).
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
CUDA_INDEX = "https://download.pytorch.org/whl/cu128"

_ADDON_PACKAGE = __package__
_LEGACY_FOLDER = "karwai"
#: One site folder per Python: torch's compiled modules are built for one, and Blender 5.1
#: moved to Python 3.13, so settings copied from an older Blender must not bring a torch
#: that cannot load ("Copy Previous Settings" copies the extensions' user folders).
SITE_FOLDER = f"site-packages-{sys.version_info.major}.{sys.version_info.minor}"

RUNNING, VERIFYING, FINISHED, FAILED, CANCELLED = (
    "RUNNING", "VERIFYING", "FINISHED", "FAILED", "CANCELLED")

#: Lines of pip's output that say its network access failed.
_NETWORK_SIGNS = ("NewConnectionError", "Max retries exceeded", "Temporary failure in name",
                  "Name or service not known", "Network is unreachable", "ConnectTimeout",
                  "ReadTimeout", "getaddrinfo failed", "No route to host", "SSLError",
                  "ProxyError", "Connection refused")


# --------------------------------------------------------------------------------------
# where


def site_dir(create=False):
    """The add-on's own site folder (it may not exist unless ``create``)."""
    import bpy

    try:
        return bpy.utils.extension_path_user(_ADDON_PACKAGE, path=SITE_FOLDER, create=create)
    except ValueError:  # not an extension: a legacy add-on, or the source tree
        return bpy.utils.user_resource("DATAFILES", path=os.path.join(_LEGACY_FOLDER,
                                                                      SITE_FOLDER),
                                       create=create)


def online_access():
    """Whether Blender allows add-ons to go online (Preferences > System > Network)."""
    import bpy

    return bool(getattr(bpy.app, "online_access", True))


_activated = []


def activate(folder=None):
    """Put the site folder on ``sys.path`` (at the end, after Blender's own packages)
    when it exists; returns it, or None. Worker processes inherit ``sys.path``."""
    folder = folder or site_dir()
    if not folder or not os.path.isdir(folder):
        return None
    if folder not in sys.path:
        sys.path.append(folder)
        _activated.append(folder)
    importlib.invalidate_caches()
    _status_cache.clear()
    return folder


def deactivate():
    """Take back what :func:`activate` added to ``sys.path``."""
    while _activated:
        folder = _activated.pop()
        if folder in sys.path:
            sys.path.remove(folder)
    importlib.invalidate_caches()
    _status_cache.clear()


# --------------------------------------------------------------------------------------
# whether


_status_cache = {}


def torch_status():
    """``(available, text)``: whether torch can be imported, and a line saying so.

    Looks on ``sys.path`` without importing torch (which takes seconds and
    hundreds of MB of memory); an install is checked by really importing it, in
    a separate process, before it is put in place. The answer is kept for a
    second, as panels ask on every redraw.
    """
    name = TORCH_MODULE
    key = (name, tuple(sys.path), name in sys.modules)
    cached = _status_cache.get(key)
    if cached is not None and time.monotonic() - cached[0] < 1.0:
        return cached[1]
    if name in sys.modules:
        module = sys.modules[name]
        status = True, f"PyTorch {getattr(module, '__version__', '?')} is loaded"
    elif importlib.util.find_spec(name) is None:
        status = False, "PyTorch is not installed: the neural and Deep Dream methods cannot run"
    else:
        spec = importlib.util.find_spec(name)
        origin = os.path.dirname(os.path.dirname(spec.origin or ""))
        try:
            version = importlib.metadata.version(TORCH_REQUIREMENT)
        except importlib.metadata.PackageNotFoundError:
            version = "?"
        status = True, f"PyTorch {version} ({origin})"
    _status_cache.clear()
    _status_cache[key] = (time.monotonic(), status)
    return status


def torch_available():
    """Whether the neural methods can run (see :func:`torch_status`)."""
    return torch_status()[0]


# --------------------------------------------------------------------------------------
# which build


def nvidia_gpu():
    """Whether this computer has an NVIDIA GPU with its driver installed."""
    if os.path.exists("/proc/driver/nvidia/version"):
        return True
    if shutil.which("nvidia-smi"):
        return True
    if os.name == "nt":
        system32 = os.path.join(os.environ.get("SystemRoot", r"C:\Windows"), "System32")
        return os.path.exists(os.path.join(system32, "nvidia-smi.exe"))
    return False


class Plan:
    """Which PyTorch build to install, and from where."""

    def __init__(self, build, index_url, description, pip_args=()):
        self.build = build              # "cuda", "cpu" or "default"
        self.index_url = index_url      # None: pip's default index (PyPI)
        self.description = description
        self.pip_args = tuple(pip_args)  # more pip options (a proxy, --find-links, ...)

    def __repr__(self):
        return f"Plan({self.build!r}, {self.index_url!r})"


def plan(system=None, nvidia=None):
    """The build for this computer: CUDA on Linux/Windows with an NVIDIA GPU, the CPU
    build elsewhere on Linux/Windows, the standard (Metal) build on macOS."""
    system = (system or platform.system()).lower()
    if system == "darwin":
        return Plan("default", None, "the standard macOS build (uses the Apple GPU)")
    if nvidia is None:
        nvidia = nvidia_gpu()
    if nvidia:
        return Plan("cuda", CUDA_INDEX, "the CUDA build, for this computer's NVIDIA GPU "
                                        "(a download of a few GB)")
    return Plan("cpu", CPU_INDEX, "the CPU build (no NVIDIA GPU found; a download of a few "
                                  "hundred MB)")


def pip_runner(python=None):
    """The command that runs pip with Blender's Python: ``python -m pip``, or, where
    Blender's Python has no pip module, the pip wheel that ``ensurepip`` ships, run
    as it is (nothing is written into Blender's installation)."""
    python = python or sys.executable
    if importlib.util.find_spec("pip") is not None:
        return [python, "-m", "pip"], _pip_version()
    import ensurepip

    bundled = os.path.join(os.path.dirname(ensurepip.__file__), "_bundled")
    wheels = sorted(f for f in os.listdir(bundled) if f.startswith("pip-") and f.endswith(".whl"))
    if not wheels:
        raise RuntimeError("Blender's Python has no pip, and no pip wheel to run")
    version = tuple(int(p) for p in wheels[-1].split("-")[1].split(".")[:2] if p.isdigit())
    return [python, os.path.join(bundled, wheels[-1], "pip")], version


def _pip_version():
    try:
        return tuple(int(p) for p in importlib.metadata.version("pip").split(".")[:2])
    except (importlib.metadata.PackageNotFoundError, ValueError):
        return (0, 0)


def pip_command(the_plan, target, *, requirement=None, python=None):
    """The pip command line that installs ``requirement`` (default torch) into ``target``."""
    runner, version = pip_runner(python)
    command = runner + ["install", "--target", target, "--upgrade", "--only-binary=:all:",
                        "--no-input", "--disable-pip-version-check",
                        "--no-warn-script-location"]
    if version >= (24, 1):
        command += ["--progress-bar", "raw"]     # "Progress N of TOTAL" lines
    if the_plan.index_url:
        command += ["--index-url", the_plan.index_url]
    return command + list(the_plan.pip_args) + [requirement or TORCH_REQUIREMENT]


# --------------------------------------------------------------------------------------
# installing


#: Run with Blender's Python: the new folder first on the path, import, print the version.
_VERIFY = ("import importlib, sys; sys.path.insert(0, sys.argv[1]); "
           "module = importlib.import_module(sys.argv[2]); "
           "print(getattr(module, '__version__', '?'))")


class State:
    """What :meth:`Installer.poll` says."""

    def __init__(self, status, message="", factor=0.0, error="", version=""):
        self.status = status
        self.message = message
        self.factor = factor
        self.error = error
        self.version = version

    @property
    def finished(self):
        return self.status in (FINISHED, FAILED, CANCELLED)

    def describe(self):
        if self.status == FAILED:
            return self.error
        if self.status == FINISHED:
            return f"PyTorch {self.version} installed"
        return self.message


def _child(command, **kwargs):
    """A polled child process (engine.child.ChildProcess, standard library only)."""
    from .engine_import import engine_module

    return engine_module("child").ChildProcess(command, **kwargs)


class Installer:
    """pip in a background process, then ``import torch`` in another, then the swap.

    :meth:`poll` only reads the new lines of pip's log and checks whether the
    process has ended, so a UI timer can call it often.
    """

    def __init__(self, the_plan, target, *, requirement=None, module=None, python=None):
        self.plan = the_plan
        self.module = module or TORCH_MODULE
        self.target = os.path.abspath(target)
        self.partial = self.target + ".partial"
        self.log_path = os.path.join(os.path.dirname(self.target), "install-torch.log")
        self.python = python or sys.executable
        self.command = pip_command(the_plan, self.partial, requirement=requirement,
                                   python=self.python)
        self._proc = None
        self._verify = None
        self._log = None
        self._offset = 0
        self._pending = ""
        self._lines = []
        self.state = State(RUNNING, "Starting pip")
        self.started = None

    # -- life cycle -----------------------------------------------------------------

    def start(self):
        os.makedirs(os.path.dirname(self.target), exist_ok=True)
        shutil.rmtree(self.partial, ignore_errors=True)
        self._log = open(self.log_path, "w", encoding="utf-8")
        self._log.write("$ " + subprocess.list2cmdline(self.command) + "\n")
        self._log.flush()
        self._offset = self._log.tell()
        env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1", PYTHONNOUSERSITE="1",
                   PYTHONUNBUFFERED="1", PYTHONIOENCODING="utf-8")
        env.pop("PYTHONPATH", None)
        self.started = time.monotonic()
        try:
            self._proc = _child(self.command, env=env, stdout=self._log, stderr="stdout").start()
        except OSError as exc:
            self._fail(f"cannot start pip ({self.command[0]}): {exc}")
        return self

    def cancel(self):
        for proc in (self._proc, self._verify):
            if proc is not None:
                proc.kill()
        if not self.state.finished:
            self.state = State(CANCELLED, "Cancelled: nothing was installed")
            self._close()
            shutil.rmtree(self.partial, ignore_errors=True)

    def wait(self, timeout=None, interval=0.2, log=None):
        """Poll until finished (the synchronous path); ``log(text)`` on each new step of
        pip's, and every tenth of a download."""
        deadline = None if timeout is None else time.monotonic() + timeout
        said = None
        while True:
            state = self.poll()
            step = (state.status, state.describe().split(" - ")[0], int(state.factor * 10))
            if log is not None and step != said:
                said = step
                log(state.describe())
            if state.finished:
                return state
            if deadline is not None and time.monotonic() > deadline:
                self.cancel()
                self.state = State(FAILED, error=f"Installing PyTorch took over {timeout:.0f} s; "
                                                 f"stopped (log: {self.log_path})")
                return self.state
            time.sleep(interval)

    # -- polling ------------------------------------------------------------------

    def poll(self):
        if self.state.finished:
            return self.state
        self._read_log()
        if self.state.status == RUNNING and self._proc is not None:
            code = self._proc.poll()
            if code is not None:
                self._read_log()
                if code != 0:
                    self._fail(self._pip_error(code))
                else:
                    self._start_verify()
        elif self.state.status == VERIFYING:
            code = self._verify.poll()
            if code is not None:
                out, err = self._verify.communicate()
                if code != 0:
                    last = [ln for ln in (err or "").strip().splitlines() if ln.strip()]
                    self._fail("PyTorch was downloaded but does not import: "
                               + (last[-1] if last else f"exit status {code}")
                               + f" (log: {self.log_path})")
                else:
                    self._swap((out or "").strip().splitlines()[-1:] or ["?"])
        return self.state

    def _read_log(self):
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as handle:
                handle.seek(self._offset)
                chunk = handle.read()
                self._offset = handle.tell()
        except OSError:
            return
        if not chunk:
            return
        text = self._pending + chunk
        lines = text.split("\n")
        self._pending = lines.pop()
        for line in lines:
            line = line.strip()
            if line:
                self._lines.append(line)
                self._take(line)
        del self._lines[:-200]

    def _take(self, line):
        """Progress from one line of pip's output."""
        state = self.state
        if line.startswith("Progress ") and " of " in line:
            try:
                done, total = (int(v) for v in line[len("Progress "):].split(" of "))
            except ValueError:
                return
            if total > 0:
                state.factor = min(1.0, done / total)
                base = state.message.split(" - ")[0]
                state.message = f"{base} - {done / 1e6:.0f} of {total / 1e6:.0f} MB"
        elif line.startswith(("Collecting ", "Downloading ", "Installing collected packages",
                              "Using cached ", "Processing ")):
            state.factor = 0.0 if not line.startswith("Installing") else 1.0
            state.message = line if len(line) <= 90 else line[:87] + "..."

    def _pip_error(self, code):
        errors = [ln for ln in self._lines if ln.startswith("ERROR:")]
        text = " ".join(self._lines[-40:])
        where = self.plan.index_url or "pip's package index"
        if any(sign in text for sign in _NETWORK_SIGNS):
            head = f"cannot reach {where}: check the internet connection or proxy"
        elif any("No matching distribution" in ln or "Could not find a version" in ln
                 for ln in errors):
            head = ("no PyTorch build found for this Blender's Python "
                    f"({sys.version_info.major}.{sys.version_info.minor}, "
                    f"{platform.system()} {platform.machine()}) on {where}")
        elif errors:
            head = errors[-1][len("ERROR:"):].strip()
        else:
            head = f"pip exited with status {code}"
        return f"Installing PyTorch failed: {head} (log: {self.log_path})"

    def _start_verify(self):
        self.state = State(VERIFYING, "Checking that PyTorch imports", factor=1.0)
        env = dict(os.environ, PYTHONNOUSERSITE="1")
        env.pop("PYTHONPATH", None)
        try:
            self._verify = _child([self.python, "-c", _VERIFY, self.partial, self.module], env=env,
                                  stdout="capture", stderr="capture").start()
        except OSError as exc:
            self._fail(f"cannot start {self.python} to check PyTorch: {exc}")

    def _swap(self, version_lines):
        old = self.target + ".old"
        try:
            shutil.rmtree(old, ignore_errors=True)
            if os.path.exists(self.target):
                os.replace(self.target, old)
            os.replace(self.partial, self.target)
            shutil.rmtree(old, ignore_errors=True)
        except OSError as exc:
            self._fail(f"cannot put PyTorch in place at {self.target}: {exc}")
            return
        activate(self.target)
        _status_cache.clear()
        self.state = State(FINISHED, factor=1.0, version=version_lines[0])
        self._close()

    def _fail(self, message):
        self.state = State(FAILED, error=message)
        self._close()
        shutil.rmtree(self.partial, ignore_errors=True)

    def _close(self):
        if self._log is not None:
            self._log.close()
            self._log = None


# --------------------------------------------------------------------------------------
# the one running install (the preferences and the operator share it)


_current = []


def current():
    """The install that is running or ended last in this session, or None."""
    return _current[0] if _current else None


def installing():
    installer = current()
    return installer is not None and not installer.state.finished


def start_install(the_plan=None, target=None, **kwargs):
    """Start installing PyTorch (see :class:`Installer`); returns the installer."""
    if installing():
        raise RuntimeError("PyTorch is already being installed")
    installer = Installer(the_plan or plan(), target or site_dir(), **kwargs)
    _current[:] = [installer]
    return installer.start()


def unregister():
    """Stop a running install and take the site folder off ``sys.path``."""
    installer = current()
    if installer is not None and not installer.state.finished:
        installer.cancel()
    _current.clear()
    deactivate()
