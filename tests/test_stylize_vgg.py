"""VGG19 network and weights loading (engine.stylizers.vgg).

The real ImageNet file cannot be downloaded here, so the tests write small
state dicts with torchvision's exact key names (features.0 ... features.34 and
classifier.*) and random weights, and load them through the same code path.
"""

import hashlib
import os
import pathlib
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from engine.stylizers import vgg  # noqa: E402

# torchvision vgg19: convolutions at these indices of `features`.
TV_CONV_INDICES = [0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34]
SMALL_WIDTHS = [4, 4, 8, 8, 8, 8, 8, 8, 16, 16, 16, 16, 16, 16, 16, 16]


def write_weights(path, widths=SMALL_WIDTHS, seed=0, indices=TV_CONV_INDICES, classifier=True):
    """torch.save a torchvision-layout vgg19 state dict with random weights."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    in_ch = 3
    for idx, out_ch in zip(indices, widths):
        std = (2.0 / (9 * out_ch)) ** 0.5
        state[f"features.{idx}.weight"] = torch.randn(out_ch, in_ch, 3, 3, generator=g) * std
        state[f"features.{idx}.bias"] = torch.randn(out_ch, generator=g) * 0.01
        in_ch = out_ch
    if classifier:
        for i, (o, n) in zip((0, 3, 6), ((8, 16), (8, 8), (5, 8))):
            state[f"classifier.{i}.weight"] = torch.randn(o, n, generator=g)
            state[f"classifier.{i}.bias"] = torch.zeros(o)
    torch.save(state, path)
    return state


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def hub_dir(tmp_path):
    old = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "hub"))
    yield tmp_path / "hub"
    torch.hub.set_dir(old)


def test_layer_names_follow_torchvision_indices():
    assert len(vgg.LAYER_NAMES) == 37
    assert list(vgg.CONV_INDICES) == TV_CONV_INDICES
    assert vgg.LAYER_NAMES[0] == "conv1_1"
    assert vgg.LAYER_NAMES[4] == "pool1"
    assert vgg.LAYER_NAMES[21] == "conv4_2"
    assert vgg.LAYER_NAMES[28] == "conv5_1"
    assert vgg.LAYER_NAMES[34] == "conv5_4"
    assert vgg.LAYER_NAMES[36] == "pool5"
    # convX_Y means the rectified response, right after the convolution.
    assert vgg.layer_index("conv4_2") == 22
    assert vgg.layer_index("relu4_2") == 22
    with pytest.raises(ValueError, match="conv9_1"):
        vgg.layer_index("conv9_1")


def test_full_size_model_has_torchvision_state_dict_keys():
    model = vgg.VGG19([64, 64, 128, 128] + [256] * 4 + [512] * 8)
    keys = set(model.state_dict())
    expected = {f"features.{i}.{p}" for i in TV_CONV_INDICES for p in ("weight", "bias")}
    assert keys == expected
    assert tuple(model.state_dict()["features.34.weight"].shape) == (512, 512, 3, 3)
    assert tuple(model.state_dict()["features.0.weight"].shape) == (64, 3, 3, 3)


def test_explicit_path_loads_the_file_values(tmp_path):
    path = tmp_path / "w.pth"
    state = write_weights(path)
    model = vgg.load_vgg19(path, upto="conv5_1", device="cpu")
    assert torch.equal(model.features[0].weight, state["features.0.weight"])
    assert torch.equal(model.features[21].bias, state["features.21.bias"])
    assert torch.equal(model.features[28].weight, state["features.28.weight"])
    assert not any(p.requires_grad for p in model.parameters())
    assert not model.training


def test_forward_is_normalised_conv_relu(tmp_path):
    path = tmp_path / "w.pth"
    state = write_weights(path)
    model = vgg.load_vgg19(path, upto="conv2_1", device="cpu")
    x = torch.rand(1, 3, 12, 10, generator=torch.Generator().manual_seed(3))
    out = model(x, ["conv1_1", "conv2_1"])
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    h = torch.relu(torch.nn.functional.conv2d((x - mean) / std, state["features.0.weight"],
                                              state["features.0.bias"], padding=1))
    torch.testing.assert_close(out["conv1_1"], h, rtol=1e-4, atol=1e-5)
    conv = torch.nn.functional.conv2d
    h = torch.relu(conv(h, state["features.2.weight"], state["features.2.bias"], padding=1))
    h = torch.nn.functional.max_pool2d(h, 2)
    h = torch.relu(conv(h, state["features.5.weight"], state["features.5.bias"], padding=1))
    torch.testing.assert_close(out["conv2_1"], h, rtol=1e-4, atol=1e-5)
    assert out["conv2_1"].shape == (1, 8, 6, 5)


def test_average_pooling_option(tmp_path):
    path = tmp_path / "w.pth"
    write_weights(path)
    model = vgg.load_vgg19(path, upto="conv2_1", pooling="avg", device="cpu")
    assert isinstance(model.features[4], torch.nn.AvgPool2d)


def test_missing_explicit_file_names_the_file(tmp_path):
    missing = tmp_path / "nowhere" / "vgg19-dcbb9e9d.pth"
    with pytest.raises(vgg.WeightsNotFoundError) as err:
        vgg.load_vgg19(missing)
    msg = str(err.value)
    assert str(missing) in msg
    assert vgg.WEIGHTS_URL in msg
    assert "weights=" in msg


def test_explicit_path_has_no_fallback_to_the_cache(tmp_path, hub_dir):
    os.makedirs(os.path.dirname(vgg.hub_weights_path()))
    write_weights(vgg.hub_weights_path())
    with pytest.raises(vgg.WeightsNotFoundError):
        vgg.resolve_weights(tmp_path / "missing.pth")


def test_hub_cache_is_used(hub_dir):
    cached = vgg.hub_weights_path()
    assert cached == os.path.join(str(hub_dir), "checkpoints", "vgg19-dcbb9e9d.pth")
    os.makedirs(os.path.dirname(cached))
    write_weights(cached, seed=5)
    assert vgg.resolve_weights(None, download=False) == cached
    model = vgg.load_vgg19(None, upto="conv1_1", device="cpu", download=False)
    assert model.features[0].weight.shape == (4, 3, 3, 3)


def test_nothing_available_without_download(hub_dir):
    with pytest.raises(vgg.WeightsNotFoundError) as err:
        vgg.resolve_weights(None, download=False)
    msg = str(err.value)
    assert "vgg19-dcbb9e9d.pth" in msg
    assert vgg.hub_weights_path() in msg
    assert vgg.WEIGHTS_URL in msg


def _file_url(path):
    return pathlib.Path(path).resolve().as_uri()


def test_weights_constants_are_torchvisions(tmp_path):
    """The file name, URL, size and hash are torchvision's published ImageNet VGG19
    (torchvision/models/vgg.py, ``VGG19_Weights.IMAGENET1K_V1``), and the name
    carries the hash prefix the way torch.hub's ``check_hash`` reads it."""
    assert vgg.WEIGHTS_URL == "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"
    assert vgg.WEIGHTS_FILENAME == vgg.WEIGHTS_URL.rsplit("/", 1)[1]
    assert vgg.WEIGHTS_SHA256 == "dcbb9e9dad569fff7a846263a77324fc34978fea2bfb039c012d710e1776ae44"
    assert vgg.WEIGHTS_SIZE == 574_673_361
    # torchvision publishes the size as "_file_size": 548.051 (MiB, rounded).
    assert round(vgg.WEIGHTS_SIZE / 2**20, 3) == 548.051
    prefix = torch.hub.HASH_REGEX.search(vgg.WEIGHTS_FILENAME).group(1)
    assert vgg.WEIGHTS_SHA256.startswith(prefix) and len(prefix) == 8
    assert os.path.basename(vgg.hub_weights_path()) == vgg.WEIGHTS_FILENAME
    try:
        from torchvision.models import VGG19_Weights
    except Exception:  # torchvision does not import beside the local torch wheel
        return
    published = VGG19_Weights.IMAGENET1K_V1
    assert published.url == vgg.WEIGHTS_URL
    assert published.meta["_file_size"] == round(vgg.WEIGHTS_SIZE / 2**20, 3)


