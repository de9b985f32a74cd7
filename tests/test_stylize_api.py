"""The stylize() dispatcher, parameter parsing and frame handling (engine.stylize)."""

import importlib.util
import os
import subprocess
import sys
import textwrap
import types

import numpy as np
import pytest

import engine
from engine.stylizers import Cancelled, available_methods, method_params, parse_param, stylize

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))



#: The torch methods' parameters come from their modules, which import torch: without it
#: (the Python 3.13 run, whose venv has no torch wheel) those cases are skipped.
needs_torch = pytest.mark.skipif(importlib.util.find_spec("torch") is None,
                                 reason="PyTorch is not installed")


def torch_case(*values):
    return pytest.param(*values, marks=needs_torch)


def img(h=24, w=32):
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_available_methods_say_which_need_torch():
    info = available_methods()
    assert list(info) == ["neural", "deepdream", "painterly", "image"]
    assert info["neural"].needs_torch and info["deepdream"].needs_torch
    assert not info["painterly"].needs_torch and not info["image"].needs_torch
    assert info["neural"].optimising and not info["image"].optimising
    assert info["painterly"].available and info["image"].available


def test_engine_exposes_stylize_lazily_and_it_is_callable():
    out = engine.stylize(img(), method="painterly", filter="oil")
    assert out.shape == (24, 32, 3)
    # The package is engine.stylizers, so importing its submodules never rebinds
    # the name engine.stylize (checked in a fresh process below).
    assert engine.stylize is stylize
    assert isinstance(engine.stylizers, types.ModuleType)
    code = ("import numpy as np, engine.stylizers.painted, engine; "
            "print(engine.stylize(np.zeros((8, 8, 3), np.uint8), method='painterly').shape)")
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "(8, 8, 3)"


def test_unknown_method():
    with pytest.raises(ValueError, match="unknown method 'sepia'.*neural, deepdream, painterly, image"):
        stylize(img(), method="sepia")


def test_unknown_parameter_names_itself_and_the_method():
    with pytest.raises(ValueError, match="unknown parameter 'strength' for method 'image'"):
        stylize(img(), method="image", style_image=img(), strength=3)
    with pytest.raises(ValueError, match="unknown parameter 'radius'"):
        stylize(img(), method="painterly", filter="ink", radius=3)
    if importlib.util.find_spec("torch") is None:
        return  # the torch methods' parameters come from their modules, which import torch
    with pytest.raises(ValueError, match="unknown parameter 'octaves' for method 'neural'"):
        stylize(img(), method="neural", style_image=img(), octaves=3)


def test_dispatch_matches_the_direct_calls():
    from engine.stylizers import painted, painterly

    a = img()
    np.testing.assert_array_equal(stylize(a, method="painterly", filter="pencil", darkness=2.0),
                                  painterly.pencil(a, darkness=2.0))
    np.testing.assert_array_equal(stylize(a, method="image", style_image=img(48, 40), fit="pad"),
                                  painted.stylize_painted(a, style_image=img(48, 40), fit="pad"))


def test_cancel_is_honoured_by_the_quick_methods():
    with pytest.raises(Cancelled):
        stylize(img(), method="painterly", cancel=lambda: True)
    with pytest.raises(ValueError, match="cancel"):
        stylize(img(), method="painterly", cancel=3)


@needs_torch
def test_method_params():
    p = method_params("neural")
    assert p["iterations"] == 300 and p["content_layer"] == "conv4_2"
    assert "progress" not in p and "frame" not in p
    assert method_params("painterly", filter="oil") == {"filter": "watercolour", "radius": 5,
                                                        "sharpness": 8.0, "saturation": 1.15}
    assert set(method_params("deepdream")) >= {"layers", "octaves", "octave_scale", "iterations", "step"}


