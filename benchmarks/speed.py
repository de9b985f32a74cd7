"""Benchmark: end-to-end speed against a checkout of an earlier commit, in the same run.

    python build.py bench speed [--base 8fffb9a] [--cases 640x360,1080p] [--no-strokes]
                                [--threads-check] [--compile-check]

The base commit is checked out into a temporary git worktree (removed after)
and both trees run the same cases, one process per run, alternating, so that
the machine's load hits both alike. Cases (see ``benchmarks/cases.py``):
640x360 ``sam2_bedroom``, the first 40 frames, keys first and last; and the
first 10 frames upscaled to 1920x1080, keys first and last. The style is a
per-frame filter (watercolor); with strokes (default) the 640x360 case also
runs a pattern painted once and carried with the scene. Timed: ``propagate``
end to end (flow, passes, blending, finishing, PNG writing, cold flow cache),
after a tiny warm-up job in the same process that loads or compiles the
numba kernels. Each tree runs ``--repeat`` times (alternating) and its fastest run counts, as
the machine is shared. Printed per case: seconds for both trees and their ratio,
PSNR against the truth and warp error for both, peak RSS of each process.

``--threads-check``: the 1080p case on 1 and on 2 threads (numba and OpenCV),
``--repeat`` times each, alternating (the fastest counts), speed-up and whether
every output is byte-identical.
``--compile-check``: the tiny job in a fresh numba cache folder (cold
compile), then again (cache load).
"""

import argparse
import json
import os
from pathlib import Path
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[0] = str(ROOT)

from benchmarks import cases  # noqa: E402

BASE_COMMIT = "8fffb9a"


def worker(argv):
    """Run in a child: ``--worker CLIP KEYS OUT WARMUP`` with the tree to time on PYTHONPATH."""
    clip, keys_file, out, warm = argv
    threads = os.environ.get("KW_BENCH_THREADS")
    if threads:
        cv2.setNumThreads(int(threads))
    # The engine of the tree being timed, not of the tree this script is in.
    sys.path.insert(0, os.environ["KW_BENCH_TREE"])
    from engine import propagate
    import engine

    if Path(engine.__file__).resolve().parents[1] != Path(os.environ["KW_BENCH_TREE"]).resolve():
        sys.exit(f"bench speed: imported {engine.__file__}, not the engine of {os.environ['KW_BENCH_TREE']}")

    with np.load(keys_file) as data:
        keys = {int(k): data[k] for k in data.files}
    t0 = time.perf_counter()
    if warm != "-":
        with np.load(Path(warm) / "keys.npz") as data:
            warm_keys = {int(k): data[k] for k in data.files}
        propagate(Path(warm) / "clip", warm_keys, out=Path(out) / "warm")
    t1 = time.perf_counter()
    result = propagate(clip, keys, out=Path(out) / "frames")
    t2 = time.perf_counter()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (1024.0 if sys.platform != "darwin" else 1 << 20)
    print(json.dumps({"seconds": t2 - t1, "warmup": t1 - t0, "rss": rss,
                      "frames": [str(p) for p in result.frames]}))


def run_child(tree, clip, keys_file, out, warm, *, threads=None, cache_dir=None):
    env = dict(os.environ, PYTHONPATH=str(tree), KW_BENCH_TREE=str(tree))
    if threads:
        env["NUMBA_NUM_THREADS"] = str(threads)
        env["KW_BENCH_THREADS"] = str(threads)
    if cache_dir:
        env["NUMBA_CACHE_DIR"] = str(cache_dir)
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--worker", str(clip), str(keys_file),
                           str(out), str(warm)], env=env, capture_output=True, text=True, cwd=str(tree))
    if proc.returncode:
        sys.exit(f"bench speed: the run in {tree} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def read_outputs(paths, numbers):
    return {n: cv2.cvtColor(cv2.imread(p), cv2.COLOR_BGR2RGB) for n, p in zip(numbers, paths)}


def make_warmup(tmp, frames):
    folder = Path(tmp) / "warmup"
    numbers = sorted(frames)[:3]
    small = {i + 1: cv2.resize(frames[n], (96, 64), interpolation=cv2.INTER_AREA) for i, n in enumerate(numbers)}
    cases.write_clip(small, folder / "clip")
    np.savez(folder / "keys.npz", **{str(k): v for k, v in cases.keys_of(cases.truths(small, "watercolor")).items()})
    return folder


def prepare(tmp, case, style, frames):
    truth = cases.truths(frames, style)
    folder = Path(tmp) / f"{case}-{style}"
    cases.write_clip(frames, folder / "clip")
    keys_file = folder / "keys.npz"
    np.savez(keys_file, **{str(k): v for k, v in cases.keys_of(truth).items()})
    return folder, truth


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--worker":
        return worker(argv[1:])
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", default=BASE_COMMIT)
    parser.add_argument("--cases", default="640x360,1080p")
    parser.add_argument("--no-strokes", action="store_true")
    parser.add_argument("--threads-check", action="store_true")
    parser.add_argument("--compile-check", action="store_true")
    parser.add_argument("--no-base", action="store_true", help="time the current tree only")
    parser.add_argument("--repeat", type=int, default=2,
                        help="runs of each tree, alternating; the fastest counts (default 2)")
    args = parser.parse_args(argv)
    print(f"load average at start: {os.getloadavg()[0]:.2f}, cpus {os.cpu_count()}", flush=True)
    # A SIGTERM (a timeout, a kill) still removes the temporary worktree below.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("bench speed: terminated"))
    with tempfile.TemporaryDirectory(prefix="kw-speed-") as tmp:
        base_tree = Path(tmp) / "base"
        if not args.no_base:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "--quiet", str(base_tree),
                            args.base], check=True)
        try:
            run_cases(args, tmp, base_tree)
        finally:
            if not args.no_base:
                subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base_tree)],
                               check=False)
    print(f"load average at end: {os.getloadavg()[0]:.2f}")
    return 0


