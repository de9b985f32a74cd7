"""Registration, packaging metadata, and the rules the add-on's code keeps."""

import ast
import importlib
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

bpy = pytest.importorskip("bpy")

from blender_addon import compat  # noqa: E402

from conftest import ADDON, ROOT, disable_addon, enable_addon, ui_context  # noqa: E402

pytestmark = pytest.mark.blender

ADDON_DIR = ROOT / "blender_addon"


def _state():
    """Everything registration could leave behind."""
    handlers = {name: list(getattr(bpy.app.handlers, name)) for name in dir(bpy.app.handlers)
                if not name.startswith("_") and isinstance(getattr(bpy.app.handlers, name), list)}
    registered = set()
    for base in (bpy.types.Panel, bpy.types.Operator, bpy.types.PropertyGroup,
                 bpy.types.AddonPreferences, bpy.types.UIList, bpy.types.Menu):
        for cls in base.__subclasses__():
            if getattr(cls, "is_registered", False) and "karwai" in cls.__name__.lower():
                registered.add(cls.__name__)
    return {
        "types": registered | {n for n in dir(bpy.types) if "karwai" in n.lower()},
        "scene_props": set(bpy.types.Scene.bl_rna.properties.keys()),
        "ops": set(dir(bpy.ops.karwai)),
        "handlers": handlers,
        "addons": set(bpy.context.preferences.addons.keys()),
    }


def test_register_then_unregister_leaves_nothing(empty_file):
    before = _state()
    assert before["types"] == set()
    assert "karwai" not in before["scene_props"]

    for _cycle in range(2):  # enabling again after disabling works too
        enable_addon()
        during = _state()
        assert "karwai" in during["scene_props"]
        assert {"KARWAI_PT_main", "KARWAI_PT_keyframes", "KARWAI_PT_settings",
                "KARWAI_PT_advanced", "KARWAI_UL_keyframes", "KARWAI_PG_settings",
                "KARWAI_AP_preferences"} <= during["types"]
        assert {"add_keyframe", "suggest_keyframes", "stylize_keyframes", "open_keyframe",
                "reload_keyframe", "propagate", "cancel_job"} <= during["ops"]
        assert ADDON in during["addons"]
        assert len(during["handlers"]["load_pre"]) == len(before["handlers"]["load_pre"]) + 1
        assert bpy.context.scene.karwai.quality == "balanced"

        disable_addon()
        after = _state()
        assert after["types"] == before["types"]
        assert after["scene_props"] == before["scene_props"]
        assert after["ops"] == before["ops"]
        assert after["handlers"] == before["handlers"]
        assert after["addons"] == before["addons"]


def test_registration_order_is_reversed_on_unregister(empty_file, monkeypatch):
    module = importlib.import_module(ADDON)
    calls = []
    for sub in module._REGISTERED:
        monkeypatch.setattr(sub, "register",
                            lambda sub=sub: calls.append(("register", sub.__name__)))
        monkeypatch.setattr(sub, "unregister",
                            lambda sub=sub: calls.append(("unregister", sub.__name__)))
    module.register()
    module.unregister()
    names = [name for _, name in calls]
    half = len(names) // 2
    assert names[:half] == [f"{ADDON}.{n}" for n in ("preferences", "properties", "operators",
                                                     "panels")]
    assert names[half:] == list(reversed(names[:half]))


def test_every_operator_has_poll_and_a_description(addon):
    from blender_addon import operators

    assert not hasattr(bpy.types.Operator, "poll")
    for cls in operators.CLASSES:
        assert callable(getattr(cls, "poll", None)), cls
        assert cls.__doc__ and cls.__doc__.strip(), cls
        category, name = cls.bl_idname.split(".")
        rna = getattr(getattr(bpy.ops, category), name).get_rna_type()
        assert rna.description == cls.__doc__.strip()
    # each operator lives in a file of its own
    files = [sys.modules[cls.__module__].__file__ for cls in operators.CLASSES]
    assert len(set(files)) == len(files)


