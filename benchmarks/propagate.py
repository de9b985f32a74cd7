"""Benchmark: keyframe propagation on the real clips in ../shared/data/clips.

    python build.py bench propagate [--clips a,b] [--styles watercolor,cartoon] [--protocols 12,40]
                                    [--quality balanced] [--no-baselines]

A style is a known filter S. The keys are S(F_first) and S(F_last); the right
answer for frame t is S(F_t). Two protocols: the first 12 frames with keys on
1 and 12 (the protocol behind the Ebsynth-pipeline anchor figures), and the
first 40 frames with keys first and last. Scored over the non-key frames:
PSNR, SSIM (grey, 11x11 Gaussian, sigma 1.5), sharpness (mean Sobel gradient
of O_t over that of S(F_t)), temporal warping error (mean |O_t - warp(O_t-1)|
over pixels visible in both frames by forward-backward DIS consistency on the
raw frames; also printed for S(F_t) itself), seconds per frame end to end
(flow included, cold cache) and peak RSS. Baselines in the same run: the
nearest keyframe warped by chained flow, and a linear crossfade of our two
passes.
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

from benchmarks.common import gaussian_ssim, peak_rss_mb, psnr  # noqa: E402
from engine import JobSettings, propagate  # noqa: E402
from engine.flow import compose_flows, consistency_mask, warp  # noqa: E402
from engine.frames import open_frames  # noqa: E402

DEFAULT_CLIPS = ROOT.parent / "shared" / "data" / "clips"

# Anchor figures of the standard Ebsynth pipeline, 12-frame protocol (PSNR, sharpness, warp error, warp of S).
ANCHORS = {
    ("sam2_bedroom", "watercolor"): (21.27, 0.80, 4.24, 6.63),
    ("liveportrait_selfie", "cartoon"): (23.60, 0.96, 1.20, 2.47),
}
FLOW_WARP_ANCHORS = {("sam2_bedroom", "watercolor"): 19.48, ("liveportrait_selfie", "cartoon"): 23.40}


def watercolor(img):
    return cv2.stylization(img, sigma_s=40, sigma_r=0.35)


def cartoon(img):
    smooth = img
    for _ in range(3):
        smooth = cv2.bilateralFilter(smooth, 7, 40, 7)
    poster = (smooth // 48) * 48 + 24
    grey = cv2.medianBlur(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY), 5)
    edges = cv2.adaptiveThreshold(grey, 255, cv2.ADAPTIVE_THRESH_MEAN_C, cv2.THRESH_BINARY, 9, 4)
    return cv2.bitwise_and(poster.astype(np.uint8), poster.astype(np.uint8), mask=edges)


def pencil(img):
    """A held-out style of ours (not one of the two public ones)."""
    grey, _ = cv2.pencilSketch(img, sigma_s=50, sigma_r=0.07, shade_factor=0.04)
    return cv2.cvtColor(grey, cv2.COLOR_GRAY2RGB)


def detail(img):
    """A held-out style of ours: exaggerated detail with a colour shift."""
    return cv2.detailEnhance(img, sigma_s=10, sigma_r=0.15)[:, :, ::-1].copy()


STYLES = {"watercolor": watercolor, "cartoon": cartoon, "pencil": pencil, "detail": detail}


def raw_flow():
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)

    def flow(a, b):
        ga = cv2.cvtColor(a, cv2.COLOR_RGB2GRAY)
        gb = cv2.cvtColor(b, cv2.COLOR_RGB2GRAY)
        return dis.calc(ga, gb, None)
    return flow


def sharpness(out, ref):
    def grad(img):
        g = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float32)
        return np.hypot(cv2.Sobel(g, cv2.CV_32F, 1, 0), cv2.Sobel(g, cv2.CV_32F, 0, 1)).mean()
    return grad(out) / max(grad(ref), 1e-6)


def warp_error(outputs, frames, scored, flow):
    """Mean over scored t of mean |O_t - warp(O_t-1)| on pixels consistent in both directions."""
    errs = []
    for t in scored:
        if t - 1 not in outputs:
            continue
        to_prev = flow(frames[t], frames[t - 1])
        to_next = flow(frames[t - 1], frames[t])
        valid = consistency_mask(to_prev, to_next)
        warped = warp(outputs[t - 1], to_prev)
        diff = np.abs(outputs[t].astype(np.float32) - warped.astype(np.float32)).mean(axis=2)
        errs.append(diff[valid].mean())
    return float(np.mean(errs))


def flow_warp_baseline(frames, keys, styled_keys, flow):
    """Each frame: the nearest key's style, warped by flow chained frame to frame."""
    out = {}
    numbers = sorted(frames)
    for t in numbers:
        k = min(keys, key=lambda k: (abs(k - t), k))
        step = 1 if k > t else -1
        total = None
        for a in range(t, k, step):
            f = flow(frames[a], frames[a + step])
            total = f if total is None else compose_flows(total, f)
        out[t] = styled_keys[k] if total is None else warp(styled_keys[k], total)
    return out


