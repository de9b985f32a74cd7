"""Installing Kar-Wai: the linux-x64 extension zip built, validated, installed headless
and run from the installed copy; and Install PyTorch (dependencies.py and its operator)."""

import base64
import hashlib
import importlib
import os
import shutil
import subprocess
import sys
import time
import tomllib
import zipfile
from pathlib import Path

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")

from blender_addon import compat  # noqa: E402

from conftest import ROOT, FakeContext, FakeEvent, ui_context, write_movie  # noqa: E402

pytestmark = [pytest.mark.blender, pytest.mark.slow]

PACKAGE = "bl_ext.user_default.karwai"


# --------------------------------------------------------------------------------------
# the build


def test_manifest_gets_wheels_and_platforms_at_the_top_level():
    from tools import extension

    text = (ROOT / "blender_addon" / "blender_manifest.toml").read_text()
    new = extension._with_wheels(text, ["./wheels/a-1-cp311-cp311-win_amd64.whl"],
                                 ["windows-x64"])
    data = tomllib.loads(new)
    assert data["wheels"] == ["./wheels/a-1-cp311-cp311-win_amd64.whl"]
    assert data["platforms"] == ["windows-x64"]
    assert "wheels" not in data["permissions"] and "wheels" not in data["build"]
    assert data["version"] == extension.version() == tomllib.loads(text)["version"]
    with pytest.raises(extension.BuildError, match="already lists wheels"):
        extension._with_wheels(new, [], [])


def test_bundled_versions_are_the_pins():
    from tools import extension

    pins = extension.pinned_versions()
    assert set(pins) == {"numba", "llvmlite", "opencv-python-headless", "pillow"}
    requirements = (ROOT / "requirements.txt").read_text()
    for name, version in pins.items():
        assert f"{name}=={version}" in requirements


def test_linux_zip_is_validated_and_carries_the_engine_and_the_wheels(linux_zip):
    from tools import extension

    path = linux_zip.zips["linux-x64"]
    assert path.name == f"karwai-{extension.version()}-linux_x64.zip"
    extension.validate(path)  # Blender's own check (build() ran it too)
    with zipfile.ZipFile(path) as archive:
        names = set(archive.namelist())
        manifest = tomllib.loads(archive.read("blender_manifest.toml").decode())
    assert {"__init__.py", "engine_import.py", "dependencies.py", "operators/install_torch.py",
            "engine/__init__.py", "engine/synth/kernels.py", "engine/propagation/job.py",
            "engine/stylizers/painterly.py"} <= names
    assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)
    wheels = sorted(n for n in names if n.startswith("wheels/"))
    # numba, llvmlite and Pillow for Python 3.11 (Blender 4.2 to 5.0) and 3.13 (5.1 on);
    # OpenCV's one abi3 wheel serves both
    tags = sorted((w.split("/")[1].split("-")[0], w.split("-")[-3]) for w in wheels)
    assert tags == [("llvmlite", "cp311"), ("llvmlite", "cp313"), ("numba", "cp311"),
                    ("numba", "cp313"), ("opencv_python_headless", "cp37"),
                    ("pillow", "cp311"), ("pillow", "cp313")]
    for python in extension.PYTHON_VERSIONS:
        assert len([w for w in wheels if extension._serves(w.split("/")[1], python)]) == 4
    assert all("x86_64" in w for w in wheels)                   # this platform's only
    assert manifest["build"]["generated"]["platforms"] == ["linux-x64"]
    assert sorted(w[2:] for w in manifest["build"]["generated"]["wheels"]) == wheels
    assert manifest["version"] == extension.version()
    # numpy comes with Blender, torch on request: neither is bundled
    assert not any(("numpy" in n or "torch" in n) and n.startswith("wheels/") for n in names)


def test_legacy_zip_is_the_addon_with_its_engine(linux_zip):
    with zipfile.ZipFile(linux_zip.legacy) as archive:
        names = set(archive.namelist())
        manifest = tomllib.loads(archive.read("karwai/blender_manifest.toml").decode())
    assert {"karwai/__init__.py", "karwai/engine/__init__.py",
            "karwai/operators/install_torch.py"} <= names
    assert not any(n.startswith("karwai/wheels/") for n in names)
    assert "wheels" not in manifest and "platforms" not in manifest


