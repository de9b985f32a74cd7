"""Deep Dream (engine.stylizers.deepdream) with small random VGG19-layout weights."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from engine.stylizers import Cancelled, deepdream, vgg  # noqa: E402

from helpers import SMALL_WIDTHS, weights, write_weights  # noqa: E402,F401 - the shared weights fixture


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def frame(h=48, w=64, seed=0):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    img = np.stack([100 + 80 * np.sin(x / 5.0), 120 + 60 * np.cos(y / 7.0), 90 + 40 * (x + y) / (h + w)], -1)
    return np.clip(img + rng.normal(0, 4, img.shape), 0, 255).astype(np.uint8)


def activation(weights, img, layers):
    model = vgg.load_vgg19(weights, upto=layers[-1], pooling="max", device="cpu")
    x = torch.from_numpy(img.astype(np.float32).transpose(2, 0, 1)[None] / 255.0)
    with torch.no_grad():
        return float(deepdream.layer_activation(model, x, layers))


@pytest.mark.parametrize("layers", [("conv4_2",), ("conv2_1", "conv3_1")])
def test_dreaming_raises_the_target_layers_mean_activation(weights, layers):
    src = frame()
    out = deepdream.stylize_deepdream(src, layers=layers, octaves=2, iterations=6, step=0.02,
                                      weights=weights, device="cpu")
    assert out.shape == src.shape and out.dtype == np.uint8
    before = activation(weights, src, layers)
    after = activation(weights, out, layers)
    assert after > 1.2 * before, (before, after)


def test_progress_counts_every_iteration_of_every_octave(weights):
    calls = []
    deepdream.stylize_deepdream(frame(), octaves=3, octave_scale=1.4, iterations=4, weights=weights,
                                device="cpu", progress=lambda *a: calls.append(a))
    assert [c[0] for c in calls] == list(range(1, 13))
    assert all(c[1] == 12 for c in calls)
    assert all(np.isfinite(c[2]) for c in calls)
    # the objective grows while dreaming within the last (full-size) octave
    assert calls[-1][2] > calls[-4][2]


def test_octave_sizes():
    sizes = deepdream.octave_sizes(360, 640, octaves=3, octave_scale=1.4)
    assert sizes == [(360, 640), (257, 457), (184, 327)]
    assert deepdream.octave_sizes(40, 40, octaves=10, octave_scale=2.0) == [(40, 40), (20, 20)]


def test_detail_from_small_octaves_is_reinjected(weights):
    src = frame()
    one = deepdream.stylize_deepdream(src, octaves=1, iterations=3, weights=weights, device="cpu")
    three = deepdream.stylize_deepdream(src, octaves=3, iterations=3, weights=weights, device="cpu")
    # the extra, smaller octaves changed the result: their detail was carried up
    assert np.abs(one.astype(int) - three).mean() > 1.0


def test_deterministic_with_seed_and_jitter(weights):
    a = deepdream.stylize_deepdream(frame(), iterations=3, octaves=2, seed=1, weights=weights, device="cpu")
    b = deepdream.stylize_deepdream(frame(), iterations=3, octaves=2, seed=1, weights=weights, device="cpu")
    c = deepdream.stylize_deepdream(frame(), iterations=3, octaves=2, seed=2, weights=weights, device="cpu")
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_cancel_stops_within_one_iteration(weights):
    seen = []
    with pytest.raises(Cancelled):
        deepdream.stylize_deepdream(frame(), octaves=3, iterations=5, weights=weights, device="cpu",
                                    progress=lambda s, n, l: seen.append(s), cancel=lambda: len(seen) >= 2)
    assert seen == [1, 2]


@pytest.mark.parametrize("kw,name", [
    (dict(layers=("conv7_1",)), "layers"),
    (dict(layers=()), "layers"),
    (dict(octaves=0), "octaves"),
    (dict(octave_scale=1.0), "octave_scale"),
    (dict(iterations=-2), "iterations"),
    (dict(step=0), "step"),
    (dict(jitter=-1), "jitter"),
    (dict(cancel="now"), "cancel"),
])
def test_bad_parameters_name_themselves(weights, kw, name):
    with pytest.raises(ValueError, match=name):
        deepdream.stylize_deepdream(frame(), weights=weights, device="cpu", **kw)


def test_small_and_empty_frames(weights):
    with pytest.raises(ValueError, match="empty"):
        deepdream.stylize_deepdream(np.zeros((0, 4, 3), np.uint8), weights=weights, device="cpu")
    with pytest.raises(ValueError, match="16 pixels"):
        deepdream.stylize_deepdream(np.zeros((10, 40, 3), np.uint8), weights=weights, device="cpu")
    grey = frame()[..., 1]
    out = deepdream.stylize_deepdream(grey, iterations=1, octaves=1, weights=weights, device="cpu")
    assert out.shape == grey.shape + (3,)
