"""Neural keys that agree, and the neural video methods, through the operators (``blender -b``)."""

from pathlib import Path

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")
torch = pytest.importorskip("torch")

from conftest import ADDON, N, add_image_strip, read_rgb, result_strips  # noqa: E402

pytestmark = pytest.mark.blender

KEYS = (4, 10, 16)


@pytest.fixture
def neural(saved, media, tmp_path):
    """An image strip, small random VGG19 weights in the preferences, a neural default style."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from helpers import write_weights
    from test_stylize_neural import make_style

    from engine.frames import write_frame_atomic

    weights = tmp_path / "vgg19-small.pth"
    write_weights(weights)
    art = tmp_path / "art.png"
    write_frame_atomic(art, make_style())
    prefs = bpy.context.preferences.addons[ADDON].preferences
    prefs.vgg_weights = str(weights)
    prefs.device = "cpu"
    scene = bpy.context.scene
    add_image_strip(scene, media["images"])
    style = scene.karwai.default_style
    style.method = "neural"
    style.style_image = str(art)
    style.params = "iterations=16; style_weight=20"
    return {"scene": scene, "weights": str(weights), "art": str(art), "media": media}


def _keys(scene):
    return {f: read_rgb(scene.karwai.key_for(f).path) for f in KEYS}


def test_stylize_keyframes_makes_neural_keys_agree(neural):
    import engine

    scene = neural["scene"]
    for frame in KEYS:
        assert bpy.ops.karwai.add_keyframe(strip="seq", frame=frame) == {"FINISHED"}
    assert bpy.ops.karwai.stylize_keyframes(strip="seq") == {"FINISHED"}
    for frame in KEYS:
        assert scene.karwai.key_for(frame).status == "STYLIZED", scene.karwai.key_for(frame).message
    shown = _keys(scene)
    params = dict(style_image=neural["art"], weights=neural["weights"], device="cpu", download=False,
                  iterations=16, style_weight=20.0)
    expected = engine.stylize_keys(neural["media"]["images"], list(KEYS), method="neural", **params)
    for frame in KEYS:
        np.testing.assert_array_equal(shown[frame], expected[frame])
    alone = engine.stylize_keys(neural["media"]["images"], list(KEYS), method="neural", consistent=False,
                                **params)
    assert engine.key_disagreement(shown, neural["media"]["images"]) < \
        engine.key_disagreement(alone, neural["media"]["images"])

    # The last key marked as the anchor: it is stylized on its own, the others follow it.
    scene.karwai.key_for(16).anchor = True
    assert bpy.ops.karwai.stylize_keyframes(strip="seq", force=True) == {"FINISHED"}
    frame16 = read_rgb(neural["media"]["images"] / "shot_0016.png")
    np.testing.assert_array_equal(_keys(scene)[16], engine.stylize(frame16, method="neural", **params))

    # Keys Agree off: every key on its own, as before.
    scene.karwai.consistent_keys = False
    assert bpy.ops.karwai.stylize_keyframes(strip="seq", force=True) == {"FINISHED"}
    for frame in KEYS:
        np.testing.assert_array_equal(_keys(scene)[frame], alone[frame])


@pytest.mark.parametrize("method, params", [
    ("neural-video", "iterations=8"),
    ("fast-network", "steps=3; width=4; blocks=1; train_size=32"),
])
def test_stylize_video_adds_a_result_strip(neural, method, params):
    scene = neural["scene"]
    scene.karwai.video_method = method
    scene.karwai.video_params = params
    assert bpy.ops.karwai.stylize_video(strip="seq") == {"FINISHED"}
    results = result_strips(scene)
    assert len(results) == 1 and len(results[0].elements) == N
    folder = Path(bpy.path.abspath(results[0].directory))
    first = read_rgb(folder / results[0].elements[0].filename)
    source = read_rgb(neural["media"]["images"] / "shot_0001.png")
    assert first.shape == source.shape
    assert np.abs(first.astype(int) - source.astype(int)).mean() > 3
    if method == "fast-network":
        (network,) = (folder.parent / "networks").glob("*.pt")
        stamp = network.stat().st_mtime_ns
        assert bpy.ops.karwai.stylize_video(strip="seq") == {"FINISHED"}
        assert network.stat().st_mtime_ns == stamp  # reused, not trained again
    assert len(result_strips(scene)) == 1


def test_stylize_video_refuses_without_an_artwork(neural):
    scene = neural["scene"]
    scene.karwai.video_method = "neural-video"
    scene.karwai.default_style.style_image = ""
    with pytest.raises(RuntimeError, match="artwork"):
        bpy.ops.karwai.stylize_video(strip="seq")
    scene.karwai.video_method = "propagate"
    scene.karwai.default_style.style_image = neural["art"]
    with pytest.raises(RuntimeError, match="Neural Video or Fast Network"):
        bpy.ops.karwai.stylize_video(strip="seq")
    assert not result_strips(scene)