@pytest.mark.parametrize("method,name,text,value", [
    torch_case("neural", "iterations", "50", 50),
    torch_case("neural", "style_weight", "1e3", 1000.0),
    torch_case("neural", "preserve_color", "yes", True),
    torch_case("neural", "preserve_color", "0", False),
    torch_case("neural", "style_layers", "conv1_1, conv3_1", ("conv1_1", "conv3_1")),
    torch_case("neural", "style_layer_weights", "0.5,0.5", (0.5, 0.5)),
    torch_case("neural", "weights", "/x/vgg19.pth", "/x/vgg19.pth"),
    torch_case("neural", "max_size", "512", 512),
    torch_case("deepdream", "layers", "conv4_2", ("conv4_2",)),
    torch_case("deepdream", "octave_scale", "1.5", 1.5),
    ("image", "fit", "pad", "pad"),
    ("image", "pad_color", "255,0,0", (255, 0, 0)),
])
def test_parse_param(method, name, text, value):
    assert parse_param(method, name, text) == value


def test_parse_param_for_a_painterly_filter():
    assert parse_param("painterly", "radius", "7", filter="oil") == 7
    with pytest.raises(ValueError, match="unknown parameter 'radius'"):
        parse_param("painterly", "radius", "7", filter="watercolour")


@pytest.mark.parametrize("method,name,text", [
    torch_case("neural", "iterations", "many"),
    torch_case("neural", "preserve_color", "perhaps"),
    torch_case("neural", "style_weight", "x"),
    torch_case("neural", "colour", "1"),
])
def test_parse_param_errors_name_the_parameter(method, name, text):
    with pytest.raises(ValueError, match=f"'{name}'"):
        parse_param(method, name, text)


@pytest.mark.parametrize("frame", [
    img()[..., 0],
    img()[..., :1],
    np.dstack([img(), np.zeros((24, 32), np.uint8)]),
    np.dstack([img()[..., 0], np.zeros((24, 32), np.uint8)]),
    img().astype(np.uint16) * 257,
    img().astype(np.float32),
    img().astype(np.float64) + 0.25,
])
def test_frames_of_many_kinds_are_handled(frame):
    out = stylize(frame, method="painterly", filter="ink")
    assert out.shape == (24, 32, 3) and out.dtype == np.uint8


@pytest.mark.parametrize("frame,match", [
    (np.zeros((0, 0, 3), np.uint8), "empty"),
    (np.zeros((5, 0), np.uint8), "empty"),
    (np.zeros((5, 5, 3), bool), "dtype"),
    (np.zeros((5, 5, 3), np.int16), "dtype"),
    (np.zeros((5, 5, 6), np.uint8), "shape"),
    (np.zeros((5,), np.uint8), "shape"),
    (np.full((5, 5, 3), np.inf, np.float32), "infinite"),
    ("frame.png", "numpy array"),
])
def test_bad_frames_are_refused_clearly(frame, match):
    for method, kw in (("painterly", {}), ("image", {"style_image": img()})):
        with pytest.raises(ValueError, match=match):
            stylize(frame, method=method, **kw)


def test_works_without_torch(tmp_path):
    """painterly and image run, and the torch methods say they need torch, with torch hidden."""
    code = textwrap.dedent(
        """
        import sys
        sys.modules["torch"] = None  # any 'import torch' now fails
        import importlib.util
        real_find_spec = importlib.util.find_spec
        importlib.util.find_spec = lambda name, *a: None if name == "torch" else real_find_spec(name, *a)
        import numpy as np
        import engine
        frame = np.zeros((20, 30, 3), np.uint8)
        assert engine.stylize(frame, method="painterly", filter="cartoon").shape == (20, 30, 3)
        art = np.ones((10, 10, 3), np.uint8)
        assert engine.stylize(frame, method="image", style_image=art).shape == (20, 30, 3)
        from engine.stylizers import available_methods
        info = available_methods()
        assert not info["neural"].available and info["painterly"].available
        try:
            engine.stylize(frame, method="neural", style_image=frame)
        except ImportError as exc:
            assert "PyTorch" in str(exc)
        else:
            raise AssertionError("neural ran without torch")
        print("ok")
        """
    )
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "ok"