_LEGACY_SCRIPT = """
import os, sys
sys.modules["numba"] = None  # as if Blender's Python had no numba
import bpy, addon_utils, cv2, numpy
tmp = sys.argv[2]
bpy.ops.wm.read_homefile(use_empty=True)
assert bpy.ops.preferences.addon_install(filepath=sys.argv[1], overwrite=True) == {"FINISHED"}
module = addon_utils.enable("karwai", default_set=True)
import importlib
engine = importlib.import_module("karwai.engine_import").get_engine()
compat = importlib.import_module("karwai.compat")
print("ADDON", os.path.dirname(module.__file__))
print("ENGINE", engine.__name__, engine.__file__)
scene = bpy.context.scene
editor = scene.sequence_editor_create()
movie = os.path.join(tmp, "shot.mp4")
writer = cv2.VideoWriter(movie, cv2.VideoWriter_fourcc(*"mp4v"), 24, (96, 64))
for i in range(8):
    writer.write(numpy.random.default_rng(i).integers(0, 255, (64, 96, 3), numpy.uint8))
writer.release()
editor.active_strip = compat.strips(editor).new_movie("shot", str(movie), 1, 1)
scene.timeline_markers.new("k", frame=2)
bpy.ops.wm.save_as_mainfile(filepath=os.path.join(tmp, "edit.blend"))
print("STYLIZE", bpy.ops.karwai.stylize_keyframes(strip="shot"), scene.karwai.key_for(2).path)
try:
    bpy.ops.karwai.propagate(strip="shot")
    print("PROPAGATE", "finished")
except RuntimeError as exc:
    print("PROPAGATE", str(exc).strip().splitlines()[-1])
"""


def test_legacy_zip_runs_its_own_engine_and_names_a_missing_dependency(linux_zip, tmp_path):
    """Installed the legacy way in a Blender whose Python lacks numba: painterly keys
    work from the installed copy's engine; propagation stops, naming numba."""
    script = tmp_path / "legacy.py"
    script.write_text(_LEGACY_SCRIPT)
    env = dict(os.environ, BLENDER_USER_RESOURCES=str(tmp_path / "user"))
    env.pop("PYTHONPATH", None)
    run = subprocess.run([sys.executable, str(script), str(linux_zip.legacy), str(tmp_path)],
                         capture_output=True, text=True,
                         env=env, cwd=tmp_path, timeout=300)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    lines = dict(line.split(" ", 1) for line in run.stdout.splitlines()
                 if line.split(" ", 1)[0] in ("ADDON", "ENGINE", "STYLIZE", "PROPAGATE"))
    addon_dir = Path(lines["ADDON"])
    assert addon_dir.is_relative_to(tmp_path / "user") and addon_dir.name == "karwai"
    name, path = lines["ENGINE"].split(" ", 1)
    assert name == "karwai.engine" and Path(path) == addon_dir / "engine" / "__init__.py"
    status, key = lines["STYLIZE"].rsplit(" ", 1)
    assert status == "{'FINISHED'}" and Path(key).is_file()
    assert "numba" in lines["PROPAGATE"] and "finished" not in lines["PROPAGATE"]


# --------------------------------------------------------------------------------------
# installed headless, run from the installed copy


def _user_dir():
    return Path(os.environ["BLENDER_USER_RESOURCES"])


def _forget_installed_modules():
    for name in [n for n in sys.modules if n == PACKAGE or n.startswith(PACKAGE + ".")]:
        del sys.modules[name]


