"""Benchmark: guided synthesis on ../shared/data/synth_case, as its README describes.

    python build.py bench synth [--runs N] [--reference-bin PATH] [--compile] [--data DIR]

Prints seconds (median of N runs, numba compilation excluded), PSNR and SSIM per
case beside the reference Ebsynth figures from the case's README; the warm start
from B's NNF on D; and the peak RSS of one 1920x1080 synthesis with 10 guide
channels (in a fresh process). ``--reference-bin`` times the reference binary
in the same run; ``--compile`` measures a cold numba compile in a fresh process.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import gaussian_ssim, peak_rss_mb, psnr  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "synth_case"

# (name, target, guides as (source file, target file pattern, weight), reference s / PSNR / SSIM)
CASES = [
    ("colour only", "B", [("frame", 1.0)], (9.9, 23.29, 0.907)),
    ("colour + edge", "B", [("frame", 6.0), ("edge", 0.5)], (9.8, 30.79, 0.967)),
    ("four guides", "B", [("frame", 6.0), ("edge", 0.5), ("temp", 0.5), ("pos", 2.0)], (14.6, 31.01, 0.968)),
    ("four guides", "C", [("frame", 6.0), ("edge", 0.5), ("temp", 0.5), ("pos", 2.0)], (14.6, 31.99, 0.975)),
    ("four guides", "D", [("frame", 6.0), ("edge", 0.5), ("temp", 0.5), ("pos", 2.0)], (None, 31.45, None)),
    ("colour + edge", "D", [("frame", 6.0), ("edge", 0.5)], (None, 31.25, None)),
]


class Case:
    def __init__(self, data):
        self.data = Path(data)

    def image(self, name):
        path = self.data / name
        img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if img is None:
            sys.exit(f"bench synth: cannot read {path}")
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB) if img.ndim == 3 else img[:, :, None]

    def guides(self, spec, target):
        key = self.image("keyA.png")
        src, tgt, weights = [], [], []
        for kind, weight in spec:
            # The temporal guide's source side is the keyframe itself.
            src.append(key if kind == "temp" else self.image(f"{kind}A.png"))
            tgt.append(self.image(f"{kind}{target}.png"))
            weights.append(weight)
        return key, src, tgt, weights

    def score(self, out, target):
        valid = np.load(self.data / f"valid_{target}.npy").astype(np.uint8)
        valid = cv2.erode(valid, np.ones((7, 7), np.uint8)).astype(bool)
        gt = self.image(f"gt_{target}.png")
        return psnr(out, gt, valid), gaussian_ssim(out, gt, valid)


def timed(fn, runs):
    times, result = [], None
    for _ in range(runs):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def run_reference(binary, case, spec, target, runs):
    """Time the reference Ebsynth binary on one case (whole process)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.png"
        cmd = [binary, "-style", str(case.data / "keyA.png")]
        for kind, weight in spec:
            src = "keyA.png" if kind == "temp" else f"{kind}A.png"
            cmd += ["-guide", str(case.data / src), str(case.data / f"{kind}{target}.png"),
                    "-weight", str(weight)]
        cmd += ["-output", str(out)]
        seconds, _ = timed(lambda: subprocess.run(cmd, check=True, capture_output=True), runs)
        return seconds, case.score(_read_rgb(out), target)


def _read_rgb(path):
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


_MEMORY_SCRIPT = """
import sys, time
sys.path.insert(0, {root!r})
import cv2, numpy as np
from engine.synth import synthesize
from benchmarks.common import peak_rss_mb
data = {data!r}
def load(name, size=(1920, 1080)):
    img = cv2.imread(data + "/" + name, cv2.IMREAD_UNCHANGED)
    img = cv2.resize(img, size, interpolation=cv2.INTER_CUBIC)
    return img if img.ndim == 3 else img[:, :, None]
key = load("keyA.png")
src = [load("frameA.png"), load("edgeA.png"), key, load("posA.png")]
tgt = [load("frameB.png"), load("edgeB.png"), load("tempB.png"), load("posB.png")]
synthesize(key[:64, :64], [g[:64, :64] for g in src], [g[:64, :64] for g in tgt], guide_weights=[6, .5, .5, 2])
base = peak_rss_mb()
t0 = time.perf_counter()
synthesize(key, src, tgt, guide_weights=[6, .5, .5, 2])
print(f"{{time.perf_counter() - t0:.2f}} {{peak_rss_mb():.0f}} {{base:.0f}}")
"""