def test_missing_network_gives_clear_error(hub_dir, tmp_path, monkeypatch):
    nowhere = tmp_path / "server" / vgg.WEIGHTS_FILENAME
    monkeypatch.setattr(vgg, "WEIGHTS_URL", _file_url(nowhere))
    with pytest.raises(vgg.WeightsNotFoundError) as err:
        vgg.resolve_weights(None, download=True)
    msg = str(err.value)
    assert "download" in msg and "URLError" in msg and vgg.WEIGHTS_FILENAME in msg
    assert os.listdir(os.path.dirname(vgg.hub_weights_path())) == []


def test_corrupted_download_is_refused_and_leaves_nothing(hub_dir, tmp_path, monkeypatch):
    """A download whose bytes are not the published file (torch.hub checks the whole
    SHA-256) is refused with a clear message, and nothing lands in the cache."""
    served = tmp_path / "server" / vgg.WEIGHTS_FILENAME
    served.parent.mkdir()
    write_weights(served)  # a valid checkpoint, but not the published bytes
    monkeypatch.setattr(vgg, "WEIGHTS_URL", _file_url(served))
    with pytest.raises(vgg.WeightsNotFoundError) as err:
        vgg.resolve_weights(None, download=True)
    msg = str(err.value)
    assert "invalid hash value" in msg and vgg.WEIGHTS_SHA256 in msg
    assert os.listdir(os.path.dirname(vgg.hub_weights_path())) == []
    with pytest.raises(vgg.WeightsNotFoundError):
        vgg.resolve_weights(None, download=False)


