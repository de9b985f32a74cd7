"""VGG19 feature extractor in plain torch, loading torchvision's ImageNet weights.

The module layout mirrors ``torchvision.models.vgg19().features`` index for
index, so the official file ``vgg19-dcbb9e9d.pth`` (Simonyan & Zisserman,
"Very Deep Convolutional Networks for Large-Scale Image Recognition", ICLR 2015,
as trained and published by torchvision) loads unchanged. Its classifier keys
are ignored. The channel widths are read from the file, so a small network with
the same keys (as the tests write) loads through the same code.

Weights come from, in order: an explicit path; the torch hub cache
(``torch.hub.get_dir()/checkpoints/vgg19-dcbb9e9d.pth``); a download into that
cache where the network allows.

On the CPU the network runs torch's own kernels on channels-last tensors
(oneDNN). It uses only torch's public API: it once called the private
``torch._nnpack_spatial_convolution`` (Winograd convolutions, up to 2-4x faster
on wide layers) and set ``OMP_WAIT_POLICY=PASSIVE`` at import so that NNPACK's
thread pool and OpenMP's did not fight. Both were dropped (issue 12): a private
function may change or vanish in any torch release, and an environment variable
set at import changes OpenMP in every library of the process that imports the
engine, Blender's own included. A user who wants the OpenMP setting can set
``OMP_WAIT_POLICY`` before starting Python; ``python build.py bench stylize``
measures the CPU figures.
"""

from __future__ import annotations

import collections
import os
import threading

import torch
from torch import nn

__all__ = [
    "WEIGHTS_FILENAME",
    "WEIGHTS_URL",
    "WEIGHTS_SHA256",
    "WEIGHTS_SIZE",
    "LAYER_NAMES",
    "CONV_INDICES",
    "WeightsNotFoundError",
    "WeightsError",
    "VGG19",
    "hub_weights_path",
    "resolve_weights",
    "load_state_dict",
    "load_vgg19",
    "resolve_device",
    "layer_index",
]

# torchvision's ImageNet VGG19, as published in torchvision/models/vgg.py
# (``VGG19_Weights.IMAGENET1K_V1``: url ".../models/vgg19-dcbb9e9d.pth",
# "_file_size": 548.051 MiB). The name follows torch.hub's convention: the part
# after the last "-" is the start of the file's SHA-256, which
# ``torch.hub.load_state_dict_from_url(check_hash=True)`` checks (torch/hub.py,
# ``HASH_REGEX``), so the file must keep exactly this name in the hub cache.
WEIGHTS_FILENAME = "vgg19-dcbb9e9d.pth"
WEIGHTS_URL = "https://download.pytorch.org/models/" + WEIGHTS_FILENAME
#: SHA-256 and size in bytes of that file (548.051 MiB = 574,673,361 bytes).
WEIGHTS_SHA256 = "dcbb9e9dad569fff7a846263a77324fc34978fea2bfb039c012d710e1776ae44"
WEIGHTS_SIZE = 574_673_361

# torchvision's configuration "E": numbers are 3x3 convolutions (each followed by
# a ReLU), "M" a 2x2 max pooling.
_CFG_E = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
          512, 512, 512, 512, "M", 512, 512, 512, 512, "M")


def _layer_names():
    names = []
    block, conv = 1, 1
    for v in _CFG_E:
        if v == "M":
            names.append(f"pool{block}")
            block, conv = block + 1, 1
        else:
            names.append(f"conv{block}_{conv}")
            names.append(f"relu{block}_{conv}")
            conv += 1
    return tuple(names)


#: Name of every module of ``features`` by index (``conv1_1`` is index 0).
LAYER_NAMES = _layer_names()
#: Indices of the 16 convolutions: 0, 2, 5, 7, 10, ..., 34.
CONV_INDICES = tuple(i for i, n in enumerate(LAYER_NAMES) if n.startswith("conv"))

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


class WeightsNotFoundError(FileNotFoundError):
    """No VGG19 weights file could be found or downloaded."""


