"""Gatys style transfer (engine.stylizers.neural) with small random VGG19-layout weights."""

import os
import threading

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from engine.stylizers import Cancelled  # noqa: E402
from engine.stylizers import neural  # noqa: E402

from helpers import SMALL_WIDTHS, weights, write_weights  # noqa: E402,F401 - the shared weights fixture


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def make_content(h=32, w=48, seed=0):
    y, x = np.mgrid[0:h, 0:w]
    img = np.zeros((h, w, 3), np.float32)
    img[..., 0] = 60 + 120 * x / w
    img[..., 1] = 80 + 90 * y / h
    img[..., 2] = 150
    img[(y - h / 2) ** 2 + (x - w / 3) ** 2 < (h / 4) ** 2] = (200, 170, 60)
    rng = np.random.default_rng(seed)
    img += rng.normal(0, 3, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def make_style(h=40, w=40, seed=1):
    rng = np.random.default_rng(seed)
    img = np.zeros((h, w, 3), np.uint8)
    for i in range(0, w, 4):
        img[:, i:i + 2] = rng.integers(0, 256, 3)
    img[::5] = (250, 250, 250)
    return img


# ---------------------------------------------------------------------------
# Losses against plain formulas
# ---------------------------------------------------------------------------


def test_gram_matrix_plain_formula():
    rng = np.random.default_rng(0)
    f = rng.normal(size=(2, 5, 4, 3)).astype(np.float32)
    g = neural.gram_matrix(torch.from_numpy(f)).numpy()
    for n in range(2):
        F = f[n].reshape(5, 12)
        np.testing.assert_allclose(g[n], F @ F.T / 12, rtol=1e-5, atol=1e-6)


def test_gram_matrix_gradient_matches_autograd_of_the_formula():
    rng = np.random.default_rng(5)
    f = torch.from_numpy(rng.normal(size=(1, 6, 5, 7)).astype(np.float64))
    target = torch.from_numpy(rng.normal(size=(1, 6, 6)))
    x1 = f.clone().requires_grad_(True)
    g1 = neural.gram_matrix(x1)
    (grad1,) = torch.autograd.grad((g1 - target).pow(2).sum(), x1)
    x2 = f.clone().requires_grad_(True)
    flat = x2.reshape(1, 6, 35)
    g2 = flat @ flat.transpose(1, 2) / 35
    (grad2,) = torch.autograd.grad((g2 - target).pow(2).sum(), x2)
    torch.testing.assert_close(g1, g2)
    torch.testing.assert_close(grad1, grad2)
    # the autograd function itself, numerically
    assert torch.autograd.gradcheck(lambda t: neural.gram_matrix(t), (f[:, :3, :2, :3].clone().requires_grad_(True),))


def test_content_loss_plain_formula():
    rng = np.random.default_rng(1)
    F = rng.normal(size=(1, 6, 5, 4)).astype(np.float32)
    P = rng.normal(size=(1, 6, 5, 4)).astype(np.float32)
    got = float(neural.content_loss(torch.from_numpy(F), torch.from_numpy(P)))
    gatys = 0.5 * np.sum((F.astype(np.float64) - P) ** 2)  # Gatys et al. eq. 1
    assert got == pytest.approx(gatys / (0.5 * np.sum(P.astype(np.float64) ** 2)), rel=1e-5)
    assert float(neural.content_loss(torch.from_numpy(P), torch.from_numpy(P))) == 0.0
    # the precomputed denominator the optimiser passes gives the same value
    energy = float(np.sum(P.astype(np.float64) ** 2))
    assert float(neural.content_loss(torch.from_numpy(F), torch.from_numpy(P), target_energy=energy)) \
        == pytest.approx(got, rel=1e-6)


def test_style_loss_is_gatys_layer_loss_up_to_a_constant():
    rng = np.random.default_rng(2)
    N, h, w = 6, 5, 4
    M = h * w
    X = np.abs(rng.normal(size=(1, N, h, w))).astype(np.float64)
    A_img = np.abs(rng.normal(size=(1, N, h, w))).astype(np.float64)
    G_raw = X[0].reshape(N, M) @ X[0].reshape(N, M).T
    A_raw = A_img[0].reshape(N, M) @ A_img[0].reshape(N, M).T
    gatys_El = np.sum((G_raw - A_raw) ** 2) / (4 * N ** 2 * M ** 2)  # Gatys et al. eq. 4
    G = neural.gram_matrix(torch.from_numpy(X).float())
    A = neural.gram_matrix(torch.from_numpy(A_img).float())
    got = float(neural.style_loss(G, A))
    assert got == pytest.approx(np.sum((G_raw - A_raw) ** 2) / np.sum(A_raw ** 2), rel=1e-4)
    energy = float(np.sum(A_raw ** 2)) / M ** 2
    assert float(neural.style_loss(G, A, target_energy=energy)) == pytest.approx(got, rel=1e-5)
    # The constant only depends on the layer and the style target.
    assert got == pytest.approx(gatys_El * 4 * N ** 2 * M ** 2 / np.sum(A_raw ** 2), rel=1e-4)


def test_tv_loss_plain_formula():
    rng = np.random.default_rng(3)
    x = rng.random((1, 3, 7, 9)).astype(np.float32)
    dy = np.diff(x, axis=2)
    dx = np.diff(x, axis=3)
    expected = (np.sum(dy.astype(np.float64) ** 2) + np.sum(dx.astype(np.float64) ** 2)) / x.size
    assert float(neural.tv_loss(torch.from_numpy(x))) == pytest.approx(expected, rel=1e-5)
    assert float(neural.tv_loss(torch.ones(1, 3, 5, 5))) == 0.0


def test_yiq_round_trip():
    rng = np.random.default_rng(4)
    rgb = rng.random((5, 6, 3)).astype(np.float32)
    np.testing.assert_allclose(neural.yiq_to_rgb(neural.rgb_to_yiq(rgb)), rgb, atol=1e-5)
    grey = np.full((2, 2, 3), 0.5, np.float32)
    np.testing.assert_allclose(neural.rgb_to_yiq(grey)[..., 1:], 0.0, atol=1e-6)


# ---------------------------------------------------------------------------
# Schedule
# ---------------------------------------------------------------------------


def test_pyramid_levels():
    assert neural.pyramid_levels(360, 640, coarse_size=256) == [(90, 160), (180, 320), (360, 640)]
    assert neural.pyramid_levels(100, 120, coarse_size=256) == [(100, 120)]
    levels = neural.pyramid_levels(1080, 1920, coarse_size=256)
    assert levels[-1] == (1080, 1920) and max(levels[0]) <= 256
    # never below 16 pixels on the short side
    assert neural.pyramid_levels(20, 400, coarse_size=16)[0][0] >= 16


@pytest.mark.parametrize("iterations,levels", [(300, 3), (7, 3), (1, 4), (0, 2), (50, 1)])
def test_split_iterations(iterations, levels):
    counts = neural.split_iterations(iterations, levels)
    assert len(counts) == levels
    assert sum(counts) == iterations
    assert all(c >= 0 for c in counts)
    if iterations:
        assert counts[-1] >= 1
    if iterations >= 21 and levels == 3:
        assert counts[0] > counts[1] > counts[2]


# ---------------------------------------------------------------------------
# Optimisation
# ---------------------------------------------------------------------------


def run(weights, frame=None, **kw):
    losses = []
    kw.setdefault("style_image", make_style())
    kw.setdefault("device", "cpu")
    out = neural.stylize_neural(make_content() if frame is None else frame, weights=weights,
                                progress=lambda s, n, l: losses.append((s, n, l)), **kw)
    return out, losses


def test_lbfgs_halves_the_loss_in_50_iterations(weights):
    # A style-led weighting, so the optimum lies well below half the start.
    out, losses = run(weights, iterations=50, style_weight=10.0)
    assert out.shape == (32, 48, 3) and out.dtype == np.uint8
    assert [s for s, _, _ in losses] == list(range(1, 51))
    assert all(n == 50 for _, n, _ in losses)
    first, last = losses[0][2], losses[-1][2]
    assert last <= 0.5 * first, (first, last)
    # reported losses are those of the current iterate: never increasing
    assert all(b <= a + 1e-9 for (_, _, a), (_, _, b) in zip(losses, losses[1:]))


def test_adam_lowers_the_loss(weights):
    _, losses = run(weights, iterations=40, optimizer="adam", learning_rate=0.02)
    assert losses[-1][2] < 0.8 * losses[0][2]


def test_output_changes_towards_the_style(weights):
    content = make_content()
    out, _ = run(weights, iterations=20)
    assert np.abs(out.astype(int) - content).mean() > 2.0


def test_zero_iterations_returns_the_content(weights):
    content = make_content()
    out, losses = run(weights, iterations=0)
    assert losses == []
    np.testing.assert_array_equal(out, content)


def test_deterministic_on_cpu_and_seeded(weights):
    a, _ = run(weights, iterations=8, init_noise=0.3, seed=3)
    b, _ = run(weights, iterations=8, init_noise=0.3, seed=3)
    c, _ = run(weights, iterations=8, init_noise=0.3, seed=4)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_cancel_stops_within_one_iteration(weights):
    seen = []
    stop = {"flag": False}

    def progress(step, total, loss):
        seen.append(step)
        if step == 3:
            stop["flag"] = True

    with pytest.raises(Cancelled):
        neural.stylize_neural(make_content(), style_image=make_style(), weights=weights, iterations=50,
                              device="cpu", progress=progress, cancel=lambda: stop["flag"])
    assert seen == [1, 2, 3]


def test_cancel_accepts_an_event(weights):
    event = threading.Event()
    event.set()
    calls = []
    with pytest.raises(Cancelled):
        neural.stylize_neural(make_content(), style_image=make_style(), weights=weights, iterations=5,
                              device="cpu", progress=lambda *a: calls.append(a), cancel=event)
    assert calls == []


def test_progress_reports_per_iteration_finite_losses(weights):
    _, losses = run(weights, iterations=6)
    assert len(losses) == 6
    assert all(np.isfinite(l) and l > 0 for _, _, l in losses)


def test_colour_preservation_keeps_the_content_chroma(weights):
    content = make_content()
    style = np.zeros((40, 40, 3), np.uint8)
    style[:, ::3] = (255, 0, 40)  # strongly coloured style
    style[:, 1::3] = (0, 220, 255)
    out, _ = run(weights, iterations=20, style_image=style, preserve_color=True, style_weight=20.0)
    yiq_c = neural.rgb_to_yiq(content / 255.0)
    yiq_o = neural.rgb_to_yiq(out / 255.0)
    chroma_err = np.abs(yiq_o[..., 1:] - yiq_c[..., 1:]).mean() * 255
    luma_change = np.abs(yiq_o[..., 0] - yiq_c[..., 0]).mean() * 255
    assert luma_change > 2.0  # something was transferred ...
    assert chroma_err < 1.0  # ... but only in luminance
    plain, _ = run(weights, iterations=20, style_image=style, style_weight=20.0)
    yiq_p = neural.rgb_to_yiq(plain / 255.0)
    assert np.abs(yiq_p[..., 1:] - yiq_c[..., 1:]).mean() * 255 > 3 * chroma_err


def test_coarse_to_fine_and_max_size_keep_the_frame_size(weights):
    frame = make_content(40, 70)
    out, losses = run(weights, frame=frame, iterations=12, coarse_size=24)
    assert out.shape == (40, 70, 3)
    assert len(losses) == 12 and losses[-1][1] == 12
    out2, _ = run(weights, frame=frame, iterations=3, max_size=35)
    assert out2.shape == (40, 70, 3)


def test_style_scale_and_layer_weights_are_used(weights):
    a, _ = run(weights, iterations=6, style_scale=0.5)
    b, _ = run(weights, iterations=6, style_scale=2.0)
    assert not np.array_equal(a, b)
    c, _ = run(weights, iterations=6, style_layers=("conv1_1", "conv3_1"), style_layer_weights=(1.0, 0.0))
    d, _ = run(weights, iterations=6, style_layers=("conv1_1", "conv3_1"), style_layer_weights=(0.0, 1.0))
    assert not np.array_equal(c, d)


@pytest.mark.parametrize("frame", [
    make_content()[..., 0],  # grey
    np.dstack([make_content(), np.full((32, 48), 255, np.uint8)]),  # RGBA
    make_content().astype(np.uint16) * 257,  # 16-bit
    make_content().astype(np.float32),  # float 0..255
])
def test_grey_alpha_16bit_frames_are_handled(weights, frame):
    out, _ = run(weights, frame=frame, iterations=2)
    assert out.shape == (32, 48, 3) and out.dtype == np.uint8


def test_style_image_from_16bit_grey_file(weights, tmp_path):
    import cv2

    path = tmp_path / "style16.png"
    cv2.imwrite(str(path), (np.arange(30 * 30).reshape(30, 30) * 70).astype(np.uint16))
    out, _ = run(weights, iterations=2, style_image=str(path))
    assert out.shape == (32, 48, 3)


@pytest.mark.parametrize("kw,name", [
    (dict(iterations=-1), "iterations"),
    (dict(iterations=2.5), "iterations"),
    (dict(content_weight=-1.0), "content_weight"),
    (dict(style_weight="lots"), "style_weight"),
    (dict(optimizer="sgd"), "optimizer"),
    (dict(style_layers=("conv9_9",)), "style_layers"),
    (dict(style_layers=()), "style_layers"),
    (dict(style_layer_weights=(1.0, 2.0)), "style_layer_weights"),
    (dict(content_layer="pool9"), "content_layer"),
    (dict(style_scale=0.0), "style_scale"),
    (dict(init_noise=2.0), "init_noise"),
    (dict(coarse_size=4), "coarse_size"),
    (dict(pooling="median"), "pooling"),
    (dict(preserve_color="yes"), "preserve_color"),
    (dict(device="quantum"), "device"),
    (dict(progress=5), "progress"),
    (dict(style_image=None), "style_image"),
    (dict(style_image=42), "style_image"),
])
def test_bad_parameters_name_themselves(weights, kw, name):
    args = dict(style_image=make_style(), weights=weights, iterations=1, device="cpu")
    args.update(kw)
    with pytest.raises(ValueError, match=name):
        neural.stylize_neural(make_content(), **args)


@pytest.mark.parametrize("frame,match", [
    (np.zeros((0, 10, 3), np.uint8), "empty"),
    (np.zeros((8, 8, 3), np.uint8), "16 pixels"),
    (np.zeros((20, 20, 5), np.uint8), "shape"),
    (np.zeros((20, 20, 3), np.int32), "dtype"),
    (np.full((20, 20, 3), np.nan, np.float32), "NaN"),
    ([[1, 2], [3, 4]], "numpy array"),
])
def test_bad_frames(weights, frame, match):
    with pytest.raises(ValueError, match=match):
        neural.stylize_neural(frame, style_image=make_style(), weights=weights, iterations=1, device="cpu")


def test_missing_weights_file_is_a_clear_error(tmp_path):
    from engine.stylizers.vgg import WeightsNotFoundError

    with pytest.raises(WeightsNotFoundError, match="nothere.pth"):
        neural.stylize_neural(make_content(), style_image=make_style(), weights=tmp_path / "nothere.pth",
                              iterations=1, device="cpu")


def test_few_iterations_do_not_blur_through_unused_levels(weights):
    content = make_content(64, 96)
    out, losses = run(weights, frame=content, iterations=0, coarse_size=24)
    np.testing.assert_array_equal(out, content)
    out, losses = run(weights, frame=content, iterations=1, coarse_size=24)
    assert len(losses) == 1
    # one small step from the full-size content, not from a 4x downscaled copy
    assert np.abs(out.astype(int) - content).mean() < 2.0


def test_engine_stylize_finds_the_official_file_in_the_hub_cache(tmp_path, monkeypatch):
    """What a user's machine meets after a download (or a copy from another machine):
    torchvision's file name under ``torch.hub.get_dir()/checkpoints/``, found with no
    ``weights=`` and no network, in a process that set TORCH_HOME."""
    import subprocess
    import sys
    from pathlib import Path

    from engine.stylizers import vgg

    home = tmp_path / "torch-home"
    checkpoints = home / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    write_weights(checkpoints / "vgg19-dcbb9e9d.pth")
    np.save(tmp_path / "content.npy", make_content())
    from PIL import Image

    Image.fromarray(make_style()).save(tmp_path / "style.png")
    code = (
        "import numpy as np, engine, torch, os\n"
        "from engine.stylizers import vgg\n"
        "assert vgg.hub_weights_path() == os.path.join(os.environ['TORCH_HOME'], 'hub', "
        "'checkpoints', 'vgg19-dcbb9e9d.pth'), vgg.hub_weights_path()\n"
        "frame = np.load('content.npy')\n"
        "out = engine.stylize(frame, method='neural', style_image='style.png', iterations=4, "
        "download=False, device='cpu', max_size=48)\n"
        "assert out.shape == frame.shape and out.dtype == np.uint8\n"
        "print('ok', float(np.abs(out.astype(int) - frame).mean()) > 0)\n"
    )
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, TORCH_HOME=str(home), PYTHONPATH=str(root))
    res = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.split() == ["ok", "True"]
    assert vgg.WEIGHTS_FILENAME == "vgg19-dcbb9e9d.pth"