_COMPILE_SCRIPT = """
import sys, time
sys.path.insert(0, {root!r})
t0 = time.perf_counter()
import numpy as np
from engine.synth import synthesize
g = (np.random.default_rng(0).random((48, 64, 3)) * 255).astype(np.uint8)
synthesize(g, [g], [g], guide_weights=[1.0], extra_pass_3x3=True)
print(f"{{time.perf_counter() - t0:.1f}}")
"""


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--reference-bin", help="path of the reference ebsynth binary, to time it in this run")
    parser.add_argument("--compile", action="store_true", help="also measure a cold numba compile")
    parser.add_argument("--no-memory", action="store_true", help="skip the 1920x1080 memory run")
    args = parser.parse_args(argv)
    if not Path(args.data).is_dir():
        print(f"bench synth: {args.data} not found; nothing to measure")
        return 0
    case = Case(args.data)

    from engine.synth import synthesize

    t0 = time.perf_counter()
    tiny = case.image("keyA.png")[:48, :64]
    synthesize(tiny, [tiny], [tiny], guide_weights=[1.0], extra_pass_3x3=True)
    print(f"numba kernels loaded (from cache when warm) in {time.perf_counter() - t0:.1f} s")
    if args.compile:
        with tempfile.TemporaryDirectory() as tmp:
            env = dict(os.environ, NUMBA_CACHE_DIR=tmp)
            out = subprocess.run([sys.executable, "-c", _COMPILE_SCRIPT.format(root=str(ROOT))],
                                 env=env, capture_output=True, text=True, check=True)
            print(f"cold numba compile (empty cache), in a fresh process: {out.stdout.strip()} s")
            out = subprocess.run([sys.executable, "-c", _COMPILE_SCRIPT.format(root=str(ROOT))],
                                 env=env, capture_output=True, text=True, check=True)
            print(f"load from that cache, in a fresh process:             {out.stdout.strip()} s")

    print(f"\nsynth_case at 640x360, median of {args.runs} runs, {os.cpu_count()} cores")
    header = f"{'case':<16}{'target':<7}{'ours s':>8}{'PSNR':>8}{'SSIM':>7}   {'ref s':>6}{'PSNR':>8}{'SSIM':>7}"
    if args.reference_bin:
        header += f"   {'ref s (this run)':>16}{'x faster':>9}"
    print(header)
    nnf_b = {}
    cold_d = {}
    for name, target, spec, (ref_s, ref_psnr, ref_ssim) in CASES:
        key, src, tgt, weights = case.guides(spec, target)
        seconds, result = timed(lambda: synthesize(key, src, tgt, guide_weights=weights), args.runs)
        p, s = case.score(result.image, target)
        if target == "B":
            nnf_b[name] = result.nnf
        if target == "D":
            cold_d[name] = seconds
        line = (f"{name:<16}{target:<7}{seconds:>8.2f}{p:>8.2f}{s:>7.3f}   "
                f"{_fmt(ref_s, '.1f'):>6}{_fmt(ref_psnr, '.2f'):>8}{_fmt(ref_ssim, '.3f'):>7}")
        if args.reference_bin:
            ref_seconds, (rp, rs) = run_reference(args.reference_bin, case, spec, target, args.runs)
            line += f"   {ref_seconds:>10.2f} ({rp:.2f}){ref_seconds / seconds:>8.1f}x"
        print(line)

    print("\nwarm start on D from B's NNF (same guides and weights)")
    for name in ("four guides", "colour + edge"):
        spec = next(c[2] for c in CASES if c[0] == name and c[1] == "D")
        ref_psnr = next(c[3][1] for c in CASES if c[0] == name and c[1] == "D")
        key, src, tgt, weights = case.guides(spec, "D")
        seconds, result = timed(
            lambda: synthesize(key, src, tgt, guide_weights=weights, init_nnf=nnf_b[name]), args.runs)
        p, s = case.score(result.image, "D")
        print(f"{name:<16}warm {seconds:.2f} s = {seconds / cold_d[name]:.2f} of our from-scratch "
              f"{cold_d[name]:.2f} s; PSNR {p:.2f} (reference from scratch {ref_psnr:.2f}), SSIM {s:.3f}")

    if not args.no_memory:
        out = subprocess.run([sys.executable, "-c", _MEMORY_SCRIPT.format(root=str(ROOT), data=str(args.data))],
                             capture_output=True, text=True, check=True)
        seconds, peak, base = out.stdout.split()
        print(f"\n1920x1080, 4 guides = 10 guide channels + 3 style: {seconds} s, "
              f"peak RSS {peak} MB (process after loading inputs and kernels: {base} MB)")
    print(f"\npeak RSS of this benchmark process: {peak_rss_mb():.0f} MB")
    return 0


def _fmt(value, spec):
    return "-" if value is None else format(value, spec)


if __name__ == "__main__":
    sys.exit(main())