class WeightsError(ValueError):
    """A VGG19 weights file is corrupt or not in torchvision's ``vgg19`` layout."""


def layer_index(name):
    """Index in ``features`` of the activation called ``name``.

    ``convX_Y`` means the *rectified* response of that convolution (as in the
    Caffe model of Gatys et al., where the ReLU runs in place), which is the
    same as ``reluX_Y``. ``poolX`` is also accepted.
    """
    if not isinstance(name, str):
        raise ValueError(f"VGG19 layer names are strings like 'conv4_2', got {name!r}")
    key = "relu" + name[4:] if name.startswith("conv") else name
    try:
        return LAYER_NAMES.index(key)
    except ValueError:
        known = ", ".join(n for n in LAYER_NAMES if n.startswith("conv"))
        raise ValueError(f"unknown VGG19 layer {name!r}; known layers: {known}") from None


class VGG19(nn.Module):
    """The convolutional part of VGG19 (torchvision ``features`` layout).

    Parameters
    ----------
    widths : sequence of int
        Output channels of the convolutions up to the last one kept, in order
        (``64, 64, 128, ...`` for the real network).
    last : int
        Index of the last module of ``features`` to keep.
    pooling : {"max", "avg"}
        Gatys et al. (CVPR 2016) found average pooling gives slightly more
        appealing syntheses; recognition uses max pooling.

    Notes
    -----
    ``forward`` takes RGB in 0..1 (N x 3 x H x W) and applies the ImageNet
    normalisation itself.
    """

    def __init__(self, widths, *, last=len(LAYER_NAMES) - 1, pooling="max"):
        super().__init__()
        if pooling not in ("max", "avg"):
            raise ValueError(f"parameter 'pooling' must be 'max' or 'avg', got {pooling!r}")
        layers = []
        in_ch = 3
        widths = list(widths)
        for index, name in enumerate(LAYER_NAMES[: last + 1]):
            if name.startswith("conv"):
                out_ch = int(widths.pop(0))
                layers.append(nn.Conv2d(in_ch, out_ch, kernel_size=3, padding=1))
                in_ch = out_ch
            elif name.startswith("relu"):
                layers.append(nn.ReLU(inplace=False))
            else:
                layers.append(nn.MaxPool2d(2, 2) if pooling == "max" else nn.AvgPool2d(2, 2))
        self.features = nn.Sequential(*layers)
        self.last = last
        self.pooling = pooling
        #: Feed the convolutions channels-last tensors (faster with oneDNN on CPUs).
        self.channels_last = False
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def _layer(self, idx, h):
        module = self.features[idx]
        if not isinstance(module, nn.Conv2d):
            return module(h)
        if self.channels_last:
            h = h.contiguous(memory_format=torch.channels_last)
        return module(h)

    def forward(self, x, layers):
        """Return ``{name: activation}`` for the requested layer names.

        Runs the network only as deep as the deepest requested layer.
        """
        wanted = {}
        for name in layers:
            idx = layer_index(name)
            if idx > self.last:
                raise ValueError(
                    f"layer {name!r} is deeper than this network (loaded up to "
                    f"{LAYER_NAMES[self.last]!r})"
                )
            wanted.setdefault(idx, []).append(name)
        out = {}
        h = (x - self.mean) / self.std
        deepest = max(wanted)
        for idx in range(deepest + 1):
            h = self._layer(idx, h)
            for name in wanted.get(idx, ()):
                out[name] = h
        return out


# ---------------------------------------------------------------------------
# Weights
# ---------------------------------------------------------------------------


def hub_weights_path():
    """Where torch hub keeps the ImageNet VGG19 file: ``<hub dir>/checkpoints/vgg19-dcbb9e9d.pth``."""
    return os.path.join(torch.hub.get_dir(), "checkpoints", WEIGHTS_FILENAME)


def _how_to_get():
    return (
        f"Download {WEIGHTS_URL} (548 MiB, torchvision's ImageNet VGG19) on a machine with "
        f"internet access and either place it at '{hub_weights_path()}' or pass its path "
        f"with weights=PATH (CLI: --param weights=PATH)."
    )


