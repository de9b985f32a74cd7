"""Fixtures for the add-on tests, run in-process with the ``bpy`` module.

``BLENDER_USER_RESOURCES`` must point to a temporary folder before ``bpy`` is
imported (so the tests never read or write a real Blender configuration); this
file sets it when pytest imports it, which is before any test module here
imports ``bpy``. Without ``bpy`` every test in this folder is skipped.
"""

import hashlib
import os
import shutil
import sys
import tempfile
import wave
from pathlib import Path

import numpy as np
import pytest

_USER_RESOURCES = tempfile.mkdtemp(prefix="karwai-blender-user-")
os.environ["BLENDER_USER_RESOURCES"] = _USER_RESOURCES

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

try:
    import bpy  # noqa: F401
except ImportError:  # pragma: no cover - depends on the environment
    bpy = None

ADDON = "blender_addon"


def pytest_collection_modifyitems(config, items):
    if bpy is not None:
        return
    skip = pytest.mark.skip(reason="the bpy module is not installed")
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(skip)


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(_USER_RESOURCES, ignore_errors=True)


# --------------------------------------------------------------------------------------
# the add-on


def enable_addon():
    import addon_utils

    module = addon_utils.enable(ADDON, default_set=True, handle_error=_raise)
    assert module is not None, "the add-on did not enable"
    return module


def disable_addon():
    import addon_utils

    addon_utils.disable(ADDON, default_set=True, handle_error=_raise)


def _raise(exc):
    raise exc


@pytest.fixture
def empty_file():
    """A fresh, empty Blender file (no add-on)."""
    bpy.ops.wm.read_homefile(use_empty=True)
    yield


@pytest.fixture
def addon(empty_file, tmp_path):
    """The add-on enabled on a fresh empty file, its cache in ``tmp_path``; disabled after."""
    module = enable_addon()
    prefs = bpy.context.preferences.addons[ADDON].preferences
    prefs.cache_dir = str(tmp_path / "cache")
    try:
        yield module
    finally:
        disable_addon()


@pytest.fixture
def saved(addon, tmp_path):
    """The empty file saved as ``tmp_path/edit.blend`` (so ``//`` paths resolve)."""
    path = tmp_path / "edit.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(path))
    return path


# --------------------------------------------------------------------------------------
# the built extension


def _pypi_reachable():
    import urllib.request

    try:
        urllib.request.urlopen("https://pypi.org/simple/numba/", timeout=15).close()
        return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def linux_zip(tmp_path_factory):
    """The linux-x64 extension zip, built as ``build.py extension`` builds it (the wheels
    are cached in build/wheels/linux-x64, so only the first run downloads them)."""
    from tools import extension

    out = tmp_path_factory.mktemp("dist")
    try:
        result = extension.build(["linux-x64"], out_dir=out,
                                 stage_root=tmp_path_factory.mktemp("stage"), log=print)
    except extension.DownloadError as exc:
        if not _pypi_reachable():
            pytest.skip(f"PyPI is unreachable and build/wheels/linux-x64 lacks the wheels: {exc}")
        raise
    return result


# --------------------------------------------------------------------------------------
# generated clips

H, W, N = 64, 96, 24


