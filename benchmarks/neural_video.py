"""Benchmark: the three neural routes to a stylized shot, compared on real clips.

    python build.py bench neural-video [--clips sam2_bedroom,sam2_dog] [--frames 6] [--size 80]
                                       [--iterations 32] [--steps 100] [--weights PATH] [--no-timing]

For each clip (the first ``--frames`` frames, scaled so the longer side is
``--size``), one style image, four routes:

* ``per-frame``: Gatys on every frame on its own (neural-video with temporal_weight=0);
* ``keys+prop``: three keys (first, middle, last) that agree (``engine.stylize_keys``), then
  ``engine.propagate``; ``keys-indep`` is the same keys stylized one by one (no propagation);
* ``neural-video``: Ruder et al., same Gatys settings;
* ``fast-net``: a fast network trained on the clip with the stability loss, and ``fast-no-stab``
  the same network trained without it.

Per route: seconds per frame (everything included: flow, training), the warp error of
``bench propagate`` (mean |O_t - warp(O_t-1)| over pixels visible in both frames), the key
disagreement (mean |K_k - warp(K_k-1)| between the three key frames of the output, flow chained
on the source frames) and the style loss (Gram distance to the style image on the Gatys layers,
sum over layers of the relative error, mean over frames). The ratios the issue sets targets for
are printed under each table.

The VGG19 weights: ``--weights PATH`` (e.g. torchvision's vgg19-dcbb9e9d.pth), else small random
weights in the same layout written by the benchmark (the looks are then meaningless, the stability
figures are not). ``--no-timing`` skips the fast network's 640x360 training and inference timing.
"""

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from benchmarks.common import peak_rss_mb  # noqa: E402
from benchmarks.propagate import raw_flow, warp_error  # noqa: E402
from engine import key_disagreement, propagate, stylize_keys, stylize_video  # noqa: E402
from engine.frames import open_frames, read_image, write_frame_atomic  # noqa: E402

DEFAULT_CLIPS = ROOT.parent / "shared" / "data" / "clips"
#: Conv widths of the random VGG19 (the real network's are 64 ... 512).
BENCH_WIDTHS = [16, 16, 32, 32, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64]
REAL_WIDTHS = [64, 64, 128, 128, 256, 256, 256, 256, 512, 512, 512, 512, 512, 512, 512, 512]


def make_style(seed=7, size=128):
    """A synthetic artwork: coloured strokes on paper (stand-in when no --style-image is given)."""
    rng = np.random.default_rng(seed)
    img = np.full((size, size, 3), 235, np.uint8)
    for _ in range(120):
        x, y = rng.integers(0, size, 2)
        angle = rng.uniform(0, np.pi)
        length = rng.integers(8, 30)
        dx, dy = int(length * np.cos(angle)), int(length * np.sin(angle))
        colour = tuple(int(c) for c in rng.integers(20, 230, 3))
        cv2.line(img, (int(x), int(y)), (int(x) + dx, int(y) + dy), colour, int(rng.integers(2, 6)))
    return img


def style_loss_of(outputs, style, weights, layers=("conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1")):
    """Mean over frames of sum_l E_l / L: the Gatys style loss of each output against the style."""
    import torch

    from engine.stylizers import vgg
    from engine.images import resize
    from engine.stylizers.neural import _style_size, gram_matrix, style_loss

    model = vgg.load_vgg19(weights, upto="conv5_1", pooling="avg", device="cpu", download=False)

    def tensor(img01):
        return torch.from_numpy(np.ascontiguousarray(img01.transpose(2, 0, 1)))[None]

    values = []
    with torch.no_grad():
        h, w = outputs[0].shape[:2]
        sh, sw = _style_size(style.shape[:2], (h, w), 1.0)
        feats = model(tensor(resize(style.astype(np.float32) / 255.0, sh, sw)), layers)
        targets = {n: gram_matrix(feats[n]) for n in layers}
        for out in outputs:
            feats = model(tensor(out[:, :, :3].astype(np.float32) / 255.0), layers)
            values.append(sum(float(style_loss(gram_matrix(feats[n]), targets[n])) for n in layers) / len(layers))
    return float(np.mean(values))