def resolve_weights(weights=None, *, download=True):
    """Find the VGG19 weights file.

    Parameters
    ----------
    weights : str or os.PathLike, optional
        Explicit path. When given it must exist; there is no fallback.
    download : bool
        Try ``torch.hub.load_state_dict_from_url`` into the hub cache when the
        cache has no file.

    Returns
    -------
    str
        Path of an existing file.

    Raises
    ------
    WeightsNotFoundError
        Naming the file and how to get it.
    """
    if weights is not None:
        if not isinstance(weights, (str, os.PathLike)):
            raise ValueError(f"parameter 'weights' must be a file path, got {type(weights).__name__}")
        path = os.fspath(weights)
        if os.path.exists(path) and not os.path.isfile(path):
            # A FIFO would block torch.load forever; a folder or device is no weights file.
            raise WeightsNotFoundError(f"VGG19 weights '{path}' is not a regular file; give the "
                                       f"path of {WEIGHTS_FILENAME} or a copy of it")
        if not os.path.isfile(path):
            raise WeightsNotFoundError(f"VGG19 weights file not found: '{path}'. " + _how_to_get())
        return path
    cached = hub_weights_path()
    if os.path.isfile(cached):
        return cached
    if download:
        try:
            os.makedirs(os.path.dirname(cached), exist_ok=True)
            # The whole SHA-256 as the "prefix": torch writes to a temporary file and
            # moves it into place only when the digest matches, so a broken or
            # foreign download never lands in the cache.
            torch.hub.download_url_to_file(WEIGHTS_URL, cached, hash_prefix=WEIGHTS_SHA256,
                                           progress=True)
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}".splitlines()[0]
            raise WeightsNotFoundError(
                f"VGG19 weights '{WEIGHTS_FILENAME}' not found at '{cached}' and the download "
                f"from {WEIGHTS_URL} failed ({reason}). " + _how_to_get()
            ) from None
        if os.path.isfile(cached):
            return cached
    raise WeightsNotFoundError(
        f"VGG19 weights '{WEIGHTS_FILENAME}' not found: no weights= path given and "
        f"'{cached}' does not exist" + ("" if download else " (downloading disabled)") + ". "
        + _how_to_get()
    )


