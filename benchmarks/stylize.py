"""Benchmark: keyframe stylizers at 640x360 against the bars of issue 4.

    python build.py bench stylize [--only neural,deepdream,painterly] [--weights PATH]
                                  [--frame IMG] [--style IMG] [--iterations 300]
                                  [--runs 1] [--painterly-runs 5] [--device cpu,cuda]

Measures, on the frame ../shared/data/clips/sam2_bedroom/0001.jpg (640x360;
scikit-image's astronaut cropped to 16:9 and resized when the clip is absent):

* ``neural``: 300 iterations (the default schedule, coarse-to-fine), seconds
  per keyframe and the final loss, with the time and iterations of every
  pyramid level (bar: 180 s on 2 CPU cores);
* ``deepdream``: 3 octaves with the default iterations (bar: 60 s);
* ``painterly``: every filter at 1920x1080 (the frame upscaled), best and
  median of 5 runs after one warm-up run (bar: 1 s each).

The VGG19 weights are the real ImageNet file when one is found (``--weights``,
then the torch hub cache). Otherwise random weights with the shapes of
torchvision's vgg19 are written to a temporary file, and the output says so:
the speed does not depend on the values, but the images and loss values are
then meaningless. Timings are wall-clock seconds of the public
``engine.stylizers.stylize`` call; the VGG19 file is loaded once before timing
(the loading time is printed). Each neural/deepdream figure is the best of
``--runs`` runs. The load average (other jobs on the same cores) is printed
before and after every section, since it changes CPU figures a lot.

On a machine with CUDA (or MPS) the optimising methods are also timed there
unless ``--device`` says otherwise.
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import peak_rss_mb  # noqa: E402

DEFAULT_FRAME = ROOT.parent / "shared" / "data" / "clips" / "sam2_bedroom" / "0001.jpg"
SIZE = (640, 360)
PAINTERLY_SIZE = (1920, 1080)
BARS = {"neural": 180.0, "deepdream": 60.0, "painterly": 1.0}
# torchvision vgg19 "features": (index, output channels) of the 16 convolutions.
_VGG19_CONVS = tuple(zip(
    (0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34),
    (64, 64, 128, 128, 256, 256, 256, 256, 512, 512, 512, 512, 512, 512, 512, 512),
))


def load_rgb(path):
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        sys.exit(f"bench stylize: cannot read {path}")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def fit_16_9(img, size=SIZE):
    """Centre-crop to the aspect of ``size`` and resize (area) to it."""
    w, h = size
    ih, iw = img.shape[:2]
    if iw * h > ih * w:
        cw = ih * w // h
        img = img[:, (iw - cw) // 2:(iw - cw) // 2 + cw]
    else:
        ch = iw * h // w
        img = img[(ih - ch) // 2:(ih - ch) // 2 + ch]
    return cv2.resize(img, size, interpolation=cv2.INTER_AREA)


def default_frame():
    if DEFAULT_FRAME.is_file():
        img = load_rgb(DEFAULT_FRAME)
        if img.shape[1::-1] != SIZE:
            img = fit_16_9(img)
        return img, str(DEFAULT_FRAME)
    from skimage import data

    return fit_16_9(data.astronaut()), "scikit-image data.astronaut(), cropped to 16:9 and resized"


def default_style():
    from skimage import data

    return data.coffee(), "scikit-image data.coffee() (any picture: the speed does not depend on it)"


def write_random_vgg19(path, seed=0):
    """Save a state dict with torchvision vgg19's keys and shapes and He-initialised random values."""
    import torch

    g = torch.Generator().manual_seed(seed)
    state = {}
    in_ch = 3
    for idx, out_ch in _VGG19_CONVS:
        std = (2.0 / (9 * in_ch)) ** 0.5
        state[f"features.{idx}.weight"] = torch.randn(out_ch, in_ch, 3, 3, generator=g) * std
        state[f"features.{idx}.bias"] = torch.zeros(out_ch)
        in_ch = out_ch
    torch.save(state, path)