def make_frame(i, h=H, w=W):
    """Frame ``i`` (1-based) of a generated shot: a gradient with moving texture and a
    disc crossing the frame; its top-left 16x16 corner is the flat grey ``10 * i``
    (for ``i`` up to 24) so a test can tell which frame it sees, even through MPEG-4."""
    yy, xx = np.mgrid[0:h, 0:w]
    image = np.zeros((h, w, 3), np.uint8)
    image[..., 0] = xx * 255 // w
    image[..., 1] = yy * 255 // h
    image[..., 2] = ((xx // 3 + yy // 3 + i) % 16) * 16
    cy, cx = h // 2, int(w * 0.15 + (w * 0.7) * (i - 1) / 30)
    disc = (yy - cy) ** 2 + (xx - cx) ** 2 < (h // 6) ** 2
    image[disc] = (250, 240, 230)
    image[:16, :16] = (10 * i) % 250
    return image


def frame_index(rgb):
    """Which generated frame an image is, from its top-left corner."""
    return int(round(float(rgb[4:12, 4:12].mean()) / 10))


def write_images(folder, n=N, *, start=1, prefix="", h=H, w=W):
    import cv2

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(start, start + n):
        cv2.imwrite(str(folder / f"{prefix}{i:04d}.png"), make_frame(i, h, w)[:, :, ::-1])
    return folder


def write_movie(path, n=N, *, h=H, w=W, fps=24):
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    assert writer.isOpened()
    for i in range(1, n + 1):
        writer.write(make_frame(i, h, w)[:, :, ::-1])
    writer.release()
    return Path(path)


def write_wav(path, seconds=1.0, rate=48000):
    t = np.arange(int(seconds * rate)) / rate
    samples = (np.sin(2 * np.pi * 440 * t) * 8000).astype("<i2")
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(rate)
        handle.writeframes(samples.tobytes())
    return Path(path)


@pytest.fixture(scope="session")
def media(tmp_path_factory):
    """Generated media shared by the tests (read-only): a movie, an image sequence, a wav."""
    root = tmp_path_factory.mktemp("media")
    return {
        "movie": write_movie(root / "clip.mp4"),
        "images": write_images(root / "seq", prefix="shot_"),
        "wav": write_wav(root / "tone.wav"),
        "root": root,
    }


def add_image_strip(scene, folder, *, name="seq", channel=1, frame_start=1, files=None):
    """An image-sequence strip of the PNG files in ``folder`` (sorted)."""
    from blender_addon import compat

    editor = scene.sequence_editor_create()
    files = files or sorted(p.name for p in Path(folder).glob("*.png"))
    strip = compat.strips(editor).new_image(name, str(Path(folder) / files[0]), channel, frame_start)
    for f in files[1:]:
        strip.elements.append(f)
    return strip


def add_movie_strip(scene, path, *, name="clip", channel=1, frame_start=1):
    from blender_addon import compat

    editor = scene.sequence_editor_create()
    return compat.strips(editor).new_movie(name, str(path), channel, frame_start)


def hash_tree(folder):
    """``{relative path: sha256}`` of every file below ``folder``."""
    folder = Path(folder)
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def read_rgb(path):
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert image is not None, path
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB if image.shape[2] == 3 else cv2.COLOR_BGRA2RGBA)


def ui_context():
    """A context with a window and an area, as the undo operators need."""
    window = bpy.context.window_manager.windows[0]
    return bpy.context.temp_override(window=window, area=window.screen.areas[0],
                                     screen=window.screen)


def result_strips(scene):
    from blender_addon import compat
    from blender_addon.strips import RESULT_OF

    return [s for s in compat.strips(scene.sequence_editor) if s.get(RESULT_OF)]


def render_frame(scene, frame, path):
    """Render the sequencer at ``frame`` to ``path`` (Standard view: pixels as stored)."""
    scene.view_settings.view_transform = "Standard"
    settings = scene.render.image_settings
    if "media_type" in settings.bl_rna.properties:  # Blender 5.0
        settings.media_type = "IMAGE"
    settings.file_format = "PNG"
    scene.render.image_settings.color_mode = "RGB"
    scene.render.resolution_percentage = 100
    scene.render.filepath = str(path)
    scene.frame_set(frame)
    bpy.ops.render.render(write_still=True)
    return read_rgb(path)


def timed(function, *args):
    """``(result, wall seconds, main-thread CPU seconds)`` of a call."""
    import time

    wall, cpu = time.perf_counter(), time.thread_time()
    result = function(*args)
    return result, time.perf_counter() - wall, time.thread_time() - cpu


def summarise_polls(walls, cpus):
    """One line on how long the polls took, for the test's output. Never asserted: on a
    loaded machine any bound on time fails now and then (tests assert behaviour)."""
    ordered = sorted(walls)
    return (f"{len(walls)} polls: median {ordered[len(ordered) // 2] * 1000:.2f} ms, slowest "
            f"{ordered[-1] * 1000:.2f} ms wall, {max(cpus) * 1000:.2f} ms CPU")


# --------------------------------------------------------------------------------------
# modal operators fed timer events as Blender's window manager feeds them


class FakeTimer:
    pass


class FakeWindowManager:
    """Records the timers and modal handlers an operator adds."""

    windows = ()

    def __init__(self):
        self.timers = []
        self.handlers = []

    def event_timer_add(self, interval, window=None):
        timer = FakeTimer()
        timer.interval = interval
        self.timers.append(timer)
        return timer

    def event_timer_remove(self, timer):
        self.timers.remove(timer)

    def modal_handler_add(self, operator):
        self.handlers.append(operator)
        return True


class FakeContext:
    """bpy.context with a window manager that records timers and handlers."""

    def __init__(self):
        object.__setattr__(self, "window_manager", FakeWindowManager())
        object.__setattr__(self, "window", None)
        object.__setattr__(self, "screen", None)

    def __getattr__(self, name):
        import bpy

        return getattr(bpy.context, name)


class FakeEvent:
    def __init__(self, type, value="NOTHING", timer=None):  # noqa: A002 - Blender's name
        self.type, self.value, self.timer = type, value, timer
