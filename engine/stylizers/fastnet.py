"""A fast feed-forward style network per style, trained on the shot with a stability loss.

The transformer network of Johnson et al. [1]_: a 9x9 convolution, two
stride-2 convolutions, residual blocks, two upsampling stages and a 9x9
convolution back to RGB, with instance normalisation (Ulyanov et al. [2]_)
after every convolution but the last and reflection padding. Upsampling is a
nearest-neighbour resize followed by a convolution, which has no checkerboard
artefacts (Odena et al. [3]_), rather than a transposed convolution.

It is trained for one style image on the shot's own frames (random crops,
scales, flips and small exposure changes) with the perceptual losses of
:mod:`.neural` on VGG19 (content, style as Gram matrices, total variation) and
the stability loss of Gupta et al. [4]_: Gaussian noise is added to the input
and the squared difference between the outputs for the clean and the noisy
input is penalised, so that the network does not amplify the small changes
between neighbouring frames into flicker.

References
----------
.. [1] J. Johnson, A. Alahi, L. Fei-Fei, "Perceptual Losses for Real-Time Style Transfer and
   Super-Resolution", ECCV 2016.
.. [2] D. Ulyanov, A. Vedaldi, V. Lempitsky, "Instance Normalization: The Missing Ingredient
   for Fast Stylization", arXiv:1607.08022, 2016.
.. [3] A. Odena, V. Dumoulin, C. Olah, "Deconvolution and Checkerboard Artifacts", Distill, 2016.
.. [4] A. Gupta, J. Johnson, A. Alahi, L. Fei-Fei, "Characterizing and Improving Stability in
   Neural Style Transfer", ICCV 2017.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import time
from pathlib import Path

import numpy as np

from ..errors import Cancelled
from ._common import check_cancel, check_float, check_int

__all__ = ["FASTNET_DEFAULTS", "build_network", "train_fast_network", "load_network", "save_network",
           "apply_network", "run_fast_network"]

#: Parameters of method "fast-network" and their defaults.
FASTNET_DEFAULTS = {
    "width": 32,
    "blocks": 5,
    "steps": 1000,
    "batch_size": 2,
    "train_size": 256,
    "train_frames": 64,
    "learning_rate": 1e-3,
    "content_weight": 1.0,
    "style_weight": 5.0,
    "tv_weight": 0.01,
    "stability_weight": 300.0,
    "noise": 0.04,
    "style_scale": 1.0,
    "content_layer": "conv2_2",
    "style_layers": ("conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1"),
    "pooling": "avg",
    "seed": 0,
    "checkpoint_every": 25,
    "model": None,
}
#: Format of the saved network file.
MODEL_FORMAT = 1
CHECKPOINT_NAME = "fast-network.ckpt"
MODEL_NAME = "fast-network.pt"


def check_params(params):
    """Defaults filled in and every value checked; the message names the parameter."""
    from .neural import _check_layers

    p = dict(FASTNET_DEFAULTS)
    for name in params:
        if name not in FASTNET_DEFAULTS:
            raise ValueError(f"unknown parameter '{name}' for method 'fast-network'; known: "
                             f"{', '.join(sorted(FASTNET_DEFAULTS))}")
    p.update(params)
    for name in ("width", "blocks", "steps", "batch_size", "train_size", "train_frames", "seed",
                 "checkpoint_every"):
        minimum = {"blocks": 0, "steps": 0, "seed": 0, "train_size": 16}.get(name, 1)
        p[name] = check_int(name, p[name], minimum=minimum)
    for name in ("learning_rate", "style_scale"):
        p[name] = check_float(name, p[name], minimum=0.0, exclusive_minimum=True)
    for name in ("content_weight", "style_weight", "tv_weight", "stability_weight", "noise"):
        p[name] = check_float(name, p[name], minimum=0.0)
    p["style_layers"] = _check_layers("style_layers", p["style_layers"])
    (p["content_layer"],) = _check_layers("content_layer", (p["content_layer"],))
    if p["pooling"] not in ("avg", "max"):
        raise ValueError(f"parameter 'pooling' must be 'avg' or 'max', got {p['pooling']!r}")
    if p["model"] is not None and not isinstance(p["model"], (str, os.PathLike)):
        raise ValueError(f"parameter 'model' must be a file path, got {type(p['model']).__name__}")
    return p


# ---------------------------------------------------------------------------
# the network


def build_network(width=32, blocks=5):
    """Johnson et al.'s transformer network (see the module docstring), on the CPU.

    Parameters
    ----------
    width : int
        Channels of the first layer (32 in the paper); the others are 2x and 4x.
    blocks : int
        Residual blocks (5 in the paper).

    Returns
    -------
    torch.nn.Module
        Maps ``N x 3 x H x W`` RGB in 0..1 to the same; any ``H``, ``W`` (padded
        by reflection to multiples of 4 inside).
    """
    import torch
    from torch import nn

    def conv(cin, cout, k, stride=1):
        return nn.Sequential(nn.ReflectionPad2d(k // 2), nn.Conv2d(cin, cout, k, stride=stride))

    def norm(c):
        return nn.InstanceNorm2d(c, affine=True)

    class Residual(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.body = nn.Sequential(conv(c, c, 3), norm(c), nn.ReLU(), conv(c, c, 3), norm(c))

        def forward(self, x):
            return x + self.body(x)

    class Up(nn.Module):
        """Nearest-neighbour x2 resize, then a convolution: no checkerboard."""

        def __init__(self, cin, cout):
            super().__init__()
            self.conv = conv(cin, cout, 3)

        def forward(self, x):
            return self.conv(nn.functional.interpolate(x, scale_factor=2, mode="nearest"))

    class TransformerNet(nn.Module):
        def __init__(self):
            super().__init__()
            w = width
            self.width, self.blocks = width, blocks
            self.body = nn.Sequential(
                conv(3, w, 9), norm(w), nn.ReLU(),
                conv(w, 2 * w, 3, 2), norm(2 * w), nn.ReLU(),
                conv(2 * w, 4 * w, 3, 2), norm(4 * w), nn.ReLU(),
                *[Residual(4 * w) for _ in range(blocks)],
                Up(4 * w, 2 * w), norm(2 * w), nn.ReLU(),
                Up(2 * w, w), norm(w), nn.ReLU(),
                conv(w, 3, 9),
            )

        def forward(self, x):
            h, w = x.shape[-2:]
            ph, pw = (-h) % 4, (-w) % 4
            if ph or pw:
                mode = "reflect" if min(h, w) > max(ph, pw) else "replicate"
                x = nn.functional.pad(x, (0, pw, 0, ph), mode=mode)
            # Centred on mid-grey: the network starts near a flat image and learns the picture.
            return (self.body(x) + 0.5)[..., :h, :w]

    return TransformerNet()


def save_network(net, path, *, fingerprint):
    """Write the network as a small file (float16 weights), atomically."""
    import torch

    from ..files import write_bytes_atomic

    state = {k: v.detach().to("cpu", torch.float16) for k, v in net.state_dict().items()}
    buffer = io.BytesIO()
    torch.save({"format": MODEL_FORMAT, "width": net.width, "blocks": net.blocks,
                "fingerprint": fingerprint, "state": state}, buffer)
    write_bytes_atomic(path, buffer.getvalue())


def load_network(path):
    """A network saved by :func:`save_network`, and its fingerprint.

    Raises
    ------
    ValueError
        Naming the file when it is not such a network.
    """
    import torch

    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(data, dict) or data.get("format") != MODEL_FORMAT:
            raise ValueError("not a Kar-Wai fast-network file")
        net = build_network(int(data["width"]), int(data["blocks"]))
        net.load_state_dict({k: v.to(torch.float32) for k, v in data["state"].items()}, strict=True)
    except FileNotFoundError:
        raise ValueError(f"parameter 'model': file not found: '{path}'") from None
    except Exception as exc:  # torch raises many kinds for a foreign file
        reason = " ".join(str(exc).split())[:200]
        raise ValueError(f"parameter 'model': '{path}' is not a fast-network file ({reason})") from None
    net.eval().requires_grad_(False)
    return net, str(data.get("fingerprint", ""))


def apply_network(net, frame, *, device="cpu"):
    """Run the network on one ``HxWx3`` uint8 frame; returns ``HxWx3`` uint8."""
    import torch

    x = torch.from_numpy(np.ascontiguousarray(frame[:, :, :3].transpose(2, 0, 1), dtype=np.float32) / 255.0)
    with torch.no_grad():
        y = net(x[None].to(device))[0].clamp_(0.0, 1.0)
    return np.clip(np.rint(y.permute(1, 2, 0).cpu().numpy() * 255.0), 0, 255).astype(np.uint8)


# ---------------------------------------------------------------------------
# training


def _augment(frames, rng, size):
    """One training crop: random frame, scale, position, flip and exposure."""
    import cv2

    frame = frames[int(rng.integers(len(frames)))]
    h, w = frame.shape[:2]
    th, tw = min(size, h), min(size, w)
    scale = float(rng.uniform(max(th / h, tw / w), 1.0)) if rng.random() < 0.5 else 1.0
    if scale < 1.0:
        frame = cv2.resize(frame, (max(tw, int(round(w * scale))), max(th, int(round(h * scale)))),
                           interpolation=cv2.INTER_AREA)
        h, w = frame.shape[:2]
    y = int(rng.integers(h - th + 1))
    x = int(rng.integers(w - tw + 1))
    crop = frame[y:y + th, x:x + tw].astype(np.float32) / np.float32(255.0)
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    gain = float(rng.uniform(0.9, 1.1))
    return np.clip(crop * gain, 0.0, 1.0).transpose(2, 0, 1)


def train_fast_network(frames, style_rgb, *, params, checkpoint, fingerprint, weights=None, device="cpu",
                       download=True, progress=None, cancel=None):
    """Train a network for one style on ``frames``.

    Parameters
    ----------
    frames : list of numpy.ndarray
        ``HxWx3`` uint8 training frames (the shot's).
    style_rgb : numpy.ndarray
        The style image, float32 RGB in 0..255.
    params : dict
        From :func:`check_params`.
    checkpoint : pathlib.Path
        Written every ``checkpoint_every`` steps and when cancelled; a
        checkpoint with the same ``fingerprint`` is resumed from. Every step
        draws its crops and noise from a generator seeded by ``(seed, step)``,
        so a resumed training ends with the same weights as an uninterrupted one.
    fingerprint : str
        What the training depends on.
    progress : callable, optional
        ``progress(step, steps, loss)``.
    cancel : callable or threading.Event, optional
        Polled before every step; the checkpoint is written, then
        :class:`Cancelled` raised.

    Returns
    -------
    torch.nn.Module
    """
    from . import vgg

    import torch

    from ..files import write_bytes_atomic
    from ..images import resize
    from .neural import _energy, _style_size, content_loss, gram_matrix, style_loss, tv_loss

    p = params
    dev = vgg.resolve_device(device)
    layers = tuple(dict.fromkeys(p["style_layers"] + (p["content_layer"],)))
    deepest = max(vgg.layer_index(n) for n in layers)
    model = vgg.load_vgg19(weights, upto=vgg.LAYER_NAMES[deepest], pooling=p["pooling"], device=dev,
                           download=download)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(p["seed"])
        net = build_network(p["width"], p["blocks"])
    net = net.to(dev).train()
    optimiser = torch.optim.Adam(net.parameters(), lr=p["learning_rate"])
    step = 0
    if checkpoint.exists():
        try:
            state = torch.load(checkpoint, map_location="cpu", weights_only=True)
            if state.get("fingerprint") == fingerprint:
                net.load_state_dict(state["model"])
                optimiser.load_state_dict(state["optimiser"])
                step = int(state["step"])
        except Exception:  # a torn or foreign checkpoint: start over
            step = 0

    def save_checkpoint():
        buffer = io.BytesIO()
        torch.save({"fingerprint": fingerprint, "step": step, "model": net.state_dict(),
                    "optimiser": optimiser.state_dict()}, buffer)
        write_bytes_atomic(checkpoint, buffer.getvalue())

    h, w = frames[0].shape[:2]
    th, tw = min(p["train_size"], h), min(p["train_size"], w)
    sh, sw = _style_size(style_rgb.shape[:2], (th, tw), p["style_scale"])
    style01 = resize(style_rgb / np.float32(255.0), sh, sw)
    with torch.no_grad():
        feats = model(torch.from_numpy(np.ascontiguousarray(style01.transpose(2, 0, 1)))[None].to(dev),
                      p["style_layers"])
        grams = {n: gram_matrix(feats[n]) for n in p["style_layers"]}
        gram_energy = {n: _energy(g) for n, g in grams.items()}
    layer_weight = 1.0 / len(p["style_layers"])
    batch = p["batch_size"]
    while step < p["steps"]:
        try:
            check_cancel(cancel)
        except Cancelled:
            save_checkpoint()
            raise
        rng = np.random.default_rng([p["seed"], step])
        x = torch.from_numpy(np.stack([_augment(frames, rng, p["train_size"]) for _ in range(batch)]))
        x = x.to(dev)
        noise = torch.from_numpy(rng.normal(0.0, p["noise"], size=tuple(x.shape)).astype(np.float32)).to(dev)
        optimiser.zero_grad(set_to_none=True)
        y = net(x)
        with torch.no_grad():
            target = model(x, [p["content_layer"]])[p["content_layer"]]
            tv_ref = max(float(tv_loss(x)), 1e-5)
        out = model(y, layers)
        loss = p["content_weight"] * content_loss(out[p["content_layer"]], target)
        ls = 0.0
        for n in p["style_layers"]:
            ls = ls + layer_weight * style_loss(gram_matrix(out[n]), grams[n].expand(batch, -1, -1),
                                                target_energy=gram_energy[n] * batch)
        loss = loss + p["style_weight"] * ls
        if p["tv_weight"]:
            loss = loss + (p["tv_weight"] / tv_ref) * tv_loss(y)
        if p["stability_weight"] and p["noise"]:
            loss = loss + p["stability_weight"] * (net(x + noise) - y).pow(2).mean()
        value = float(loss.detach())
        if not np.isfinite(value):
            raise FloatingPointError("the fast-network training loss is not finite; lower learning_rate")
        loss.backward()
        optimiser.step()
        step += 1
        if progress is not None:
            progress(step, p["steps"], value)
        if step % p["checkpoint_every"] == 0 or step == p["steps"]:
            save_checkpoint()
    net.eval().requires_grad_(False)
    return net


# ---------------------------------------------------------------------------
# the job


def _training_frames(source, count):
    numbers = source.frame_numbers
    if len(numbers) > count:
        picks = np.linspace(0, len(numbers) - 1, count).round().astype(int)
        numbers = [numbers[i] for i in sorted(set(picks))]
    return numbers


def run_fast_network(source, style_rgb, *, out, masks, progress, cancel, weights, device, download, params,
                     job_class):
    """The "fast-network" method of :func:`engine.stylizers.video.stylize_video`."""
    from . import vgg

    from .video import ALGORITHM_VERSION, VideoResult, _file_identity, _hash, _remove_empty

    p = check_params(params)
    numbers = source.frame_numbers
    total = 2 * len(numbers)
    job = job_class(source, out, masks, progress, cancel, total)
    train_numbers = _training_frames(source, p["train_frames"])
    style_hash = hashlib.sha256(style_rgb.tobytes() + str(style_rgb.shape).encode()).hexdigest()
    weights_id = _file_identity(weights) if weights is not None else "default weights"
    settings = {k: (list(v) if isinstance(v, tuple) else v) for k, v in p.items()
                if k not in ("model", "checkpoint_every")}
    train_fp = _hash("fast-network", ALGORITHM_VERSION, json.dumps(settings, sort_keys=True), style_hash,
                     weights_id, *(job.identity.get(n, "") for n in train_numbers))
    explicit = p["model"] is not None
    model_path = Path(p["model"]) if explicit else job.work / MODEL_NAME
    source_path = getattr(source, "path", None)
    if source_path is not None and Path(source_path).is_dir():
        from ..files import is_inside

        if is_inside(model_path, source_path):
            raise ValueError(f"parameter 'model': '{model_path}' lies inside the source folder {source_path}")
    dev = vgg.resolve_device(device)
    net = None
    train_seconds = 0.0
    if model_path.exists():
        loaded, fp = load_network(model_path)
        if explicit or fp == train_fp:
            net, model_fp = loaded, fp
    if net is None:
        if explicit and model_path.parent and not model_path.parent.is_dir():
            raise ValueError(f"parameter 'model': folder '{model_path.parent}' does not exist")
        job.check_cancel()
        frames = [np.array(source.read(n)) for n in train_numbers]
        t0 = time.perf_counter()

        def report(step, steps, loss):
            job.report(f"training the network: step {step}/{steps}, loss {loss:.4g}",
                       done=len(numbers) * step / max(steps, 1))

        net = train_fast_network(frames, style_rgb, params=p, checkpoint=job.work / CHECKPOINT_NAME,
                                 fingerprint=train_fp, weights=weights, device=dev, download=download,
                                 progress=report, cancel=cancel)
        train_seconds = time.perf_counter() - t0
        save_network(net, model_path, fingerprint=train_fp)
        model_fp = train_fp
        try:
            (job.work / CHECKPOINT_NAME).unlink()
        except OSError:
            pass
    # The saved file's float16 weights are what every run uses, this one too.
    net, _ = load_network(model_path)
    net = net.to(dev)
    model_id = _hash(model_fp, hashlib.sha256(model_path.read_bytes()).hexdigest())
    computed = skipped = 0
    for i, n in enumerate(numbers):
        fp = _hash(model_id, n, job.identity.get(n, ""), job.mask_identity)
        if job.kept("frame", n, fp) and job.path(n).exists():
            skipped += 1
            continue
        job.check_cancel()
        image = apply_network(net, np.asarray(source.read(n)), device=dev)
        job.write("frame", n, image, fp)
        computed += 1
        job.report(f"frame {n}: done", done=len(numbers) + i + 1)
    if explicit:
        _remove_empty(job.work)
    return VideoResult(frames=[job.path(n) for n in numbers], out=job.out, computed=computed, skipped=skipped,
                       seconds=0.0, model=model_path, train_seconds=train_seconds)