def load_state_dict(path, *, last=len(LAYER_NAMES) - 1):
    """Load and check a torchvision-layout VGG19 state dict.

    Parameters
    ----------
    path : str
        A file written by ``torch.save(vgg19().state_dict(), path)``, such as
        ``vgg19-dcbb9e9d.pth``.
    last : int
        Only the convolutions up to this ``features`` index are checked and
        returned; deeper ones and the classifier are ignored.

    Returns
    -------
    dict
        ``{"features.N.weight": tensor, "features.N.bias": tensor}`` for the kept
        convolutions, as float32 on the CPU.

    Raises
    ------
    WeightsError
        When the file cannot be read, or a key or shape does not match the
        torchvision ``vgg19`` layout.
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        reason = f"{type(exc).__name__}: {exc}".splitlines()[0]
        raise WeightsError(
            f"cannot read VGG19 weights file '{path}' ({reason}); the file is corrupt or "
            f"incomplete. Delete it and get it again. " + _how_to_get()
        ) from None
    if isinstance(state, collections.abc.Mapping) and "state_dict" in state and not any(
        str(k).startswith("features.") for k in state
    ):
        state = state["state_dict"]
    if not isinstance(state, collections.abc.Mapping):
        raise WeightsError(
            f"'{path}' does not hold a state dict (found {type(state).__name__}); expected "
            f"torchvision's vgg19 layout with keys 'features.0.weight', ..."
        )
    if state and all(str(k).startswith("module.") for k in state):
        state = {str(k)[len("module."):]: v for k, v in state.items()}
    if any(".running_mean" in str(k) for k in state):
        raise WeightsError(
            f"'{path}' looks like a vgg19_bn (batch-norm) state dict; the plain vgg19 layout "
            f"({WEIGHTS_FILENAME}) is needed"
        )
    out = {}
    in_ch = 3
    for idx in CONV_INDICES:
        if idx > last:
            break
        wkey, bkey = f"features.{idx}.weight", f"features.{idx}.bias"
        for key in (wkey, bkey):
            if key not in state:
                sample = ", ".join(sorted(map(str, state))[:4]) or "none"
                raise WeightsError(
                    f"'{path}' is not in torchvision's vgg19 layout: key '{key}' "
                    f"({LAYER_NAMES[idx]}) is missing (keys found: {sample}, ...)"
                )
        w, b = state[wkey], state[bkey]
        if not (isinstance(w, torch.Tensor) and isinstance(b, torch.Tensor)):
            raise WeightsError(f"'{path}': '{wkey}' and '{bkey}' must be tensors")
        if w.ndim != 4 or tuple(w.shape[1:]) != (in_ch, 3, 3):
            raise WeightsError(
                f"'{path}' is not in torchvision's vgg19 layout: '{wkey}' ({LAYER_NAMES[idx]}) "
                f"has shape {tuple(w.shape)}, expected (C, {in_ch}, 3, 3)"
            )
        if b.ndim != 1 or b.shape[0] != w.shape[0]:
            raise WeightsError(
                f"'{path}': '{bkey}' has shape {tuple(b.shape)}, expected ({w.shape[0]},)"
            )
        w = w.detach().to(torch.float32)
        b = b.detach().to(torch.float32)
        if not (torch.isfinite(w).all() and torch.isfinite(b).all()):
            raise WeightsError(f"'{path}': '{wkey}' or '{bkey}' holds NaN or infinite values")
        out[wkey], out[bkey] = w, b
        in_ch = w.shape[0]
    return out


def resolve_device(device="auto"):
    """``"auto"`` picks CUDA, then Apple MPS, then the CPU; explicit names are checked."""
    if isinstance(device, torch.device):
        device = str(device)
    if not isinstance(device, str):
        raise ValueError(f"parameter 'device' must be a string like 'auto', 'cpu', 'cuda', got {device!r}")
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise ValueError(f"parameter 'device': unknown device {device!r}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("parameter 'device': CUDA was asked for but is not available")
    if dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ValueError("parameter 'device': MPS was asked for but is not available")
    return dev


_CACHE = collections.OrderedDict()
_CACHE_LOCK = threading.Lock()
_CACHE_SIZE = 2


def load_vgg19(weights=None, *, upto="conv5_1", pooling="max", device="cpu", download=True):
    """Build a frozen VGG19 up to layer ``upto`` and load its weights.

    Parameters
    ----------
    weights : str or os.PathLike, optional
        See :func:`resolve_weights` for the search order.
    upto : str
        Deepest layer that will be asked for (e.g. ``"conv5_1"``); the rest of
        the network is not built.
    pooling : {"max", "avg"}
    device : str or torch.device
        Already resolved device, or ``"auto"``.
    download : bool
        Allow a download into the torch hub cache.

    Returns
    -------
    VGG19
        In eval mode, ``requires_grad`` off. Kept in a small cache keyed by file,
        modification time, depth, pooling and device.
    """
    last = layer_index(upto)
    path = resolve_weights(weights, download=download)
    dev = resolve_device(device)
    st = os.stat(path)
    key = (os.path.realpath(path), st.st_mtime_ns, st.st_size, last, pooling, str(dev))
    with _CACHE_LOCK:
        model = _CACHE.get(key)
        if model is not None:
            _CACHE.move_to_end(key)
            return model
    state = load_state_dict(path, last=last)
    widths = [state[f"features.{i}.weight"].shape[0] for i in CONV_INDICES if i <= last]
    model = VGG19(widths, last=last, pooling=pooling)
    model.load_state_dict(state, strict=True)
    model.eval().requires_grad_(False)
    model = model.to(dev)
    if dev.type == "cpu":
        model = model.to(memory_format=torch.channels_last)
        model.channels_last = True
    with _CACHE_LOCK:
        _CACHE[key] = model
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return model