def score(outputs, truths, frames, scored, flow):
    ps = [psnr(outputs[t], truths[t]) for t in scored]
    ss = [gaussian_ssim(outputs[t], truths[t]) for t in scored]
    sh = [sharpness(outputs[t], truths[t]) for t in scored]
    return dict(psnr=float(np.mean(ps)), ssim=float(np.mean(ss)), sharp=float(np.mean(sh)),
                warp=warp_error(outputs, frames, scored, flow))


def run_case(clip_dir, style_name, n_frames, quality, baselines, flow, methods=("weighted", "poisson", "crossfade")):
    source = open_frames(clip_dir)
    numbers = source.frame_numbers[:n_frames]
    frames = {t: source.read(t) for t in numbers}
    style = STYLES[style_name]
    truths = {t: style(frames[t]) for t in numbers}
    keys = {numbers[0]: truths[numbers[0]], numbers[-1]: truths[numbers[-1]]}
    scored = numbers[1:-1]
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        clip = Path(tmp) / "in"
        clip.mkdir()
        for t in numbers:
            shutil.copy(source.path_for(t), clip)
        runs = [("ours", methods[0])] + ([(m, m) for m in methods[1:]] if baselines else [])
        for label, mode in runs:
            out = Path(tmp) / f"out-{label}"
            t0 = time.perf_counter()
            result = propagate(clip, keys, out=out, settings=JobSettings(quality=quality, blend=mode))
            seconds = time.perf_counter() - t0
            outputs = {t: cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB)
                       for t, p in zip(numbers, result.frames)}
            rows[label] = score(outputs, truths, frames, scored, flow)
            rows[label]["spf"] = seconds / len(scored)
    if baselines:
        warped = flow_warp_baseline(frames, list(keys), keys, flow)
        rows["flow-warp"] = score(warped, truths, frames, scored, flow)
    truth_warp = warp_error(truths, frames, scored, flow)
    return rows, truth_warp


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(DEFAULT_CLIPS))
    parser.add_argument("--clips", help="comma-separated clip names (default: all)")
    parser.add_argument("--styles", default="watercolor,cartoon")
    parser.add_argument("--protocols", default="12,40", help="frame counts, keys first and last")
    parser.add_argument("--quality", default="balanced")
    parser.add_argument("--no-baselines", action="store_true", help="only our default method")
    parser.add_argument("--methods", default="weighted,poisson,crossfade",
                        help="blend modes to run; the first is 'ours' (default: weighted,poisson,crossfade)")
    args = parser.parse_args(argv)
    data = Path(args.data)
    if not data.is_dir():
        print(f"bench propagate: {data} not found; nothing to measure")
        return 0
    clips = args.clips.split(",") if args.clips else sorted(p.name for p in data.iterdir() if p.is_dir())
    flow = raw_flow()
    summary = {}
    for n_frames in (int(x) for x in args.protocols.split(",")):
        print(f"\n=== {n_frames}-frame protocol, keys on the first and last frame, quality {args.quality}")
        print(f"{'clip':<21}{'style':<11}{'method':<10}{'PSNR':>7}{'SSIM':>7}{'sharp':>7}{'warp':>7}"
              f"{'s/frame':>9}   anchors (pipeline PSNR/sharp/warp)")
        for clip in clips:
            for style_name in args.styles.split(","):
                rows, truth_warp = run_case(data / clip, style_name, n_frames, args.quality,
                                            not args.no_baselines, flow, tuple(args.methods.split(",")))
                summary[(n_frames, clip, style_name)] = rows
                for label, r in rows.items():
                    anchor = ""
                    if n_frames == 12 and label == "ours" and (clip, style_name) in ANCHORS:
                        a = ANCHORS[(clip, style_name)]
                        anchor = (f"   {a[0]:.2f}/{a[1]:.2f}/{a[2]:.2f}: PSNR {r['psnr'] - a[0]:+.2f} dB, "
                                  f"warp {'<=' if r['warp'] <= a[2] else '>'} pipeline")
                    spf = f"{r['spf']:>9.2f}" if "spf" in r else f"{'-':>9}"
                    print(f"{clip:<21}{style_name:<11}{label:<10}{r['psnr']:>7.2f}{r['ssim']:>7.3f}"
                          f"{r['sharp']:>7.2f}{r['warp']:>7.2f}{spf}{anchor}")
                print(f"{clip:<21}{style_name:<11}{'S(F_t)':<10}{'':>21}{truth_warp:>7.2f}", flush=True)
        for style_name in args.styles.split(","):
            ours = [summary[(n_frames, c, style_name)]["ours"]["psnr"] for c in clips]
            line = f"mean over clips, {style_name}: ours {np.mean(ours):.2f} dB"
            if not args.no_baselines:
                fw = [summary[(n_frames, c, style_name)]["flow-warp"]["psnr"] for c in clips]
                worst = min(o - f for o, f in zip(ours, fw))
                line += f", flow-warp {np.mean(fw):.2f} dB, gain {np.mean(ours) - np.mean(fw):+.2f} dB, worst clip {worst:+.2f} dB"
            print(line)
    print(f"\npeak RSS of this benchmark process: {peak_rss_mb():.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