def find_weights(explicit, tmpdir):
    """Return (path, description, is_real)."""
    from engine.stylizers import vgg

    if explicit:
        if not os.path.isfile(explicit):
            sys.exit(f"bench stylize: weights file not found: {explicit}")
        return explicit, f"{explicit} (given with --weights)", True
    cached = vgg.hub_weights_path()
    if os.path.isfile(cached):
        return cached, f"{cached} (torch hub cache)", True
    path = os.path.join(tmpdir, "vgg19-random.pth")
    write_random_vgg19(path)
    return path, (f"RANDOM weights with torchvision vgg19's shapes, written to {path}: the real "
                  f"{vgg.WEIGHTS_FILENAME} is neither given nor at {cached}. The speed does not "
                  f"depend on the values; the images and loss values do (they are meaningless "
                  f"here)."), False


def load_average():
    try:
        return "load average {:.2f} {:.2f} {:.2f} (1/5/15 min)".format(*os.getloadavg())
    except OSError:
        return "load average unavailable"


def cpu_note(cpu, seconds):
    """CPU seconds of this process (all threads) and the cores it kept busy on average."""
    return f"CPU {cpu:.1f} s, {cpu / max(seconds, 1e-9):.2f} cores busy on average"


def verdict(seconds, bar):
    return f"bar <= {bar:g} s: {'met' if seconds <= bar else 'NOT met'}"


class StepClock:
    """A ``progress`` callback that records the time and loss of every iteration."""

    def __init__(self):
        self.t0 = time.perf_counter()
        self.times = []
        self.losses = []
        self.total = None

    def __call__(self, step, total, loss):
        self.times.append(time.perf_counter() - self.t0)
        self.losses.append(loss)
        self.total = total


def neural_levels(frame_hw, iterations):
    """The pyramid levels and iterations the default neural schedule runs."""
    from engine.stylizers import neural

    levels = neural.pyramid_levels(*frame_hw, coarse_size=_default("neural", "coarse_size"))
    counts = neural.split_iterations(iterations, len(levels))
    return [(lv, c) for lv, c in zip(levels, counts) if c > 0]


def _default(method, name):
    from engine.stylizers import method_params

    return method_params(method)[name]


def bench_neural(frame, style, weights, device, iterations, runs):
    from engine.stylizers import stylize

    print(f"\nneural: {iterations} iterations at {frame.shape[1]}x{frame.shape[0]} on {device}, "
          f"best of {runs}; {load_average()}")
    plan = neural_levels(frame.shape[:2], iterations)
    print("  schedule: " + ", ".join(f"{w}x{h}: {c} it" for (h, w), c in plan))
    best = None
    for r in range(runs):
        clock = StepClock()
        t0, cpu0 = time.perf_counter(), time.process_time()
        stylize(frame, method="neural", style_image=style, iterations=iterations,
                weights=weights, device=device, progress=clock)
        seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        print(f"  run {r + 1}: {seconds:.1f} s ({cpu_note(cpu, seconds)}), loss "
              f"{clock.losses[0]:.4g} at the first iteration -> {clock.losses[-1]:.4g} at the "
              f"last; {load_average()}")
        if best is None or seconds < best[0]:
            best = (seconds, clock)
    seconds, clock = best
    print(f"  levels of the best run (time includes the level's style and content targets; "
          f"loss of the current iterate at the level's first and last iteration):")
    start = 0
    before = 0.0
    for (h, w), count in plan:
        end = start + count
        level_s = clock.times[end - 1] - before
        print(f"    {w}x{h}: {count} iterations in {level_s:.1f} s ({level_s / count:.3f} s each), "
              f"loss {clock.losses[start]:.4g} -> {clock.losses[end - 1]:.4g}")
        before = clock.times[end - 1]
        start = end
    bar = verdict(seconds, BARS["neural"]) if iterations == 300 else "the bar is for 300 iterations"
    print(f"  neural {seconds:.1f} s per keyframe, final loss {clock.losses[-1]:.4g}; {bar}")
    return seconds


def bench_deepdream(frame, weights, device, runs):
    from engine.stylizers import stylize

    octaves = 3
    iterations = _default("deepdream", "iterations")
    print(f"\ndeepdream: {octaves} octaves x {iterations} iterations at "
          f"{frame.shape[1]}x{frame.shape[0]} on {device}, best of {runs}; {load_average()}")
    times = []
    for r in range(runs):
        clock = StepClock()
        t0, cpu0 = time.perf_counter(), time.process_time()
        stylize(frame, method="deepdream", octaves=octaves, weights=weights, device=device,
                progress=clock)
        times.append(time.perf_counter() - t0)
        cpu = time.process_time() - cpu0
        print(f"  run {r + 1}: {times[-1]:.1f} s ({cpu_note(cpu, times[-1])}), activation "
              f"{clock.losses[0]:.4g} -> {clock.losses[-1]:.4g}; {load_average()}")
    seconds = min(times)
    print(f"  deepdream {seconds:.1f} s per keyframe; {verdict(seconds, BARS['deepdream'])}")
    return seconds


