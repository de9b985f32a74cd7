"""Benchmark: a long shot. Memory must not grow with the length of the clip (issue 7, part 4).

    python build.py bench long [--frames 600] [--short 100] [--size 640x360] [--quality draft]
                               [--workdir DIR] [--keep]

Generates a clip of ``--frames`` frames (a camera pan over a procedural
texture with a moving disc, written frame by frame: nothing is held in
memory), then propagates two keys (the first and the last frame, so the
whole clip is one span between keys, the longest pass there is) over the
first ``--short`` frames and over all of them, each run in a fresh
subprocess. Prints, for each run, the wall time, seconds per frame, the peak
RSS (``ru_maxrss``), the RSS sampled at 10 %, 50 % and 90 % of the run, and
the peak size of the job's cache folder (flow and pass states). The bar:
the long run's peak RSS within 10 % of the short run's.
"""

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

BAR = 0.10


def _rss_mb():
    """Current resident set size in MB (Linux), or None."""
    try:
        with open("/proc/self/statm") as handle:
            pages = int(handle.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2 ** 20
    except (OSError, ValueError, IndexError):
        return None


def _peak_rss_mb():
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024.0 if sys.platform != "darwin" else kb / 2 ** 20


def _folder_mb(folder):
    total = 0
    for dirpath, _, files in os.walk(folder):
        for name in files:
            try:
                total += os.path.getsize(os.path.join(dirpath, name))
            except OSError:
                pass
    return total / 2 ** 20


# ---------------------------------------------------------------------------
# The clip


def generate_clip(folder, frames, size, seed=0):
    """Write ``frames`` frames of ``size`` (w, h) to ``folder``, one at a time."""
    import cv2
    import numpy as np

    w, h = size
    folder.mkdir(parents=True, exist_ok=True)
    speed = 2
    rng = np.random.default_rng(seed)
    # Texture at a quarter of the resolution, upsampled per frame: 4x less to keep.
    small_w = (w + speed * frames) // 4 + 8
    small = cv2.GaussianBlur(rng.random((h // 4 + 8, small_w, 3)).astype(np.float32), (0, 0), 1.2)
    small = ((small - small.min()) / (small.max() - small.min()) * 255).astype(np.uint8)
    for t in range(1, frames + 1):
        x0 = speed * (t - 1)
        cols = slice(x0 // 4, x0 // 4 + w // 4 + 2)
        crop = cv2.resize(small[:, cols], None, fx=4, fy=4, interpolation=cv2.INTER_CUBIC)
        off = x0 % 4
        frame = np.ascontiguousarray(crop[:h, off:off + w])
        cx = int((w * 0.2 + t * 3) % w)
        cy = int(h / 2 + h / 4 * np.sin(t / 15.0))
        cv2.circle(frame, (cx, cy), h // 8, (230, 60, 40), -1, lineType=cv2.LINE_AA)
        cv2.imwrite(str(folder / f"{t:04d}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR),
                    [cv2.IMWRITE_PNG_COMPRESSION, 1])


def stylize_key(frame_path, key_path):
    """A stand-in for a painted key: posterized, colour-swapped, dark edges."""
    import cv2

    img = cv2.imread(str(frame_path))
    poster = (img // 64) * 64 + 32
    edges = cv2.Canny(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY), 40, 100)
    out = poster[:, :, ::-1].copy()
    out[edges > 0] = 20
    cv2.imwrite(str(key_path), out)


def link_prefix(clip, folder, frames):
    """A folder holding the first ``frames`` frames of ``clip`` (hard links, or copies)."""
    folder.mkdir(parents=True, exist_ok=True)
    for t in range(1, frames + 1):
        src, dst = clip / f"{t:04d}.png", folder / f"{t:04d}.png"
        try:
            os.link(src, dst)
        except OSError:
            shutil.copyfile(src, dst)


# ---------------------------------------------------------------------------
# One run, in a fresh process


def run_worker(args):
    from engine.propagation import JobSettings, propagate

    keys = {}
    for item in args.key:
        n, _, path = item.partition("=")
        keys[int(n)] = path
    samples = {}
    cache = Path(args.out) / ".karwai-cache"
    state = {"cache_mb": 0.0, "next_cache_check": 0}

    def progress(done, total, message):
        for mark in (0.1, 0.5, 0.9):
            if mark not in samples and done >= mark * total:
                samples[mark] = _rss_mb()
        if done >= state["next_cache_check"]:
            state["cache_mb"] = max(state["cache_mb"], _folder_mb(cache))
            state["next_cache_check"] = done + max(1, total // 40)

    start = time.perf_counter()
    result = propagate(args.clip, keys, out=args.out, settings=JobSettings(quality=args.quality),
                       progress=progress)
    seconds = time.perf_counter() - start
    print(json.dumps({"frames": len(result.frames), "computed": result.computed, "seconds": seconds,
                      "peak_rss_mb": _peak_rss_mb(), "rss_mb_at": {str(k): v for k, v in samples.items()},
                      "peak_cache_mb": state["cache_mb"]}))
    return 0


def run_one(clip, frames, out, quality):
    key_dir = out.parent / f"keys-{frames}"
    key_dir.mkdir(parents=True, exist_ok=True)
    keys = []
    for n in (1, frames):
        path = key_dir / f"key{n:04d}.png"
        stylize_key(clip / f"{n:04d}.png", path)
        keys += ["--key", f"{n}={path}"]
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--worker", "--clip", str(clip),
                           "--out", str(out), "--quality", quality, *keys],
                          cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"bench long: the {frames}-frame run failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python build.py bench long", description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=600, help="frames of the long run (default 600)")
    parser.add_argument("--short", type=int, default=100, help="frames of the reference run (default 100)")
    parser.add_argument("--size", default="640x360", help="WxH (default 640x360)")
    parser.add_argument("--quality", default="draft", choices=("draft", "balanced", "best"))
    parser.add_argument("--workdir", help="where the clip and outputs go (default: a temporary folder)")
    parser.add_argument("--keep", action="store_true", help="keep the clip and outputs")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--clip", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--key", action="append", default=[], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return run_worker(args)

    w, h = (int(v) for v in args.size.lower().split("x"))
    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="karwai-long-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        clip = work / "clip"
        t0 = time.perf_counter()
        generate_clip(clip, args.frames, (w, h))
        print(f"generated {args.frames} frames of {w}x{h} in {time.perf_counter() - t0:.0f} s "
              f"({_folder_mb(clip):.0f} MB) in {clip}", flush=True)
        short_clip = work / f"clip-{args.short}"
        link_prefix(clip, short_clip, args.short)
        results = {}
        for frames, source in ((args.short, short_clip), (args.frames, clip)):
            out = work / f"out-{frames}"
            shutil.rmtree(out, ignore_errors=True)
            r = run_one(source, frames, out, args.quality)
            results[frames] = r
            at = ", ".join(f"{float(k):.0%}: {v:.0f}" for k, v in sorted(r["rss_mb_at"].items()) if v)
            print(f"{frames:5d} frames: {r['seconds']:7.1f} s ({r['seconds'] / frames:.2f} s/frame), "
                  f"peak RSS {r['peak_rss_mb']:.0f} MB (RSS at {at} MB), "
                  f"peak cache {r['peak_cache_mb']:.0f} MB", flush=True)
        short, long = results[args.short]["peak_rss_mb"], results[args.frames]["peak_rss_mb"]
        growth = long / short - 1.0
        verdict = "PASS" if growth <= BAR else "FAIL"
        print(f"\npeak RSS {args.frames} frames vs {args.short}: {long:.0f} MB vs {short:.0f} MB "
              f"({growth:+.1%}; bar: within {BAR:.0%}) {verdict}")
        return 0 if growth <= BAR else 1
    finally:
        if not args.keep and not args.workdir:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
