"""Install a built extension zip into a bare Blender and run a job on each kind of strip.

    python -S tools/fresh_install_check.py --zip ZIP --work DIR --images DIR --movie FILE

Run by a Python whose path holds only Blender (the ``bpy`` module), numpy and what
bpy itself depends on, in a fresh process, with ``BLENDER_USER_RESOURCES`` pointing
to an empty folder: what a user has after downloading Blender, before Kar-Wai.
It checks that none of Kar-Wai's dependencies can be imported yet, installs the zip
the way Blender's *Install from Disk* does (``extensions.package_install_files``),
then, for an image-sequence strip and for a movie strip, runs Stylize Keyframes and
Propagate through the operators and checks the result strip against the engine's
files and against Blender's own render of it. The last line printed is
``KARWAI-CHECK {json}``; the exit code is 0 only when every check passed.

Used by ``tests/blender/test_fresh_install.py`` (on each bpy the suite runs on) and
by ``python build.py blenders VERSION ...`` (any Blender on PyPI).
"""

import argparse
import importlib.util
import json
import os
import sys
from pathlib import Path

PACKAGE = "bl_ext.user_default.karwai"
#: What the extension brings as wheels, and what must come only from them.
BUNDLED_MODULES = ("numba", "llvmlite", "cv2", "PIL")


def _fail(message):
    print(f"KARWAI-CHECK {json.dumps({'ok': False, 'error': message})}", flush=True)
    sys.exit(1)


def _check(condition, message):
    if not condition:
        _fail(message)


def _image_files(folder):
    return sorted(p.name for p in Path(folder).iterdir() if p.suffix.lower() == ".png")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--zip", required=True, type=Path)
    parser.add_argument("--work", required=True, type=Path)
    parser.add_argument("--images", required=True, type=Path,
                        help="folder of PNG frames for the image-sequence strip")
    parser.add_argument("--movie", required=True, type=Path, help="a movie file, same frame count")
    args = parser.parse_args(argv)

    user = os.environ.get("BLENDER_USER_RESOURCES")
    _check(user and Path(user).is_dir() and not any(Path(user).iterdir()),
           "BLENDER_USER_RESOURCES must name an empty folder")
    present = [m for m in (*BUNDLED_MODULES, "engine", "torch", "scipy", "skimage")
               if importlib.util.find_spec(m) is not None]
    _check(not present, f"not a bare Blender: {present} can be imported before the install")

    import bpy  # noqa: E402 - after the checks above, which must not import it
    import numpy as np

    report = {"blender": bpy.app.version_string, "python": sys.version.split()[0]}
    bpy.ops.wm.read_homefile(use_empty=True)
    result = bpy.ops.extensions.package_install_files(
        filepath=str(args.zip), repo="user_default", enable_on_install=True)
    _check(result == {"FINISHED"}, f"package_install_files returned {result}")
    _check(PACKAGE in bpy.context.preferences.addons, f"{PACKAGE} is not enabled after install")
    compat = importlib.import_module(PACKAGE + ".compat")
    engine = importlib.import_module(PACKAGE + ".engine_import").get_engine()
    installed = Path(sys.modules[PACKAGE].__file__).parent
    _check(Path(engine.__file__).parent == installed / "engine",
           f"the add-on uses the engine at {engine.__file__}, not its own")

    images = _image_files(args.images)
    count = len(images)
    import cv2  # from the extension's wheels now

    first = cv2.imread(str(args.images / images[0]))
    height, width = first.shape[:2]
    scene = bpy.context.scene
    scene.render.resolution_x, scene.render.resolution_y = width, height
    scene.render.resolution_percentage = 100
    scene.frame_start, scene.frame_end = 1, count
    editor = scene.sequence_editor_create()
    strips = compat.strips(editor)
    seq = strips.new_image("seq", str(args.images / images[0]), 1, 1)
    for name in images[1:]:
        seq.elements.append(name)
    movie = strips.new_movie("clip", str(args.movie), 3, 1)
    _check(movie.frame_final_duration == count,
           f"the movie strip has {movie.frame_final_duration} frames, expected {count}")
    keys = (3, count - 2)
    for frame in keys:
        scene.timeline_markers.new(f"k{frame}", frame=frame)
    args.work.mkdir(parents=True, exist_ok=True)
    bpy.ops.wm.save_as_mainfile(filepath=str(args.work / "edit.blend"))

    settings = scene.karwai
    settings.default_style.method = "painterly"
    settings.default_style.painterly_filter = "ink"
    report["strips"] = {}
    for strip in (seq, movie):
        editor.active_strip = strip
        _check(bpy.ops.karwai.stylize_keyframes(strip=strip.name) == {"FINISHED"},
               f"Stylize Keyframes failed on the {strip.type} strip")
        _check(bpy.ops.karwai.propagate(strip=strip.name) == {"FINISHED"},
               f"Propagate failed on the {strip.type} strip")
        (out,) = [s for s in compat.strips(editor) if s.name == f"{strip.name} (Kar-Wai)"]
        _check(out.frame_final_start == strip.frame_final_start
               and out.frame_final_duration == count and out.channel > strip.channel,
               f"the result of {strip.name} covers {out.frame_final_start}+"
               f"{out.frame_final_duration} on channel {out.channel}")
        folder = Path(bpy.path.abspath(out.directory))
        _check(len(_image_files(folder)) == count,
               f"{folder} holds {len(_image_files(folder))} frames, expected {count}")
        key = settings.key_for(keys[1])
        key_image = cv2.imread(bpy.path.abspath(key.path))
        shown = cv2.imread(str(folder / out.strip_elem_from_frame(keys[1]).filename))
        _check(key_image is not None and shown is not None
               and int(np.abs(shown.astype(int) - key_image.astype(int)).max()) <= 1,
               f"frame {keys[1]} of {out.name} is not its stylized key")
        # Blender's own render of the timeline, with only this result visible, must be
        # the engine's file for that frame (the strip's frame mapping, as Blender reads it).
        for other in compat.strips(editor):
            other.mute = other != out
        scene.view_settings.view_transform = "Standard"
        image_settings = scene.render.image_settings
        if "media_type" in image_settings.bl_rna.properties:  # Blender 5.0 on
            image_settings.media_type = "IMAGE"
        image_settings.file_format = "PNG"
        image_settings.color_mode = "RGB"
        scene.render.use_sequencer = True
        frame = (keys[0] + keys[1]) // 2
        scene.render.filepath = str(args.work / f"render-{strip.name}.png")
        scene.frame_set(frame)
        bpy.ops.render.render(write_still=True)
        rendered = cv2.imread(scene.render.filepath)
        written = cv2.imread(str(folder / out.strip_elem_from_frame(frame).filename))
        difference = int(np.abs(rendered.astype(int) - written.astype(int)).max())
        _check(difference <= 2, f"Blender's render of {out.name} at frame {frame} differs from "
               f"the engine's file by {difference}")
        for other in compat.strips(editor):
            other.mute = False
        report["strips"][strip.name] = {"type": strip.type, "frames": count,
                                        "render_difference": difference}

    site = None
    for name in BUNDLED_MODULES:
        module = sys.modules.get(name) or importlib.import_module(name)
        path = Path(module.__file__).resolve()
        _check(Path(user).resolve() in path.parents,
               f"{name} was loaded from {path}, not from the extension's wheels")
        site = site or str(path.parents[1])
    report["site"] = site
    report["ok"] = True
    print(f"KARWAI-CHECK {json.dumps(report)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