def bench_painterly(frame, runs):
    from engine.stylizers import stylize
    from engine.stylizers.painterly import FILTERS

    big = cv2.resize(frame, PAINTERLY_SIZE, interpolation=cv2.INTER_CUBIC)
    print(f"\npainterly at {PAINTERLY_SIZE[0]}x{PAINTERLY_SIZE[1]}, default parameters, "
          f"best and median of {runs} after one warm-up run; {load_average()}")
    print(f"  {'filter':<12}{'best s':>8}{'median s':>10}   bar")
    worst = 0.0
    for name in FILTERS:
        stylize(big, method="painterly", filter=name)
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            stylize(big, method="painterly", filter=name)
            times.append(time.perf_counter() - t0)
        best, med = min(times), statistics.median(times)
        worst = max(worst, best)
        print(f"  {name:<12}{best:>8.3f}{med:>10.3f}   {verdict(best, BARS['painterly'])}")
    print(f"  {load_average()}")
    return worst


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default="neural,deepdream,painterly",
                        help="comma-separated sections to run")
    parser.add_argument("--weights", help="VGG19 weights in torchvision layout (vgg19-dcbb9e9d.pth)")
    parser.add_argument("--frame", help="content frame (default: sam2_bedroom/0001.jpg)")
    parser.add_argument("--style", help="style image for neural (default: scikit-image coffee)")
    parser.add_argument("--iterations", type=int, default=300, help="neural iterations")
    parser.add_argument("--runs", type=int, default=1, help="runs of neural and deepdream (best is kept)")
    parser.add_argument("--painterly-runs", type=int, default=5)
    parser.add_argument("--device", help="comma-separated torch devices (default: cpu, plus cuda/mps "
                                         "when present)")
    args = parser.parse_args(argv)
    sections = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(sections) - set(BARS)
    if unknown:
        parser.error(f"unknown sections {sorted(unknown)}; known: {', '.join(BARS)}")

    if args.frame:
        frame, frame_desc = fit_16_9(load_rgb(args.frame)), args.frame
    else:
        frame, frame_desc = default_frame()
    if args.style:
        style, style_desc = load_rgb(args.style), args.style
    else:
        style, style_desc = default_style()

    import torch

    from engine.stylizers import vgg

    print(f"frame: {frame_desc} ({frame.shape[1]}x{frame.shape[0]})")
    print(f"cores: {os.cpu_count()}, torch {torch.__version__} with {torch.get_num_threads()} "
          f"threads, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '(unset)')}; {load_average()}")
    if "painterly" in sections:
        bench_painterly(frame, args.painterly_runs)

    torch_sections = [s for s in sections if s in ("neural", "deepdream")]
    if torch_sections:
        if args.device:
            devices = [d.strip() for d in args.device.split(",") if d.strip()]
        else:
            devices = ["cpu"]
            gpu = vgg.resolve_device("auto")
            if gpu.type != "cpu":
                devices.append(gpu.type)
        with tempfile.TemporaryDirectory(prefix="karwai-bench-") as tmp:
            weights, desc, _real = find_weights(args.weights, tmp)
            print(f"\nVGG19 weights: {desc}")
            if "neural" in sections:
                print(f"style: {style_desc} ({style.shape[1]}x{style.shape[0]})")
            for device in devices:
                t0 = time.perf_counter()
                vgg.load_vgg19(weights, upto="conv5_1", pooling="avg", device=device, download=False)
                vgg.load_vgg19(weights, upto="conv4_2", pooling="max", device=device, download=False)
                print(f"\nVGG19 loaded for {device} in {time.perf_counter() - t0:.1f} s "
                      f"(not counted below)")
                if "neural" in sections:
                    bench_neural(frame, style, weights, device, args.iterations, args.runs)
                if "deepdream" in sections:
                    bench_deepdream(frame, weights, device, args.runs)
    print(f"\npeak RSS of this benchmark process: {peak_rss_mb():.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