def test_download_with_the_right_hash_lands_in_the_cache(hub_dir, tmp_path, monkeypatch):
    served = tmp_path / "server" / vgg.WEIGHTS_FILENAME
    served.parent.mkdir()
    write_weights(served, seed=3)
    monkeypatch.setattr(vgg, "WEIGHTS_URL", _file_url(served))
    monkeypatch.setattr(vgg, "WEIGHTS_SHA256", hashlib.sha256(served.read_bytes()).hexdigest())
    assert vgg.resolve_weights(None, download=True) == vgg.hub_weights_path()
    assert pathlib.Path(vgg.hub_weights_path()).read_bytes() == served.read_bytes()
    model = vgg.load_vgg19(None, upto="conv1_1", device="cpu", download=False)
    assert model.features[0].weight.shape == (4, 3, 3, 3)


def test_corrupt_file_is_reported(tmp_path):
    path = tmp_path / "vgg19-dcbb9e9d.pth"
    path.write_bytes(b"PK\x03\x04 this is not a checkpoint" * 10)
    with pytest.raises(vgg.WeightsError) as err:
        vgg.load_vgg19(path)
    assert str(path) in str(err.value)
    assert "corrupt" in str(err.value)


def test_truncated_file_is_reported(tmp_path):
    good = tmp_path / "good.pth"
    write_weights(good)
    data = good.read_bytes()
    bad = tmp_path / "bad.pth"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(vgg.WeightsError, match="bad.pth"):
        vgg.load_vgg19(bad)


def test_wrong_layout_vgg16_keys(tmp_path):
    path = tmp_path / "vgg16.pth"
    # vgg16 puts its convolutions at other indices; features.16 is a pooling there.
    vgg16_idx = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]
    write_weights(path, widths=SMALL_WIDTHS[:13], indices=vgg16_idx)
    with pytest.raises(vgg.WeightsError) as err:
        vgg.load_vgg19(path, upto="conv5_1")
    assert "features.16.weight" in str(err.value)
    assert "layout" in str(err.value)


def test_wrong_shapes_are_reported(tmp_path):
    path = tmp_path / "w.pth"
    state = write_weights(path)
    state["features.2.weight"] = torch.zeros(4, 5, 3, 3)
    torch.save(state, path)
    with pytest.raises(vgg.WeightsError, match=r"features\.2\.weight"):
        vgg.load_vgg19(path)


