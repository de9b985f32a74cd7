"""The optimising stylizers on a CUDA device, against the same run on the CPU.

Skipped where torch sees no CUDA device (CI has none); run on a GPU machine.
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

if not torch.cuda.is_available():
    pytest.skip("no CUDA device", allow_module_level=True)

from engine.stylizers import deepdream, neural, stylize, vgg  # noqa: E402
from helpers import weights, write_weights  # noqa: E402,F401 - the shared weights fixture
from test_stylize_neural import make_content, make_style  # noqa: E402


def psnr(a, b):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 99.0 if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def test_auto_device_is_cuda():
    assert vgg.resolve_device("auto").type == "cuda"


def test_model_runs_on_cuda_and_matches_the_cpu(weights):
    cpu = vgg.load_vgg19(weights, upto="conv5_1", device="cpu")
    gpu = vgg.load_vgg19(weights, upto="conv5_1", device="cuda")
    assert next(gpu.parameters()).device.type == "cuda"
    x = torch.rand(1, 3, 64, 96, generator=torch.Generator().manual_seed(5))
    layers = ["conv1_1", "conv3_1", "conv4_2", "conv5_1"]
    with torch.no_grad():
        a = cpu(x, layers)
        # TF32 would round the products to 10 bits; compare at full precision.
        prev = torch.backends.cudnn.allow_tf32
        torch.backends.cudnn.allow_tf32 = False
        try:
            b = gpu(x.cuda(), layers)
        finally:
            torch.backends.cudnn.allow_tf32 = prev
    for name in layers:
        scale = float(a[name].abs().max())
        torch.testing.assert_close(b[name].cpu(), a[name], rtol=1e-4, atol=1e-4 * scale)


def test_neural_on_cuda_follows_the_cpu_run(weights):
    content, style = make_content(48, 64), make_style()
    kw = dict(style_image=style, weights=weights, iterations=30, style_weight=10.0, seed=2)
    cpu_losses, gpu_losses = [], []
    on_cpu = neural.stylize_neural(content, device="cpu",
                                   progress=lambda s, n, l: cpu_losses.append(l), **kw)
    on_gpu = neural.stylize_neural(content, device="cuda",
                                   progress=lambda s, n, l: gpu_losses.append(l), **kw)
    assert on_gpu.shape == content.shape and on_gpu.dtype == np.uint8
    assert len(gpu_losses) == 30 and np.all(np.isfinite(gpu_losses))
    assert gpu_losses[-1] < 0.5 * gpu_losses[0]
    # The same problem from the same start: the first losses agree closely.
    assert abs(gpu_losses[0] - cpu_losses[0]) < 1e-3 * cpu_losses[0]
    # L-BFGS amplifies rounding differences, so the runs then drift apart a little
    # (27 dB apart after 30 iterations on an H100); unrelated images are ~10 dB apart.
    assert abs(gpu_losses[-1] - cpu_losses[-1]) < 0.1 * cpu_losses[-1]
    assert psnr(on_gpu, on_cpu) > 22.0
    assert np.abs(on_gpu.astype(int) - content).mean() > 2.0


def test_neural_on_cuda_is_deterministic_for_a_seed(weights):
    content, style = make_content(), make_style()
    kw = dict(style_image=style, weights=weights, iterations=6, init_noise=0.3, device="cuda")
    a = neural.stylize_neural(content, seed=3, **kw)
    b = neural.stylize_neural(content, seed=3, **kw)
    assert psnr(a, b) > 45.0


def test_deepdream_on_cuda_follows_the_cpu_run(weights):
    content = make_content(48, 64)
    kw = dict(weights=weights, layers=("conv3_1",), octaves=2, iterations=5, seed=0)
    on_cpu = deepdream.stylize_deepdream(content, device="cpu", **kw)
    on_gpu = deepdream.stylize_deepdream(content, device="cuda", **kw)
    assert on_gpu.shape == content.shape and on_gpu.dtype == np.uint8
    assert np.abs(on_gpu.astype(int) - content).mean() > 1.0
    assert psnr(on_gpu, on_cpu) > 30.0


def test_public_api_defaults_to_cuda(weights, monkeypatch):
    seen = []
    real = vgg.resolve_device
    monkeypatch.setattr(vgg, "resolve_device", lambda d: seen.append(real(d)) or seen[-1])
    out = stylize(make_content(), method="neural", style_image=make_style(), weights=weights,
                  iterations=3)
    assert out.shape == (32, 48, 3)
    assert seen and seen[0].type == "cuda"