def test_installs_headless_and_runs_from_the_installed_copy(linux_zip, tmp_path):
    import addon_utils

    bpy.ops.wm.read_homefile(use_empty=True)
    assert "blender_addon" not in bpy.context.preferences.addons
    result = bpy.ops.extensions.package_install_files(
        filepath=str(linux_zip.zips["linux-x64"]), repo="user_default", enable_on_install=True)
    assert result == {"FINISHED"}
    installed = _user_dir() / "extensions" / "user_default" / "karwai"
    site = (_user_dir() / "extensions" / ".local" / "lib"
            / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages")
    try:
        assert PACKAGE in bpy.context.preferences.addons
        assert Path(sys.modules[PACKAGE].__file__) == installed / "__init__.py"
        # the wheels went into Blender's extension site folder: no numpy, no torch
        present = {p.name for p in site.iterdir()}
        assert {"numba", "llvmlite", "cv2", "PIL"} <= present
        assert not {"numpy", "torch"} & present
        # the engine the add-on uses is the vendored one, inside the installed copy
        engine_import = importlib.import_module(PACKAGE + ".engine_import")
        engine = engine_import.get_engine()
        assert engine.__name__ == PACKAGE + ".engine"
        assert Path(engine.__file__) == installed / "engine" / "__init__.py"
        assert engine_import.search_path(engine) == str(installed)
        dependencies = importlib.import_module(PACKAGE + ".dependencies")
        assert Path(dependencies.site_dir()).is_relative_to(_user_dir() / "extensions")
        assert hasattr(bpy.ops.karwai, "install_torch")

        # a shot with sound and two keyframe markers, saved so that // paths resolve
        scene = bpy.context.scene
        scene.render.resolution_x, scene.render.resolution_y = 96, 64
        editor = scene.sequence_editor_create()
        movie = write_movie(tmp_path / "shot.mp4", 16)
        editor.active_strip = compat.strips(editor).new_movie("shot", str(movie), 1, 1)
        scene.timeline_markers.new("k1", frame=3)
        scene.timeline_markers.new("k2", frame=14)
        bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "edit.blend"))
        before = set(sys.modules)

        scene.karwai.default_style.painterly_filter = "ink"
        assert bpy.ops.karwai.stylize_keyframes(strip="shot") == {"FINISHED"}
        assert bpy.ops.karwai.propagate(strip="shot") == {"FINISHED"}

        loaded = set(sys.modules) - before
        # the job ran on the installed engine's modules, not the source tree's
        assert not any(n == "engine" or n.startswith("engine.") for n in loaded), sorted(loaded)
        for name in (".engine.propagation.job", ".engine.synth.kernels", ".engine.flow",
                     ".engine.stylizers.painterly"):
            module = sys.modules[PACKAGE + name]
            assert Path(module.__file__).is_relative_to(installed), module.__file__
        assert not any(Path(m.__file__ or "").is_relative_to(ROOT / "engine")
                       for n, m in sys.modules.items()
                       if n.startswith(PACKAGE) and getattr(m, "__file__", None))
        (strip,) = [s for s in compat.strips(editor) if s.name == "shot (Kar-Wai)"]
        frames = Path(bpy.path.abspath(strip.directory))
        assert len(list(frames.glob("*.png"))) == 16
        import cv2

        key = cv2.imread(str(Path(bpy.path.abspath(scene.karwai.key_for(14).path))))
        shown = cv2.imread(str(frames / strip.strip_elem_from_frame(14).filename))
        assert key is not None and np.abs(shown.astype(int) - key.astype(int)).max() <= 1
    finally:
        addon_utils.disable(PACKAGE, default_set=True)
        with ui_context():
            repo_index = [r.module for r in bpy.context.preferences.extensions.repos].index(
                "user_default")
            bpy.ops.extensions.package_uninstall(repo_index=repo_index, pkg_id="karwai")
        _forget_installed_modules()
    assert PACKAGE not in bpy.context.preferences.addons
    assert not installed.exists()
    assert not hasattr(bpy.types.Scene, "karwai")