def run_cases(args, tmp, base_tree):
    trees = [("current", ROOT)] + ([] if args.no_base else [(f"base {args.base}", base_tree)])
    for case in args.cases.split(","):
        frames = cases.load_frames(case)
        numbers = sorted(frames)
        warm = make_warmup(tmp, frames)
        styles = ["watercolor"] + (["strokes"] if case == "640x360" and not args.no_strokes else [])
        for style in styles:
            folder, truth = prepare(tmp, case, style, frames)
            rows = {}
            for attempt in range(args.repeat):
                for label, tree in trees:
                    out = Path(tmp) / f"out-{case}-{style}-{label.split()[0]}"
                    r = run_child(tree, folder / "clip", folder / "keys.npz", out, warm)
                    if label not in rows:
                        r["psnr"], r["warp"] = cases.score(read_outputs(r["frames"], numbers), truth, frames)
                        r["all"] = [r["seconds"]]
                        rows[label] = r
                    else:
                        rows[label]["all"].append(r["seconds"])
                        rows[label]["seconds"] = min(rows[label]["seconds"], r["seconds"])
                        rows[label]["rss"] = max(rows[label]["rss"], r["rss"])
                    shutil.rmtree(out, ignore_errors=True)
            n_scored = len(numbers) - 2
            print(f"\n=== {case} {style}: {len(numbers)} frames, keys {numbers[0]} and {numbers[-1]}")
            for label, r in rows.items():
                print(f"  {label:<16} {r['seconds']:7.1f} s  {r['seconds'] / n_scored:6.3f} s/frame  "
                      f"PSNR {r['psnr']:6.2f} dB  warp {r['warp']:5.2f}  peak RSS {r['rss']:6.0f} MB  "
                      f"(runs: {', '.join(f'{x:.1f}' for x in r['all'])} s)")
            if len(rows) == 2:
                cur, base = rows["current"], rows[trees[1][0]]
                print(f"  ratio current/base: {cur['seconds'] / base['seconds']:.2f}  "
                      f"PSNR {cur['psnr'] - base['psnr']:+.2f} dB  "
                      f"warp {100 * (cur['warp'] / base['warp'] - 1):+.1f} %", flush=True)
    if args.threads_check:
        frames = cases.load_frames("1080p")
        warm = make_warmup(tmp, frames)
        folder, _ = prepare(tmp, "1080p", "watercolor", frames)
        # Here, not at the top: a --worker process imports the engine of the tree it times.
        from engine.safety import file_digest

        times = {1: [], 2: []}
        outputs = {}
        # Alternating, the fastest of --repeat runs each, like the cases above: a shared machine's
        # load moves a lone pair of runs by 10 % either way.
        for attempt in range(args.repeat):
            for threads in (1, 2):
                out = Path(tmp) / f"threads-{threads}"
                r = run_child(ROOT, folder / "clip", folder / "keys.npz", out, warm, threads=threads)
                times[threads].append(r["seconds"])
                outputs.setdefault(threads, []).append([file_digest(p) for p in r["frames"]])
                shutil.rmtree(out, ignore_errors=True)
        same = all(run == outputs[1][0] for threads in (1, 2) for run in outputs[threads])
        one, two = min(times[1]), min(times[2])
        print(f"\n=== threads, 1080p: 1 thread {one:.1f} s, 2 threads {two:.1f} s, speed-up {one / two:.2f}x "
              f"(runs: {', '.join(f'{x:.1f}' for x in times[1])} s; {', '.join(f'{x:.1f}' for x in times[2])} s), "
              f"outputs byte-identical: {same}")
    if args.compile_check:
        frames = cases.load_frames("640x360")
        warm = make_warmup(tmp, frames)
        cache = Path(tmp) / "numba-cache"
        times = []
        for _ in range(2):
            out = Path(tmp) / f"compile-{len(times)}"
            t0 = time.perf_counter()
            run_child(ROOT, warm / "clip", warm / "keys.npz", out, "-", cache_dir=cache)
            times.append(time.perf_counter() - t0)
        print(f"\n=== first run: tiny job in a fresh numba cache {times[0]:.1f} s (cold compile), "
              f"again {times[1]:.1f} s (cache load), process start and imports included")


if __name__ == "__main__":
    sys.exit(main())
