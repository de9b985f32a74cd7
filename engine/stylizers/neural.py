"""Neural style transfer by image optimisation (Gatys et al.) on VGG19.

References
----------
.. [1] L. A. Gatys, A. S. Ecker, M. Bethge, "Image Style Transfer Using
   Convolutional Neural Networks", CVPR 2016.
.. [2] L. A. Gatys, M. Bethge, A. Hertzmann, E. Shechtman, "Preserving Color in
   Neural Artistic Style Transfer", arXiv:1606.05897, 2016.
.. [3] L. A. Gatys, A. S. Ecker, M. Bethge, A. Hertzmann, E. Shechtman,
   "Controlling Perceptual Factors in Neural Style Transfer", CVPR 2017
   (coarse-to-fine optimisation).
.. [4] A. Mahendran, A. Vedaldi, "Understanding Deep Image Representations by
   Inverting Them", CVPR 2015 (total-variation regulariser).

torch is imported inside the functions, so importing this module costs nothing
and works without torch installed.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from ..images import resize
from ._common import (
    as_float_rgb,
    check_bool,
    check_callable,
    check_cancel,
    check_choice,
    check_float,
    check_int,
    load_image_rgb,
    to_uint8,
)

__all__ = [
    "STYLE_LAYERS",
    "CONTENT_LAYER",
    "stylize_neural",
    "check_params",
    "prepare_style",
    "optimise",
    "gram_matrix",
    "content_loss",
    "style_loss",
    "tv_loss",
    "pyramid_levels",
    "split_iterations",
    "rgb_to_yiq",
    "yiq_to_rgb",
]

#: Style layers of Gatys et al. (CVPR 2016).
STYLE_LAYERS = ("conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1")
#: Content layer of Gatys et al. (CVPR 2016).
CONTENT_LAYER = "conv4_2"

_MIN_SIDE = 16  # four poolings before conv5_1
_EPS = 1e-8

# NTSC YIQ, as used for luminance-only transfer in [2].
_RGB2YIQ = np.array(
    [[0.299, 0.587, 0.114],
     [0.595716, -0.274453, -0.321263],
     [0.211456, -0.522591, 0.311135]],
    dtype=np.float64,
)
_YIQ2RGB = np.linalg.inv(_RGB2YIQ)


def rgb_to_yiq(rgb):
    """``HxWx3`` RGB to YIQ (same scale as the input)."""
    return (rgb.astype(np.float64) @ _RGB2YIQ.T).astype(np.float32)


def yiq_to_rgb(yiq):
    """Inverse of :func:`rgb_to_yiq`."""
    return (yiq.astype(np.float64) @ _YIQ2RGB.T).astype(np.float32)


# ---------------------------------------------------------------------------
# Losses
# ---------------------------------------------------------------------------


def gram_matrix(features):
    """Gram matrices of feature maps, normalised by the number of positions.

    Parameters
    ----------
    features : torch.Tensor
        ``N x C x H x W``.

    Returns
    -------
    torch.Tensor
        ``N x C x C`` with ``G[n] = F F^T / (H W)`` where ``F`` is ``C x HW``.

    Notes
    -----
    Gatys et al. [1]_ use ``F F^T`` and divide the style error by ``4 N^2 M^2``
    (``M = HW``); dividing the Gram matrix by ``M`` gives the same error up to
    the constant ``1/(4 N^2)`` and makes it independent of the image size, which
    coarse-to-fine optimisation and ``style_scale`` rely on.
    """
    import torch

    n, c, h, w = features.shape
    f = features.reshape(n, c, h * w)
    if not (torch.is_grad_enabled() and features.requires_grad):
        return f @ f.transpose(1, 2) / (h * w)
    return _gram_function().apply(f, 1.0 / (h * w))


@functools.lru_cache(maxsize=None)
def _gram_function():
    """The autograd function of :func:`gram_matrix`, built on first use."""
    import torch

    class Gram(torch.autograd.Function):
        """``G = s F F^T`` with the gradient ``dL/dF = s (dG + dG^T) F`` in one product.

        Autograd of ``F @ F.transpose(1, 2)`` multiplies twice (once for each
        operand) and adds the two results, each as large as the feature map;
        the Gram matrix is small, the feature maps are not.
        """

        @staticmethod
        def forward(ctx, f, scale):
            ctx.save_for_backward(f)
            ctx.scale = scale
            return torch.bmm(f, f.transpose(1, 2)).mul_(scale)

        @staticmethod
        def backward(ctx, grad):
            (f,) = ctx.saved_tensors
            sym = (grad + grad.transpose(1, 2)).mul_(ctx.scale)
            return torch.bmm(sym, f), None

    return Gram


def _energy(target):
    """``sum(T^2) + eps`` as a Python float: the constant denominator of the relative losses."""
    return float(target.detach().pow(2).sum()) + _EPS


def content_loss(features, target, *, target_energy=None):
    """Relative squared error of the content representation.

    ``L = sum((F - P)^2) / sum(P^2)``: the content loss of [1]_,
    ``1/2 sum((F - P)^2)``, divided by the constant ``1/2 sum(P^2)``, so that it
    is dimensionless and does not depend on the image size. ``target_energy``
    is ``sum(P^2)`` when already known (it is the same at every iteration).
    """
    energy = _energy(target) if target_energy is None else target_energy
    return (features - target).pow(2).sum() / energy


def style_loss(gram, target_gram, *, target_energy=None):
    """Relative squared error between Gram matrices of one layer.

    ``E = sum((G - A)^2) / sum(A^2)``: the layer loss ``E_l`` of [1]_ times a
    constant of the layer (its per-layer weight absorbs it). ``target_energy``
    is ``sum(A^2)`` when already known.
    """
    energy = _energy(target_gram) if target_energy is None else target_energy
    return (gram - target_gram).pow(2).sum() / energy


def tv_loss(image):
    """Squared total variation, mean over pixels and channels.

    ``L = (sum(dy^2) + sum(dx^2)) / (C H W)`` for an ``N x C x H x W`` image in
    0..1, with forward differences (Mahendran & Vedaldi [4]_, beta = 2).
    """
    n, c, h, w = image.shape
    dy = image[:, :, 1:, :] - image[:, :, :-1, :]
    dx = image[:, :, :, 1:] - image[:, :, :, :-1]
    return (dy.pow(2).sum() + dx.pow(2).sum()) / (n * c * h * w)


# ---------------------------------------------------------------------------
# Schedule
# ---------------------------------------------------------------------------


def pyramid_levels(height, width, *, coarse_size):
    """Sizes ``(h, w)`` from coarsest to finest for coarse-to-fine optimisation.

    Halves the frame until its longer side is at most ``coarse_size`` (or a
    further halving would make the shorter side smaller than 16 pixels).
    """
    levels = [(height, width)]
    h, w = height, width
    while max(h, w) > coarse_size:
        nh, nw = int(round(h / 2)), int(round(w / 2))
        if min(nh, nw) < _MIN_SIDE:
            break
        h, w = nh, nw
        levels.append((h, w))
    return levels[::-1]


def split_iterations(iterations, n_levels):
    """Share ``iterations`` among levels, coarsest first.

    Each level gets a share proportional to ``4^-k`` (``k`` counted from the
    coarsest), i.e. roughly the same compute per level: most of the work is
    done small, the finer levels refine an upsampled result. The finest level
    gets at least one iteration when ``iterations >= 1``.
    """
    weights = np.array([4.0 ** -k for k in range(n_levels)])
    raw = iterations * weights / weights.sum()
    counts = np.floor(raw).astype(int)
    rest = iterations - counts.sum()
    for k in np.argsort(-(raw - counts), kind="stable")[:rest]:
        counts[k] += 1
    if iterations >= 1 and counts[-1] == 0:
        counts[int(np.argmax(counts))] -= 1
        counts[-1] += 1
    return [int(c) for c in counts]


# ---------------------------------------------------------------------------
# Optimisation
# ---------------------------------------------------------------------------


def _style_size(style_hw, level_hw, style_scale):
    sh, sw = style_hw
    target = max(level_hw) * style_scale
    s = target / max(sh, sw)
    h, w = max(1, int(round(sh * s))), max(1, int(round(sw * s)))
    if min(h, w) < _MIN_SIDE:
        s2 = _MIN_SIDE / min(h, w)
        h, w = int(math.ceil(h * s2)), int(math.ceil(w * s2))
    return h, w


def _to_tensor(img01, device):
    import torch

    return torch.from_numpy(np.ascontiguousarray(img01.transpose(2, 0, 1)))[None].to(device)


class _Objective:
    """Total loss ``a*L_content + b*sum_l w_l E_l + c*L_tv/L_tv(content)`` for one level.

    ``anchors`` adds pixel-space terms ``w * sum(M * (x - T)^2) / (C H W)``, one per
    ``(T, M, w)`` (target ``1x3xHxW``, weight map ``1x1xHxW``): the temporal loss of
    Ruder et al., "Artistic style transfer for videos", GCPR 2016, eq. (5), with
    ``D = C H W``. Used by :mod:`.video` and :mod:`.keys`.
    """

    def __init__(self, model, content, style, *, content_layer, style_layers, layer_weights,
                 content_weight, style_weight, tv_weight, anchors=()):
        import torch

        self.anchors = tuple(anchors)
        self.model = model
        self.content_layer = content_layer
        self.style_layers = tuple(style_layers)
        self.layer_weights = tuple(layer_weights)
        self.content_weight = content_weight
        self.style_weight = style_weight
        self.tv_weight = tv_weight
        self.layers = tuple(dict.fromkeys(self.style_layers + (content_layer,)))
        # The targets and the denominators of the relative losses are fixed for
        # the level: computed once, without a graph.
        with torch.no_grad():
            self.content_target = model(content, [content_layer])[content_layer].detach()
            self.content_energy = _energy(self.content_target)
            feats = model(style, self.style_layers)
            self.gram_targets = {n: gram_matrix(feats[n]).detach() for n in self.style_layers}
            self.gram_energies = {n: _energy(g) for n, g in self.gram_targets.items()}
            del feats
            # TV is measured relative to the content's own, so the weight means
            # the same at every pyramid level and resolution.
            self.tv_ref = max(float(tv_loss(content)), 1e-5)

    def __call__(self, x):
        feats = self.model(x, self.layers)
        lc = content_loss(feats[self.content_layer], self.content_target,
                          target_energy=self.content_energy)
        ls = 0.0
        for name, wl in zip(self.style_layers, self.layer_weights):
            if wl != 0.0:
                ls = ls + wl * style_loss(gram_matrix(feats[name]), self.gram_targets[name],
                                          target_energy=self.gram_energies[name])
        total = self.content_weight * lc + self.style_weight * ls
        if self.tv_weight:
            total = total + (self.tv_weight / self.tv_ref) * tv_loss(x)
        for target, mask, weight in self.anchors:
            total = total + (weight / x.numel()) * (mask * (x - target).pow(2)).sum()
        return total


def _value_and_grad(objective, x):
    import torch

    x = x.detach().requires_grad_(True)
    loss = objective(x)
    (grad,) = torch.autograd.grad(loss, x)
    return float(loss.detach()), grad.detach()


def _lbfgs(objective, x, *, n_iter, lr, report, cancel, history=10):
    """Projected L-BFGS with a monotone safeguard, one evaluation per iteration.

    Directions come from the two-loop recursion (Nocedal & Wright, Algorithm
    7.4) over the last ``history`` pairs. The step is ``lr`` (``min(1, 1/|g|_1)``
    for the very first one, as in Torch's ``optim.lbfgs`` used by Gatys-style
    implementations) and the iterate is clipped to 0..1. A trial point whose
    loss is not lower than the current one is rejected and the step halved;
    after two rejections in a row the memory is cleared. Every evaluation is one
    iteration; ``report`` gets the loss of the current (best) iterate.

    Returns the best evaluated iterate.
    """
    import torch

    s_list, y_list = [], []
    x_cur = f_cur = g_cur = None
    d = None
    t = lr
    rejects = 0
    trial = x.detach()
    for _ in range(n_iter):
        check_cancel(cancel)
        f, g = _value_and_grad(objective, trial)
        accepted = f_cur is None or (math.isfinite(f) and f < f_cur)
        if not accepted:
            rejects += 1
            report(f_cur)
            if rejects >= 2:
                s_list.clear()
                y_list.clear()
                d = -g_cur
                t = min(1.0, 1.0 / (float(g_cur.abs().sum()) + 1e-12)) * lr * 0.5 ** rejects
            else:
                t *= 0.5
            trial = (x_cur + t * d).clamp_(0.0, 1.0)
            continue
        if not math.isfinite(f):
            raise FloatingPointError("the style-transfer loss is not finite at the starting image")
        if x_cur is not None:
            sk = (trial - x_cur).flatten()
            yk = (g - g_cur).flatten()
            sy = float(sk @ yk)
            if sy > 1e-10:
                s_list.append(sk)
                y_list.append(yk)
                if len(s_list) > history:
                    s_list.pop(0)
                    y_list.pop(0)
        first = x_cur is None or not s_list
        x_cur, f_cur, g_cur = trial, f, g
        report(f)
        rejects = 0
        # Two-loop recursion: d = -H g.
        q = g.flatten().clone()
        alphas = []
        for sk, yk in zip(reversed(s_list), reversed(y_list)):
            rho = 1.0 / float(yk @ sk)
            a = rho * float(sk @ q)
            alphas.append((a, rho))
            q.add_(yk, alpha=-a)
        if s_list:
            q.mul_(float(s_list[-1] @ y_list[-1]) / float(y_list[-1] @ y_list[-1]))
        for (sk, yk), (a, rho) in zip(zip(s_list, y_list), reversed(alphas)):
            b = rho * float(yk @ q)
            q.add_(sk, alpha=a - b)
        d = -q.view_as(g)
        t = min(1.0, 1.0 / (float(g.abs().sum()) + 1e-12)) * lr if first else lr
        trial = (x_cur + t * d).clamp_(0.0, 1.0)
    return x if x_cur is None else x_cur


def _adam(objective, x, *, n_iter, lr, report, cancel, betas=(0.9, 0.999), eps=1e-8):
    """Adam (Kingma & Ba, ICLR 2015; ``torch.optim.Adam``) on the image, clipped to
    0..1 after each step (projected Adam).

    ``torch.optim.Adam`` (torch/optim/adam.py, ``_single_tensor_adam``) steps by
    ``lr / (1 - b1**k) * m / (sqrt(v) / sqrt(1 - b2**k) + eps)``, the update of
    the paper's Algorithm 1 with ``eps`` outside the root.
    """
    import torch

    x = x.detach().clone().requires_grad_(True)
    optimiser = torch.optim.Adam([x], lr=lr, betas=betas, eps=eps)
    for _ in range(n_iter):
        check_cancel(cancel)
        optimiser.zero_grad(set_to_none=True)
        loss = objective(x)
        f = float(loss.detach())
        if not math.isfinite(f):
            raise FloatingPointError("the style-transfer loss is not finite")
        report(f)
        loss.backward()
        optimiser.step()
        with torch.no_grad():
            x.clamp_(0.0, 1.0)
    return x.detach()


def _check_layers(name, layers):
    from . import vgg

    if isinstance(layers, str):
        layers = tuple(s.strip() for s in layers.split(",") if s.strip())
    try:
        layers = tuple(layers)
    except TypeError:
        raise ValueError(f"parameter '{name}' must be a sequence of VGG19 layer names") from None
    if not layers:
        raise ValueError(f"parameter '{name}' must name at least one layer")
    for layer in layers:
        try:
            vgg.layer_index(layer)
        except ValueError as exc:
            raise ValueError(f"parameter '{name}': {exc}") from None
    return layers


def _check_params(p):
    """Validate the keyword parameters of :func:`stylize_neural` (in place)."""
    p["iterations"] = check_int("iterations", p["iterations"], minimum=0)
    for key in ("content_weight", "style_weight", "tv_weight", "init_noise"):
        p[key] = check_float(key, p[key], minimum=0.0)
    if p["init_noise"] > 1.0:
        raise ValueError(f"parameter 'init_noise' must be <= 1, got {p['init_noise']}")
    p["style_scale"] = check_float("style_scale", p["style_scale"], minimum=0.0, exclusive_minimum=True)
    p["optimizer"] = check_choice("optimizer", p["optimizer"], ("lbfgs", "adam"))
    if p["learning_rate"] is not None:
        p["learning_rate"] = check_float("learning_rate", p["learning_rate"], minimum=0.0,
                                         exclusive_minimum=True)
    p["preserve_color"] = check_bool("preserve_color", p["preserve_color"])
    p["coarse_size"] = check_int("coarse_size", p["coarse_size"], minimum=_MIN_SIDE)
    if p["max_size"] is not None:
        p["max_size"] = check_int("max_size", p["max_size"], minimum=_MIN_SIDE)
    p["pooling"] = check_choice("pooling", p["pooling"], ("avg", "max"))
    p["seed"] = check_int("seed", p["seed"], minimum=0)
    p["download"] = check_bool("download", p["download"])
    p["style_layers"] = _check_layers("style_layers", p["style_layers"])
    (p["content_layer"],) = _check_layers("content_layer", (p["content_layer"],))
    lw = p["style_layer_weights"]
    if lw is None:
        lw = (1.0 / len(p["style_layers"]),) * len(p["style_layers"])
    else:
        if isinstance(lw, str):
            lw = tuple(s for s in lw.split(",") if s.strip())
        try:
            lw = tuple(check_float("style_layer_weights", float(v) if isinstance(v, str) else v,
                                   minimum=0.0) for v in lw)
        except (TypeError, ValueError) as exc:
            if isinstance(exc, ValueError) and "style_layer_weights" in str(exc):
                raise
            raise ValueError("parameter 'style_layer_weights' must be a sequence of numbers") from None
        if len(lw) != len(p["style_layers"]):
            raise ValueError(
                f"parameter 'style_layer_weights' has {len(lw)} values but 'style_layers' "
                f"names {len(p['style_layers'])} layers"
            )
    p["style_layer_weights"] = lw
    check_callable("progress", p["progress"])
    check_callable("cancel", p["cancel"])


def stylize_neural(
    frame,
    *,
    style_image,
    iterations=300,
    content_weight=1.0,
    style_weight=5.0,
    tv_weight=0.01,
    style_layers=STYLE_LAYERS,
    style_layer_weights=None,
    content_layer=CONTENT_LAYER,
    optimizer="lbfgs",
    learning_rate=None,
    preserve_color=False,
    style_scale=1.0,
    coarse_size=256,
    max_size=None,
    pooling="avg",
    init_noise=0.0,
    seed=0,
    weights=None,
    download=True,
    device="auto",
    progress=None,
    cancel=None,
):
    """Stylize a frame with the artwork ``style_image`` by Gatys optimisation.

    The image is optimised, starting from the content frame, to minimise
    ``content_weight * L_content + style_weight * sum_l w_l E_l
    + tv_weight * L_tv(x) / L_tv(content)`` on the VGG19 representation [1]_
    (see :func:`content_loss`, :func:`style_loss`, :func:`tv_loss`).

    Parameters
    ----------
    frame : numpy.ndarray
        ``HxWx3`` uint8 RGB (also grey, RGBA - alpha ignored -, uint16, float 0..255).
    style_image : str, os.PathLike or numpy.ndarray
        The artwork whose style is transferred. Any size; it is scaled so that
        its longer side is ``style_scale`` times the longer side of the image
        being optimised.
    iterations : int
        Total optimiser iterations, shared among the pyramid levels
        (:func:`split_iterations`). One iteration is one forward and backward
        pass through VGG19.
    content_weight, style_weight, tv_weight : float
        Weights of the content, style and total-variation losses. All three
        terms are dimensionless: the content and style losses are relative
        errors, the TV loss is divided by the content frame's own TV. The
        defaults favour the frame's structure (keyframes must stay trackable);
        raise ``style_weight`` for a stronger style.
    style_layers : sequence of str
        Layers whose Gram matrices define the style (default conv1_1 ... conv5_1).
    style_layer_weights : sequence of float, optional
        One weight ``w_l`` per style layer; default ``1/len(style_layers)`` each.
    content_layer : str
        Content representation layer (default conv4_2).
    optimizer : {"lbfgs", "adam"}
        L-BFGS (as in [1]_; history 10, one evaluation per iteration, steps
        that raise the loss are rejected and halved) or Adam.
    learning_rate : float, optional
        Step of the optimiser: default 1.0 for L-BFGS, 0.02 (in 0..1 pixel
        units) for Adam.
    preserve_color : bool
        Luminance-only transfer [2]_: the style's luminance is matched to the
        frame's mean and deviation, only luminance is optimised and the result's
        luminance is combined with the frame's YIQ chroma.
    style_scale : float
        Size of the style image relative to the optimised image (longer sides);
        the style image is resized by it, so values above 1 make the style's
        features (strokes, textures) larger in the result, values below 1
        smaller.
    coarse_size : int
        Frames whose longer side exceeds this are optimised coarse-to-fine [3]_:
        first at a size halved until the longer side is at most ``coarse_size``,
        then upsampled and refined at each doubling up to the full size.
    max_size : int, optional
        Cap on the longer side of the finest optimised level; the result is
        then resized to the frame. ``None`` optimises at the frame's size.
    pooling : {"avg", "max"}
        Pooling of VGG19 (average is recommended by [1]_ for synthesis).
    init_noise : float
        Blend of uniform noise into the starting image (0 starts from the
        content frame exactly, as in [1]_).
    seed : int
        Seed of the starting noise. On the CPU the result is deterministic.
    weights : str or os.PathLike, optional
        VGG19 ImageNet weights in torchvision layout (``vgg19-dcbb9e9d.pth``);
        default: the torch hub cache, then a download (see
        :func:`engine.stylizers.vgg.resolve_weights`).
    download : bool
        Allow downloading the weights into the torch hub cache.
    device : str
        ``"auto"`` (CUDA, then MPS, then CPU), or an explicit torch device.
    progress : callable, optional
        ``progress(step, total, loss)`` after each iteration, with the total
        loss evaluated in that iteration.
    cancel : callable or threading.Event, optional
        Checked before each iteration; when true, :class:`Cancelled` is raised.

    Returns
    -------
    numpy.ndarray
        ``HxWx3`` uint8 RGB of the frame's size.

    Raises
    ------
    ValueError
        For bad parameters or images (the message names the parameter).
    engine.stylizers.vgg.WeightsNotFoundError, engine.stylizers.vgg.WeightsError
        When the VGG19 weights are missing or unusable.
    Cancelled
        When ``cancel`` fired.
    """
    params = dict(
        iterations=iterations, content_weight=content_weight, style_weight=style_weight,
        tv_weight=tv_weight, style_layers=style_layers, style_layer_weights=style_layer_weights,
        content_layer=content_layer, optimizer=optimizer, learning_rate=learning_rate,
        preserve_color=preserve_color, style_scale=style_scale, coarse_size=coarse_size,
        max_size=max_size, pooling=pooling, init_noise=init_noise, seed=seed, download=download,
        progress=progress, cancel=cancel,
    )
    _check_params(params)
    return optimise(frame, style_image=style_image, params=params, weights=weights, device=device)


def prepare_style(style_image):
    """The artwork as float32 RGB in 0..255 (read once when many frames share it)."""
    if style_image is None:
        raise ValueError("parameter 'style_image' is required for method 'neural'")
    style_rgb, _ = load_image_rgb(style_image, name="style_image")
    return style_rgb


def check_params(**params):
    """The keyword parameters of :func:`stylize_neural` (defaults filled in), checked.

    Returns the ``params`` dict :func:`optimise` takes; ``weights`` and
    ``device`` are not part of it.
    """
    import inspect

    defaults = {k: v.default for k, v in inspect.signature(stylize_neural).parameters.items()
                if v.kind is inspect.Parameter.KEYWORD_ONLY and k not in ("style_image", "weights", "device")}
    for name in params:
        if name not in defaults:
            raise ValueError(f"unknown parameter '{name}' for method 'neural'; known: "
                             f"{', '.join(sorted(defaults))}")
    p = dict(defaults, **params)
    _check_params(p)
    return p


def optimise(frame, *, style_image, params, weights=None, device="auto", init=None, anchors=()):
    """The optimisation behind :func:`stylize_neural`, with a warm start and anchor terms.

    Parameters
    ----------
    frame, style_image, weights, device
        As for :func:`stylize_neural`; ``style_image`` may also be the float
        array from :func:`prepare_style`.
    params : dict
        The other parameters, as returned by :func:`check_params`.
    init : numpy.ndarray, optional
        ``HxWx3`` float32 start in 0..1 at the frame's size (Ruder et al. start
        each frame from the previous output warped by the flow). With a start,
        each pyramid level begins from the start image at that level plus the
        coarser level's correction upsampled (``init_l + up(x_{l-1} -
        init_{l-1})``), so the detail of the start survives coarse-to-fine
        optimisation; ``init_noise`` is ignored.
    anchors : sequence of (numpy.ndarray, numpy.ndarray, float)
        Pixel-space terms ``(target HxWx3 in 0..1, weight map HxW in 0..1,
        weight)`` adding ``weight * sum(M (x - T)^2) / (3 H W)`` to the loss at
        every level (the temporal loss of Ruder et al.).

    Returns
    -------
    numpy.ndarray
        ``HxWx3`` uint8 RGB of the frame's size.
    """
    from . import vgg

    import torch

    p = params
    rgb, _alpha = as_float_rgb(frame, name="frame")
    H, W = rgb.shape[:2]
    if min(H, W) < _MIN_SIDE:
        raise ValueError(
            f"frame is {W}x{H}; neural style transfer needs at least {_MIN_SIDE} pixels per side"
        )
    style_rgb = style_image if isinstance(style_image, np.ndarray) and style_image.dtype == np.float32 \
        and style_image.ndim == 3 and style_image.shape[2] == 3 else prepare_style(style_image)
    dev = vgg.resolve_device(device)
    if init is not None:
        init = np.asarray(init, np.float32)
        if init.shape != (H, W, 3):
            raise ValueError(f"init must be {H}x{W}x3, got {init.shape}")
    anchors = [(np.asarray(t, np.float32), np.asarray(m, np.float32), float(w)) for t, m, w in anchors]
    for t, m, _w in anchors:
        if t.shape != (H, W, 3) or m.shape != (H, W):
            raise ValueError(f"anchor target and mask must be {H}x{W}x3 and {H}x{W}")

    content01 = rgb / np.float32(255.0)
    style01 = style_rgb / np.float32(255.0)
    if p["preserve_color"]:
        yiq_c = rgb_to_yiq(content01)
        y_c = yiq_c[:, :, 0]
        y_s = rgb_to_yiq(style01)[:, :, 0]
        y_s = (y_s - y_s.mean()) * (y_c.std() / (y_s.std() + 1e-6)) + y_c.mean()
        content01 = np.repeat(y_c[:, :, None], 3, axis=2)
        style01 = np.repeat(np.clip(y_s, 0.0, 1.0)[:, :, None], 3, axis=2)
        # Only luminance is optimised: so are the start and the anchors.
        if init is not None:
            init = np.repeat(rgb_to_yiq(init)[:, :, :1], 3, axis=2)
        anchors = [(np.repeat(rgb_to_yiq(t)[:, :, :1], 3, axis=2), m, w) for t, m, w in anchors]

    deepest = max(vgg.layer_index(n) for n in p["style_layers"] + (p["content_layer"],))
    model = vgg.load_vgg19(weights, upto=vgg.LAYER_NAMES[deepest], pooling=p["pooling"],
                           device=dev, download=p["download"])

    fh, fw = H, W
    if p["max_size"] is not None and max(H, W) > p["max_size"]:
        s = p["max_size"] / max(H, W)
        fh, fw = max(_MIN_SIDE, int(round(H * s))), max(_MIN_SIDE, int(round(W * s)))
    levels = pyramid_levels(fh, fw, coarse_size=p["coarse_size"])
    counts = split_iterations(p["iterations"], len(levels))
    # Start at the first level that is optimised at all (a level without
    # iterations would only blur the start by a down- and upscaling).
    first = next((k for k, c in enumerate(counts) if c > 0), len(levels) - 1)
    levels, counts = levels[first:], counts[first:]
    total = int(sum(counts))
    lr = p["learning_rate"] or (1.0 if p["optimizer"] == "lbfgs" else 0.02)

    h0, w0 = levels[0]
    start = resize(content01, h0, w0) if init is None else resize(init, h0, w0)
    if p["init_noise"] > 0.0 and init is None:
        rng = np.random.default_rng(p["seed"])
        noise = rng.random(start.shape, dtype=np.float32)
        if p["preserve_color"]:
            noise = np.repeat(noise[:, :, :1], 3, axis=2)
        start = (1.0 - p["init_noise"]) * start + p["init_noise"] * noise
    x = _to_tensor(np.ascontiguousarray(start, dtype=np.float32), dev)

    step = 0
    for (lh, lw_), n_iter in zip(levels, counts):
        if x.shape[-2:] != (lh, lw_):
            with torch.no_grad():
                if init is None:
                    x = torch.nn.functional.interpolate(x, size=(lh, lw_), mode="bicubic",
                                                        align_corners=False).clamp_(0.0, 1.0)
                else:
                    # Keep the start's own detail; carry over only the coarser level's correction.
                    ph, pw = x.shape[-2:]
                    correction = x - _to_tensor(np.ascontiguousarray(resize(init, ph, pw)), dev)
                    correction = torch.nn.functional.interpolate(correction, size=(lh, lw_),
                                                                 mode="bicubic", align_corners=False)
                    x = (_to_tensor(np.ascontiguousarray(resize(init, lh, lw_)), dev)
                         + correction).clamp_(0.0, 1.0)
        if n_iter == 0:
            continue
        level_anchors = []
        for t, m, wgt in anchors:
            level_anchors.append((_to_tensor(np.ascontiguousarray(resize(t, lh, lw_)), dev),
                                  _to_tensor(np.ascontiguousarray(resize(m[:, :, None], lh, lw_)), dev),
                                  wgt))
        content_t = _to_tensor(resize(content01, lh, lw_), dev)
        sh, sw = _style_size(style01.shape[:2], (lh, lw_), p["style_scale"])
        style_t = _to_tensor(resize(style01, sh, sw), dev)
        objective = _Objective(
            model, content_t, style_t, content_layer=p["content_layer"],
            style_layers=p["style_layers"], layer_weights=p["style_layer_weights"],
            content_weight=p["content_weight"], style_weight=p["style_weight"],
            tv_weight=p["tv_weight"], anchors=level_anchors,
        )
        del content_t, style_t
        def report(loss_value):
            nonlocal step
            step += 1
            if p["progress"] is not None:
                p["progress"](step, total, loss_value)

        run = _lbfgs if p["optimizer"] == "lbfgs" else _adam
        x = run(objective, x, n_iter=n_iter, lr=lr, report=report, cancel=p["cancel"])
        x = x.detach()

    with torch.no_grad():
        if x.shape[-2:] != (H, W):
            x = torch.nn.functional.interpolate(x, size=(H, W), mode="bicubic", align_corners=False)
        out = x.clamp(0.0, 1.0)[0].permute(1, 2, 0).contiguous().cpu().numpy().astype(np.float32)

    if p["preserve_color"]:
        y_out = rgb_to_yiq(out)[:, :, 0]
        yiq = rgb_to_yiq(rgb / np.float32(255.0))
        yiq[:, :, 0] = y_out
        out = yiq_to_rgb(yiq)
    return to_uint8(out * 255.0)