def test_bundled_wheels_import_and_compile(linux_zip, tmp_path):
    """The wheels themselves work: cv2, PIL, llvmlite and numba from them (first on the
    path; numpy from the venv, as Blender's own), with a numba function compiled."""
    site = tmp_path / "site"
    with zipfile.ZipFile(linux_zip.zips["linux-x64"]) as archive:
        for name in archive.namelist():
            if name.startswith("wheels/"):
                with zipfile.ZipFile(archive.open(name)) as wheel:
                    wheel.extractall(site)
    numpy_dir = Path(np.__file__).parents[1]
    code = (
        "import sys; sys.path[:0] = [sys.argv[1]]; sys.path.append(sys.argv[2]); "
        "import cv2, PIL, llvmlite, numba, numpy; "
        "f = numba.njit(lambda a: (a * 2).sum()); assert f(numpy.arange(4)) == 12; "
        "assert cv2.resize(numpy.zeros((4, 4), numpy.uint8), (2, 2)).shape == (2, 2); "
        "print('\\n'.join(m.__file__ for m in (cv2, PIL, llvmlite, numba)))")
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "numba-cache"))
    env.pop("PYTHONPATH", None)
    run = subprocess.run([sys.executable, "-s", "-c", code, str(site), str(numpy_dir)],
                         capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr
    for line in run.stdout.split():
        assert Path(line).is_relative_to(site), line


# --------------------------------------------------------------------------------------
# Install PyTorch


def test_plan_picks_the_build_for_the_platform():
    from blender_addon import dependencies as deps

    assert deps.plan("Linux", nvidia=True).index_url == deps.CUDA_INDEX
    assert deps.plan("Windows", nvidia=True).index_url == deps.CUDA_INDEX
    assert deps.plan("Linux", nvidia=False).index_url == deps.CPU_INDEX
    assert deps.plan("Windows", nvidia=False).index_url == deps.CPU_INDEX
    mac = deps.plan("Darwin", nvidia=True)
    assert mac.build == "default" and mac.index_url is None
    command = deps.pip_command(deps.plan("Linux", nvidia=False), "/x/site")
    assert command[:3] == [sys.executable, "-m", "pip"]
    assert command[3:6] == ["install", "--target", "/x/site"]
    assert command[command.index("--index-url") + 1] == deps.CPU_INDEX
    assert command[-1] == "torch" and "--only-binary=:all:" in command


def test_progress_comes_from_pips_output(tmp_path):
    from blender_addon import dependencies as deps

    installer = deps.Installer(deps.plan("Linux", nvidia=False), str(tmp_path / "site"))
    assert "--progress-bar" in installer.command  # this pip writes "Progress N of TOTAL"
    for line in ("Looking in indexes: https://download.pytorch.org/whl/cpu",
                 "Collecting torch",
                 "Downloading https://download.pytorch.org/whl/cpu/torch-2.9.0%2Bcpu-cp311-"
                 "cp311-manylinux_2_28_x86_64.whl (184.6 MB)",
                 "Progress 0 of 184600000", "Progress 92300000 of 184600000"):
        installer._take(line)
    assert installer.state.factor == pytest.approx(0.5)
    assert installer.state.message.startswith("Downloading https://download.pytorch.org")
    assert installer.state.message.endswith(" - 92 of 185 MB")
    assert len(installer.state.message) <= 110
    installer._take("Installing collected packages: mpmath, sympy, torch")
    assert installer.state.message.startswith("Installing collected packages")


def _probe_wheel(folder, version="1.0"):
    """A minimal wheel of a package ``karwai_probe`` (stands in for torch)."""
    name = f"karwai_probe-{version}"
    files = {
        "karwai_probe/__init__.py": f"__version__ = {version!r}\n",
        f"{name}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: karwai-probe\n"
                                      f"Version: {version}\n",
        f"{name}.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
                                   "Tag: py3-none-any\n",
    }
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=")
        record.append(f"{path},sha256={digest.decode()},{len(text.encode())}")
    record.append(f"{name}.dist-info/RECORD,,")
    files[f"{name}.dist-info/RECORD"] = "\n".join(record) + "\n"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as archive:
        for member, text in files.items():
            archive.writestr(member, text)
    return path


@pytest.fixture
def probe(monkeypatch, tmp_path):
    """dependencies set to install ``karwai-probe`` from a local folder instead of torch."""
    from blender_addon import dependencies as deps

    wheels = tmp_path / "wheels"
    _probe_wheel(wheels)
    monkeypatch.setattr(deps, "TORCH_REQUIREMENT", "karwai-probe")
    monkeypatch.setattr(deps, "TORCH_MODULE", "karwai_probe")
    monkeypatch.setattr(deps, "online_access", lambda: True)
    local = deps.Plan("cpu", None, "a local test wheel",
                      pip_args=("--no-index", "--find-links", str(wheels)))
    monkeypatch.setattr(deps, "plan", lambda *a, **k: local)
    # pip sees only what the test gives it, not this machine's pip configuration
    for name in [n for n in os.environ if n.startswith("PIP_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    shutil.rmtree(deps.site_dir(), ignore_errors=True)
    yield deps
    deps.unregister()
    sys.modules.pop("karwai_probe", None)
    shutil.rmtree(deps.site_dir(), ignore_errors=True)


class _Layout:
    """Just enough of a layout to record what the preferences draw."""

    def __init__(self, log):
        self.log = log

    def label(self, *, text="", icon="NONE"):
        self.log.append(("label", text, icon))

    def operator(self, idname, *, text=None, icon="NONE"):
        self.log.append(("operator", idname, icon))

    def progress(self, *, factor, type="BAR", text=""):  # noqa: A002 - Blender's name
        assert 0.0 <= factor <= 1.0
        self.log.append(("progress", text))


def _draw(preferences):
    log = []
    preferences.draw_torch(_Layout(log))
    icons = set(bpy.types.UILayout.bl_rna.functions["label"].parameters["icon"].enum_items.keys())
    assert all(entry[-1] in icons for entry in log if entry[0] != "progress")
    return log


def test_install_button_installs_into_the_addon_site_folder(addon, probe):
    from blender_addon import preferences

    deps = probe
    assert not deps.torch_available()
    log = _draw(preferences)
    assert ("operator", "karwai.install_torch", "IMPORT") in log
    assert any("not installed" in entry[1] for entry in log if entry[0] == "label")
    assert bpy.ops.karwai.install_torch.poll()

    # headless: synchronous, progress printed, then available from the add-on's site folder
    assert bpy.ops.karwai.install_torch() == {"FINISHED"}
    site = Path(deps.site_dir())
    assert site.is_relative_to(_user_dir()) and (site / "karwai_probe" / "__init__.py").is_file()
    assert not Path(str(site) + ".partial").exists()
    assert str(site) in sys.path and deps.torch_available()
    assert importlib.import_module("karwai_probe").__file__.startswith(str(site))
    assert ("label", deps.torch_status()[1], "CHECKMARK") in _draw(preferences)
    assert not bpy.ops.karwai.install_torch.poll()  # nothing left to install
    assert "Successfully installed karwai-probe" in Path(deps.current().log_path).read_text()

    # disabling the add-on takes the folder off sys.path; enabling puts it back
    from conftest import disable_addon, enable_addon

    disable_addon()
    assert str(site) not in sys.path
    enable_addon()
    assert str(site) in sys.path


def test_failed_install_says_why_and_leaves_nothing(addon, probe, monkeypatch):
    from blender_addon import preferences

    deps = probe
    monkeypatch.setattr(deps, "TORCH_REQUIREMENT", "karwai-probe==99")
    with pytest.raises(RuntimeError, match=r"Installing PyTorch failed: no PyTorch build found for "
                                           r"this Blender's Python .* \(log: .*install-torch"):
        bpy.ops.karwai.install_torch()
    assert not os.path.exists(deps.site_dir()) and not os.path.exists(deps.site_dir() + ".partial")
    assert not deps.torch_available()
    log = _draw(preferences)
    assert any(entry[2] == "CANCEL" and "Installing PyTorch failed" in entry[1] for entry in log)
    assert ("operator", "karwai.install_torch", "IMPORT") in log  # it can be tried again

    # an index that cannot be reached: said so
    unreachable = deps.Plan("cpu", "http://127.0.0.1:9/simple", "nowhere",
                            pip_args=("--retries", "1", "--timeout", "2"))
    installer = deps.Installer(unreachable, deps.site_dir(create=False))
    state = installer.start().wait(timeout=120)
    assert state.status == deps.FAILED
    assert state.error.startswith("Installing PyTorch failed: cannot reach "
                                  "http://127.0.0.1:9/simple"), state.error

    # offline: refused before pip runs
    monkeypatch.setattr(deps, "online_access", lambda: False)
    with pytest.raises(RuntimeError, match="Online access is off"):
        bpy.ops.karwai.install_torch()


def _modal_probe(monkeypatch):
    """The real operator's methods on a plain object, run as the UI runs them."""
    from blender_addon.operators import install_torch

    monkeypatch.setattr(install_torch, "in_background", lambda: False)
    cls = install_torch.KARWAI_OT_install_torch

    class Probe:
        invoke, modal, execute = cls.invoke, cls.modal, cls.execute
        _start, _report = cls._start, cls._report

        def __init__(self):
            self.reports = []

        def report(self, kinds, message):
            self.reports.append((set(kinds), message))

    return Probe()


def test_install_from_the_ui_runs_in_the_background_and_shows_progress(addon, probe,
                                                                      monkeypatch):
    from blender_addon import preferences

    deps = probe
    op, context = _modal_probe(monkeypatch), FakeContext()
    assert op.invoke(context, None) == {"RUNNING_MODAL"}
    assert context.window_manager.handlers == [op] and len(context.window_manager.timers) == 1
    assert not op._installer.state.finished          # pip runs on while Blender goes on
    assert not bpy.ops.karwai.install_torch.poll()  # one install at a time
    drawn = _draw(preferences)
    assert drawn[0][0] == "progress"
    ticks = 0
    while True:
        time.sleep(0.05)
        timer = context.window_manager.timers[0]
        result = op.modal(context, FakeEvent("TIMER", timer=timer))
        ticks += 1
        if result != {"PASS_THROUGH"}:
            break
        assert op.modal(context, FakeEvent("MOUSEMOVE")) == {"PASS_THROUGH"}
        assert ticks < 2400, "the install did not end"
    assert result == {"FINISHED"}, op.reports
    assert ticks > 1 and context.window_manager.timers == []
    assert op.reports[-1][0] == {"INFO"} and "PyTorch 1.0 installed" in op.reports[-1][1]
    assert deps.torch_available()

    # Esc stops a running install; nothing is installed
    deps.deactivate()
    shutil.rmtree(deps.site_dir())
    sys.modules.pop("karwai_probe", None)
    assert not deps.torch_available()
    op, context = _modal_probe(monkeypatch), FakeContext()
    assert op.invoke(context, None) == {"RUNNING_MODAL"}
    op.modal(context, FakeEvent("ESC", "PRESS"))
    assert op.reports[-1] == ({"WARNING"}, "Cancelled: nothing was installed")
    assert context.window_manager.timers == []
    assert not os.path.exists(deps.site_dir()) and not os.path.exists(deps.site_dir() + ".partial")


# --------------------------------------------------------------------------------------
# what the README says


def test_readme_names_the_zips_the_build_makes_and_the_tested_headless_recipe(linux_zip):
    import re

    from tools import extension

    readme = (ROOT / "README.md").read_text()
    version = extension.version()
    for platform in ("linux-x64", "windows-x64", "macos-arm64"):
        assert f"karwai-VERSION-{platform.replace('-', '_')}.zip" in readme, platform
    assert linux_zip.zips["linux-x64"].name.replace(version, "VERSION") in readme
    assert linux_zip.legacy.name.replace(version, "VERSION") in readme
    # the recipe is HEADLESS.md's, which test_headless.py runs
    headless = (ROOT / "blender_addon" / "HEADLESS.md").read_text()
    block = re.search(r"```bash\n(blender -b .*?)\n```", headless, re.S).group(0)
    assert block in readme