def test_not_a_state_dict(tmp_path):
    path = tmp_path / "w.pth"
    torch.save([1, 2, 3], path)
    with pytest.raises(vgg.WeightsError, match="state dict"):
        vgg.load_vgg19(path)


def test_batchnorm_layout_is_refused(tmp_path):
    path = tmp_path / "bn.pth"
    state = write_weights(path)
    state["features.1.running_mean"] = torch.zeros(4)
    torch.save(state, path)
    with pytest.raises(vgg.WeightsError, match="vgg19_bn"):
        vgg.load_vgg19(path)


def test_non_finite_weights_are_refused(tmp_path):
    path = tmp_path / "nan.pth"
    state = write_weights(path)
    state["features.0.weight"][0, 0, 0, 0] = float("nan")
    torch.save(state, path)
    with pytest.raises(vgg.WeightsError, match="NaN"):
        vgg.load_vgg19(path)


def test_only_the_needed_depth_is_required(tmp_path):
    path = tmp_path / "shallow.pth"
    write_weights(path, widths=SMALL_WIDTHS[:3], indices=TV_CONV_INDICES[:3], classifier=False)
    model = vgg.load_vgg19(path, upto="conv2_1", device="cpu")
    assert model(torch.rand(1, 3, 8, 8), ["conv2_1"])["conv2_1"].shape == (1, 8, 4, 4)
    with pytest.raises(vgg.WeightsError, match="features.7.weight"):
        vgg.load_vgg19(path, upto="conv5_1")


def test_asking_deeper_than_loaded_is_an_error(tmp_path):
    path = tmp_path / "w.pth"
    write_weights(path)
    model = vgg.load_vgg19(path, upto="conv2_1", device="cpu")
    with pytest.raises(ValueError, match="deeper"):
        model(torch.rand(1, 3, 16, 16), ["conv3_1"])


def test_model_cache_reloads_a_changed_file(tmp_path):
    path = tmp_path / "w.pth"
    write_weights(path, seed=1)
    a = vgg.load_vgg19(path, upto="conv1_1", device="cpu")
    assert vgg.load_vgg19(path, upto="conv1_1", device="cpu") is a
    state = write_weights(path, seed=2)
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    b = vgg.load_vgg19(path, upto="conv1_1", device="cpu")
    assert torch.equal(b.features[0].weight, state["features.0.weight"])


def test_resolve_device():
    assert vgg.resolve_device("cpu").type == "cpu"
    assert vgg.resolve_device("auto").type in ("cpu", "cuda", "mps")
    with pytest.raises(ValueError, match="device"):
        vgg.resolve_device("warp-drive")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA"):
            vgg.resolve_device("cuda")
    if not torch.cuda.is_available() and not torch.backends.mps.is_available():
        assert vgg.resolve_device("auto").type == "cpu"


def test_vgg_uses_no_private_torch_function_and_leaves_openmp_alone():
    """Issue 12: no ``torch._*`` calls (they may change in any release) and no
    ``OMP_WAIT_POLICY`` set at import (it would change OpenMP for the whole process,
    Blender's own included)."""
    import ast

    source = Path(vgg.__file__).read_text()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "torch":
            assert not node.attr.startswith("_"), f"torch.{node.attr}"
    code = ("import os, sys; os.environ.pop('OMP_WAIT_POLICY', None)\n"
            "import engine.stylizers.vgg\n"
            "print(os.environ.get('OMP_WAIT_POLICY'))\n")
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300,
                         cwd=Path(__file__).resolve().parents[1])
    assert run.returncode == 0, run.stderr
    assert run.stdout.split()[-1] == "None"


def test_weights_that_are_not_a_regular_file_are_refused(tmp_path):
    fifo = tmp_path / "vgg19-dcbb9e9d.pth"
    os.mkfifo(fifo)
    with pytest.raises(vgg.WeightsNotFoundError, match="not a regular file"):
        vgg.resolve_weights(fifo)
    with pytest.raises(vgg.WeightsNotFoundError, match="not a regular file"):
        vgg.resolve_weights(tmp_path)