def prepare_clip(src_dir, n_frames, size, folder):
    source = open_frames(src_dir)
    numbers = source.frame_numbers[:n_frames]
    h, w = source.size
    scale = size / max(h, w)
    nh, nw = max(16, int(round(h * scale))), max(16, int(round(w * scale)))
    folder.mkdir(parents=True)
    for n in numbers:
        frame = cv2.resize(np.asarray(source.read(n)), (nw, nh), interpolation=cv2.INTER_AREA)
        write_frame_atomic(folder / f"{n:04d}.png", frame)
    return numbers


def run_clip(clip_dir, args, weights, style, tmp):
    clip = tmp / "clip"
    numbers = prepare_clip(clip_dir, args.frames, args.size, clip)
    source = open_frames(clip)
    frames = {n: np.asarray(source.read(n)) for n in numbers}
    flow = raw_flow()
    keys = [numbers[0], numbers[len(numbers) // 2], numbers[-1]]
    gatys = dict(iterations=args.iterations, style_weight=args.style_weight, weights=weights, device="cpu")
    fast = dict(steps=args.steps, width=args.width, blocks=args.blocks, train_size=args.train_size,
                batch_size=2, style_weight=args.style_weight, weights=weights, device="cpu")
    rows = {}

    def score(name, outputs, seconds, key_images=None):
        key_images = key_images or {k: outputs[k] for k in keys}
        rows[name] = dict(spf=seconds / len(numbers), warp=warp_error(outputs, frames, numbers[1:], flow),
                          keys=key_disagreement({k: v[:, :, :3] for k, v in key_images.items()}, clip),
                          style=style_loss_of([outputs[n] for n in numbers], style, weights))

    def video(name, method, **params):
        t0 = time.perf_counter()
        result = stylize_video(clip, method=method, style_image=style, out=tmp / name, **params)
        seconds = time.perf_counter() - t0
        outputs = {n: read_image(p, alpha=False) for n, p in zip(numbers, result.frames)}
        score(name, outputs, seconds)
        return result

    video("per-frame", "neural-video", temporal_weight=0.0, **gatys)
    key_params = {k: v for k, v in gatys.items()}
    t0 = time.perf_counter()
    agreed = stylize_keys(clip, keys, method="neural", style_image=style, **key_params)
    result = propagate(clip, agreed, out=tmp / "keys+prop")
    seconds = time.perf_counter() - t0
    outputs = {n: read_image(p, alpha=False) for n, p in zip(numbers, result.frames)}
    score("keys+prop", outputs, seconds, key_images=agreed)
    t0 = time.perf_counter()
    alone = stylize_keys(clip, keys, method="neural", style_image=style, consistent=False, **key_params)
    rows["keys-indep"] = dict(spf=(time.perf_counter() - t0) / len(keys), warp=float("nan"),
                              keys=key_disagreement(alone, clip),
                              style=style_loss_of(list(alone.values()), style, weights))
    video("neural-video", "neural-video", **gatys)
    fast_result = video("fast-net", "fast-network", **fast)
    video("fast-no-stab", "fast-network", stability_weight=0.0, **fast)
    rows["fast-net"]["train"] = fast_result.train_seconds
    return rows, source.size


def timing_640(weights_real_width, args):
    """Training seconds per step (crops of 256, batch 2) and inference seconds per 640x360 frame."""
    import torch

    from engine.stylizers.fastnet import FASTNET_DEFAULTS, apply_network, build_network, check_params, \
        train_fast_network

    rng = np.random.default_rng(0)
    frames = [cv2.resize(cv2.GaussianBlur(rng.integers(0, 256, (90, 160, 3)).astype(np.uint8), (0, 0), 2),
                         (640, 360)) for _ in range(4)]
    net = build_network(FASTNET_DEFAULTS["width"], FASTNET_DEFAULTS["blocks"]).eval().requires_grad_(False)
    apply_network(net, frames[0])
    t0 = time.perf_counter()
    for f in frames:
        apply_network(net, f)
    infer = (time.perf_counter() - t0) / len(frames)
    steps = args.timing_steps
    params = check_params({"steps": steps, "checkpoint_every": 10 ** 6})
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        train_fast_network(frames, make_style().astype(np.float32), params=params,
                           checkpoint=Path(tmp) / "ckpt", fingerprint="timing", weights=weights_real_width,
                           device="cpu", download=False)
        per_step = (time.perf_counter() - t0) / steps
    return infer, per_step, torch.get_num_threads()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(DEFAULT_CLIPS))
    parser.add_argument("--clips", default="sam2_bedroom,sam2_dog")
    parser.add_argument("--frames", type=int, default=6)
    parser.add_argument("--size", type=int, default=80, help="longer side of the frames (default 80)")
    parser.add_argument("--iterations", type=int, default=32, help="Gatys iterations of a first frame / a key")
    parser.add_argument("--style-weight", type=float, default=20.0)
    parser.add_argument("--steps", type=int, default=100, help="fast-network training steps")
    parser.add_argument("--width", type=int, default=8, help="fast-network width (the paper's is 32)")
    parser.add_argument("--blocks", type=int, default=2, help="fast-network residual blocks (the paper's 5)")
    parser.add_argument("--train-size", type=int, default=48)
    parser.add_argument("--style-image", help="artwork (default: a synthetic one)")
    parser.add_argument("--weights", help="VGG19 weights (default: small random weights written here)")
    parser.add_argument("--no-timing", action="store_true", help="skip the 640x360 fast-network timing")
    parser.add_argument("--timing-steps", type=int, default=3)
    args = parser.parse_args(argv)
    data = Path(args.data)
    if not data.is_dir():
        print(f"bench neural-video: {data} not found; nothing to measure")
        return 0
    import torch

    from test_stylize_neural import write_weights

    style = read_image(args.style_image, alpha=False) if args.style_image else make_style()
    with tempfile.TemporaryDirectory() as tmp_root:
        tmp_root = Path(tmp_root)
        weights = args.weights
        if weights is None:
            weights = str(tmp_root / "vgg19-random.pth")
            write_weights(weights, widths=BENCH_WIDTHS, seed=0)
        print(f"VGG19: {args.weights or 'random weights, widths ' + ','.join(map(str, BENCH_WIDTHS))}; "
              f"torch threads {torch.get_num_threads()}; {args.frames} frames, longer side {args.size}, "
              f"{args.iterations} Gatys iterations (neural-video: {max(1, args.iterations // 4)} for later "
              f"frames), fast network width {args.width}, {args.blocks} blocks, {args.steps} steps at "
              f"{args.train_size}px")
        ratios = []
        for clip_name in args.clips.split(","):
            tmp = tmp_root / clip_name
            tmp.mkdir()
            rows, (h, w) = run_clip(data / clip_name, args, weights, style, tmp)
            print(f"\n=== {clip_name}, {w}x{h}, {args.frames} frames, keys on the first, middle and last")
            print(f"{'route':<14}{'s/frame':>9}{'warp':>8}{'key dis.':>10}{'style loss':>12}")
            for name, r in rows.items():
                warp = "-" if np.isnan(r["warp"]) else f"{r['warp']:.2f}"
                extra = f"   (training {r['train']:.1f} s)" if "train" in r else ""
                extra = "   (3 keys, no propagation)" if name == "keys-indep" else extra
                print(f"{name:<14}{r['spf']:>9.2f}{warp:>8}{r['keys']:>10.2f}{r['style']:>12.3f}{extra}")
            nv = rows["neural-video"]["warp"] / rows["per-frame"]["warp"]
            fn = rows["fast-net"]["warp"] / rows["fast-no-stab"]["warp"]
            kd = rows["keys+prop"]["keys"] / rows["keys-indep"]["keys"]
            ratios.append((clip_name, nv, fn, kd))
            print(f"warp neural-video / per-frame {nv:.2f} (target <= 0.5); fast-net / fast-no-stab {fn:.2f} "
                  f"(target <= 0.7); key disagreement agreeing / independent keys {kd:.2f} (target <= 0.5)",
                  flush=True)
            shutil.rmtree(tmp, ignore_errors=True)
        if not args.no_timing:
            real = str(tmp_root / "vgg19-real-widths.pth")
            write_weights(real, widths=REAL_WIDTHS, seed=0)
            infer, per_step, threads = timing_640(real, args)
            print(f"\nfast-network, the paper's size (width 32, 5 blocks), CPU, {threads} torch threads: "
                  f"{infer:.2f} s per 640x360 frame; training {per_step:.2f} s per step (2 crops of 256, "
                  f"VGG19 at full width), so {per_step * 1000 / 60:.0f} min for the default 1000 steps")
    print(f"\npeak RSS of this benchmark process: {peak_rss_mb():.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