def test_manifest_is_the_single_source_of_the_version(addon):
    manifest = tomllib.loads((ADDON_DIR / "blender_manifest.toml").read_text())
    assert manifest["schema_version"] == "1.0.0"
    assert manifest["id"] == "karwai"
    assert manifest["name"] == "Kar-Wai"
    assert manifest["type"] == "add-on"
    assert manifest["blender_version_min"] == "4.2.0"
    assert manifest["license"] == ["SPDX:GPL-3.0-or-later"]
    assert "files" in manifest["permissions"]
    assert manifest["tagline"] and manifest["maintainer"]
    version = tuple(int(p) for p in manifest["version"].split("."))
    assert addon.bl_info["version"] == version
    # No other file of the add-on spells the version out.
    for path in ADDON_DIR.rglob("*.py"):
        assert manifest["version"] not in path.read_text(), path
    # bl_info is a literal dict, as Blender reads it without importing (legacy zip)
    tree = ast.parse((ADDON_DIR / "__init__.py").read_text())
    node = next(n for n in tree.body if isinstance(n, ast.Assign)
                and getattr(n.targets[0], "id", "") == "bl_info")
    info = ast.literal_eval(node.value)
    assert info["name"] == "Kar-Wai" and info["blender"] == (4, 2, 0)


def test_manifest_passes_blenders_validate():
    scripts = Path(bpy.__file__).resolve().parents[2]  # <version>/scripts/modules/bpy
    tool = scripts / "addons_core" / "bl_pkg" / "cli" / "blender_ext.py"
    if not tool.exists():
        pytest.skip("blender_ext.py is not in this bpy build")
    run = subprocess.run([sys.executable, str(tool), "validate", str(ADDON_DIR)],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr


def test_compat_picks_the_names_of_this_blender(addon):
    from blender_addon import compat

    assert bpy.app.version >= (5, 0, 0)
    assert compat.STRIP_TYPE is bpy.types.Strip
    assert compat.STRIPS_PROP == "strips" and compat.STRIPS_ALL_PROP == "strips_all"
    assert compat.ACTIVE_STRIP_CONTEXT == "active_strip"
    scene = bpy.context.scene
    editor = scene.sequence_editor_create()
    strip = compat.strips(editor).new_effect(name="c", type="COLOR", channel=1, frame_start=1, length=5)
    editor.active_strip = strip
    assert compat.active_strip(bpy.context, scene) == strip
    assert compat.sequencer_scene(bpy.context) == scene
    assert list(compat.strips(editor)) == [strip]


VERSION_SPECIFIC = re.compile(
    r"\.sequences\b|sequences_all|active_sequence_strip|bpy\.types\.(Sequence|Strip)\b|"
    r"bpy\.app\.version|context\.(sequencer_scene|active_strip)\b")


def test_version_differences_live_only_in_compat():
    for path in ADDON_DIR.rglob("*.py"):
        if path.name == "compat.py":
            continue
        text = path.read_text()
        assert not VERSION_SPECIFIC.search(text), f"{path}: {VERSION_SPECIFIC.search(text)[0]}"


def _imports(path):
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            names.add((node.module or "").split(".")[0] if node.level == 0 else "." * node.level
                      + (node.module or ""))
    return names


def test_worker_side_never_touches_bpy():
    worker_files = sorted((ADDON_DIR / "worker").glob("*.py"))
    assert {p.name for p in worker_files} >= {"__init__.py", "__main__.py", "model.py", "engine_api.py", "run.py",
                                               "protocol.py"}
    for path in [*worker_files, ADDON_DIR / "jobs.py", ADDON_DIR / "engine_import.py"]:
        imports = _imports(path)
        assert "bpy" not in imports, path
    # the worker package also runs as ``python -m worker``: it reaches nothing outside itself
    for path in worker_files:
        assert not any(i.startswith("..") for i in _imports(path)), path
    # and jobs.py only reaches the worker
    assert {i for i in _imports(ADDON_DIR / "jobs.py") if i.startswith(".")} == {".", ".worker", ".engine_import"}


def test_engine_is_imported_in_one_place():
    for path in ADDON_DIR.rglob("*.py"):
        if path.name == "engine_import.py":
            continue
        imports = _imports(path)
        assert "engine" not in imports and ".engine" not in imports, path


def test_every_job_knob_is_a_scene_property_with_the_engines_default(addon):
    """Whatever a user can set through the API or the command line, they can set here (issue 12)."""
    from engine.settings import JobSettings, knobs

    karwai = bpy.context.scene.karwai
    values = karwai.job_settings()
    assert values == JobSettings().knob_values()
    for knob in knobs():
        owner = karwai.weights if knob.path[0] == "weights" else karwai
        prop = owner.bl_rna.properties[knob.path[-1]]
        assert prop.name == knob.label
        if knob.choices:
            assert [item.identifier for item in prop.enum_items] == list(knob.values)
    karwai.blend, karwai.key_fit, karwai.seed = "poisson", "pad", 9
    assert JobSettings.from_knobs(karwai.job_settings()) == JobSettings(blend="poisson", key_fit="pad", seed=9)


def test_engine_import_prefers_a_vendored_copy(tmp_path, monkeypatch):
    """A package with an ``engine`` inside it gets that one, not the top-level engine."""
    pkg = tmp_path / "fake_addon"
    (pkg / "engine").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "engine" / "__init__.py").write_text("propagate = stylize = 'vendored'\n")
    (pkg / "engine_import.py").write_text((ADDON_DIR / "engine_import.py").read_text())
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module("fake_addon.engine_import")
    engine = module.get_engine()
    assert engine.__name__ == "fake_addon.engine" and engine.propagate == "vendored"
    assert module.search_path(engine) == str(pkg)
    from blender_addon import engine_import

    top = engine_import.get_engine()
    assert top.__name__ == "engine"
    assert engine_import.search_path(top) == str(ROOT)


def test_engine_api_in_a_fresh_process():
    """Every part of the engine the add-on uses resolves in a process where nothing
    imported the engine's submodules first (issue 10: ``engine.frames`` was missing)."""
    code = ("import engine, sys\n"
            "from blender_addon.worker import EngineAPI\n"
            "# engine.settings (standard library only) makes the add-on's properties\n"
            "assert not any(m.startswith('engine.') and m != 'engine.settings' for m in sys.modules), "
            "sorted(sys.modules)\n"
            "api = EngineAPI(engine)\n"
            "assert callable(api.frames.frame_number_from_name)\n"
            "assert callable(api.propagate) and api.propagate.__module__ == 'engine.propagation.job'\n"
            "assert callable(api.stylizers.stylize) and callable(api.stylizers.parse_param)\n"
            "print('ok')\n")
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    # (bpy 5.2 prints its colour-management set-up on stdout when it is imported)
    assert res.returncode == 0 and res.stdout.splitlines()[-1] == "ok", res.stderr


def test_engine_api_finds_the_functions_whatever_was_imported_before():
    import engine
    import engine.propagation.job  # noqa: F401 - what other code may have done
    import engine.stylizers.painterly  # noqa: F401

    from blender_addon.worker import EngineAPI

    api = EngineAPI(engine)
    assert api.propagate is sys.modules["engine.propagation.job"].propagate
    assert callable(api.stylizers.stylize) and callable(api.stylizers.parse_param)
    assert engine.Cancelled in api.cancelled_types
    assert callable(api.frames.open_frames) and callable(api.keyframes.suggest_keyframes)


def test_installs_and_runs_as_a_legacy_addon_zip(empty_file, tmp_path):
    """Zipped as ``karwai/...`` and installed the pre-4.2 way, under another module name."""
    import zipfile

    import addon_utils

    archive = tmp_path / "karwai.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in ADDON_DIR.rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts:
                zf.write(path, Path("karwai") / path.relative_to(ADDON_DIR))
    assert bpy.ops.preferences.addon_install(filepath=str(archive), overwrite=True) == {"FINISHED"}
    fake = next(m for m in addon_utils.modules(refresh=True) if m.__name__ == "karwai")
    assert addon_utils.module_bl_info(fake)["name"] == "Kar-Wai"  # read without importing
    module = addon_utils.enable("karwai", default_set=True, handle_error=_raise)
    try:
        assert module.__file__ != str(ADDON_DIR / "__init__.py")
        assert module.bl_info["version"] == tuple(
            int(p) for p in tomllib.loads((ADDON_DIR / "blender_manifest.toml").read_text())
            ["version"].split("."))
        prefs = bpy.context.preferences.addons["karwai"].preferences
        prefs.threads = 3
        from importlib import import_module

        assert import_module("karwai.preferences").Prefs(bpy.context).threads == 3
        scene = bpy.context.scene
        editor = scene.sequence_editor_create()
        compat.strips(editor).new_effect(name="c", type="COLOR", channel=1, frame_start=1, length=5)
        with pytest.raises(RuntimeError, match="Strip 'c' is a colour strip"):
            bpy.ops.karwai.add_keyframe(strip="c", frame=2)
    finally:
        addon_utils.disable("karwai", default_set=True, handle_error=_raise)
        with ui_context():
            bpy.ops.preferences.addon_remove(module="karwai")
        for name in [n for n in sys.modules if n == "karwai" or n.startswith("karwai.")]:
            del sys.modules[name]
    assert "karwai" not in bpy.context.preferences.addons
    assert not hasattr(bpy.types.Scene, "karwai")


def _raise(exc):
    raise exc
