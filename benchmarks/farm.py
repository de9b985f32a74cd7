"""Benchmark: the makespan simulation against measured Dask runs with 1 and 2 workers, and the film table.

    python build.py bench farm [--clip sam2_dog] [--frames 41] [--key-every 10] [--width 320]
                               [--quality balanced] [--cores-per-worker 1] [--repeat 3]
                               [--film 65000] [--film-key-every 40] [--film-workers 64] [--no-film]

1. Costs: :func:`engine.propagation.simulate.measure_costs` runs a short job on
   the clip's own frames inside a one-worker Dask cluster (so it sees what a
   worker sees: the same process set-up and thread pools), and divides each
   task's recorded seconds by its units. The simulation takes workers to be
   separate machines; on one machine that holds only when each worker has cores
   of its own, so for steps 1 to 3 every worker runs on one core
   (``--cores-per-worker``: numba's and OpenCV's thread pools) and the
   machine needs at least two cores.
2. Prediction: the plan's task graph on 1 and 2 workers with those costs.
3. Measurement: the same job on a ``LocalCluster`` of 1, then 2 single-thread
   worker processes (after a warm-up job that loads the compiled kernels in
   every worker), wall time of ``engine.propagate(..., dask=client)``.
4. The film: costs measured the same way at 1920x1080 (the clip's frames
   scaled up) by one worker using every core of this machine (one farm
   machine), and the simulated table for a film of 65,000 frames with a key
   every 40 frames.

Timings on a shared machine vary; the figures are printed, not asserted.
"""

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import cv2

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.propagation import JobSettings, plan_job, propagate  # noqa: E402
from engine.propagation.plan import task_graph  # noqa: E402
from engine.propagation.simulate import critical_path, simulate, table  # noqa: E402

DEFAULT_CLIPS = ROOT.parent / "shared" / "data" / "clips"


def make_clip(src, folder, frames, width):
    folder.mkdir(parents=True)
    names = sorted(p for p in src.iterdir() if p.name[0].isdigit())[:frames]
    for i, path in enumerate(names, start=1):
        bgr = cv2.imread(str(path))
        h = int(round(bgr.shape[0] * width / bgr.shape[1] / 2)) * 2
        interp = cv2.INTER_AREA if width < bgr.shape[1] else cv2.INTER_CUBIC
        cv2.imwrite(str(folder / f"{i:04d}.png"), cv2.resize(bgr, (width, h), interpolation=interp))
    return len(names)


def style_keys(folder, numbers):
    keys = {}
    for n in numbers:
        bgr = cv2.imread(str(folder / f"{n:04d}.png"))
        keys[n] = cv2.cvtColor(cv2.stylization(bgr, sigma_s=40, sigma_r=0.35), cv2.COLOR_BGR2RGB)
    return keys


def _measure_on_worker(clip, settings_dict):
    from engine.frames import open_frames
    from engine.propagation.simulate import measure_costs

    return measure_costs(open_frames(clip), JobSettings.from_dict(settings_dict))


class cluster:
    """A LocalCluster of ``n`` single-thread worker processes, each using ``cores`` cores (None: all)."""

    def __init__(self, n, cores=None):
        import distributed

        # numba's thread count is per thread (numba.set_num_threads), and a task runs on a
        # worker's executor thread, not where client.run runs: the workers' processes are
        # started with NUMBA_NUM_THREADS instead, the default of every thread in them.
        saved = os.environ.get("NUMBA_NUM_THREADS")
        if cores is not None:
            os.environ["NUMBA_NUM_THREADS"] = str(cores)
        try:
            self.cluster = distributed.LocalCluster(processes=True, n_workers=n, threads_per_worker=1,
                                                    host="127.0.0.1", dashboard_address=None)
        finally:
            if saved is None:
                os.environ.pop("NUMBA_NUM_THREADS", None)
            else:
                os.environ["NUMBA_NUM_THREADS"] = saved
        self.client = distributed.Client(self.cluster)
        if cores is not None:
            self.client.run(_limit_cores, cores)

    def __enter__(self):
        return self.client

    def __exit__(self, *exc):
        self.client.close()
        self.cluster.close()


def _limit_cores(cores):
    import cv2
    import numba

    numba.set_num_threads(max(1, min(cores, numba.config.NUMBA_NUM_THREADS)))
    cv2.setNumThreads(cores)
    return cores


def hms(seconds):
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_CLIPS)
    parser.add_argument("--clip", default="sam2_dog")
    parser.add_argument("--frames", type=int, default=41)
    parser.add_argument("--key-every", type=int, default=10)
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--quality", default="balanced")
    parser.add_argument("--film", type=int, default=65000)
    parser.add_argument("--film-key-every", type=int, default=40)
    parser.add_argument("--film-workers", type=int, default=64)
    parser.add_argument("--cores-per-worker", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3, help="measured runs per worker count (median)")
    parser.add_argument("--no-film", action="store_true")
    args = parser.parse_args()
    os.environ["PYTHONPATH"] = str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")
    settings = JobSettings(quality=args.quality)
    with tempfile.TemporaryDirectory(prefix="karwai-bench-farm-") as tmp:
        tmp = Path(tmp)
        clip = tmp / "clip"
        n = make_clip(args.data / args.clip, clip, args.frames, args.width)
        key_numbers = list(range(1, n + 1, args.key_every))
        keys = style_keys(clip, key_numbers)
        h, w = cv2.imread(str(clip / "0001.png")).shape[:2]
        plan = plan_job(clip, keys, out=tmp / "plan", settings=settings)
        print(f"clip {args.clip}: {n} frames at {w}x{h}, keys {key_numbers}, quality {args.quality}, "
              f"{len(plan.tasks)} tasks; {os.cpu_count()} CPUs", flush=True)

        with cluster(1, args.cores_per_worker) as client:
            costs = client.submit(_measure_on_worker, str(clip), settings.as_dict(), pure=False).result()
        print("costs measured on a worker (s per unit): "
              + ", ".join(f"{k} {costs[k]:.3f}" for k in ("flow", "pass", "finish", "key"))
              + f"; overhead {costs['overhead']:.3f} s per task", flush=True)
        path, chain = critical_path(plan.tasks, costs)
        print(f"critical path {path:.1f} s: {' -> '.join(chain)}")

        rows = []
        for workers in (1, 2):
            predicted = simulate(plan.tasks, costs, workers)
            with cluster(workers, args.cores_per_worker) as client:
                warm = tmp / f"warm{workers}"
                propagate(clip, {1: keys[1], 3: keys[1]}, out=warm, settings=JobSettings(quality=args.quality),
                          dask=client)  # every worker loads the kernels once (one task per worker at least)
                runs = []
                for i in range(args.repeat):
                    out = tmp / f"out{workers}-{i}"
                    t0 = time.perf_counter()
                    propagate(clip, keys, out=out, settings=settings, dask=client)
                    runs.append(time.perf_counter() - t0)
                    shutil.rmtree(out, ignore_errors=True)
            measured = sorted(runs)[len(runs) // 2]
            rows.append((workers, predicted, measured))
            load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
            print(f"{workers} worker(s): predicted {predicted:6.1f} s, measured {measured:6.1f} s "
                  f"(median of {', '.join(f'{r:.1f}' for r in runs)}; {(predicted - measured) / measured:+.0%}); "
                  f"load average {load:.1f} on {os.cpu_count()} CPUs", flush=True)

        if args.no_film:
            return 0
        big = tmp / "clip1080"
        make_clip(args.data / args.clip, big, 6, 1920)
        print("measuring costs at 1920x1080 on a worker ...", flush=True)
        with cluster(1) as client:
            film_costs = client.submit(_measure_on_worker, str(big), settings.as_dict(), pure=False).result()
        with open(ROOT / "benchmarks" / "farm-costs-1080p.json", "w") as handle:
            json.dump(film_costs, handle, indent=1)
        print("1080p costs (s per unit): "
              + ", ".join(f"{k} {film_costs[k]:.3f}" for k in ("flow", "pass", "finish", "key"))
              + f"; overhead {film_costs['overhead']:.3f} s per task (written to benchmarks/farm-costs-1080p.json)")
        tasks = task_graph(range(1, args.film + 1), range(1, args.film + 1, args.film_key_every))
        path, chain = critical_path(tasks, film_costs)
        print(f"film: {args.film} frames at 1920x1080, a key every {args.film_key_every} frames, "
              f"{len(tasks)} tasks; critical path {hms(path)} ({' -> '.join(chain)})")
        print("| workers | makespan (h:mm:ss) | speedup | efficiency |")
        print("|---:|---:|---:|---:|")
        for workers, span, speedup, efficiency, _ in table(tasks, film_costs, args.film_workers):
            print(f"| {workers} | {hms(span)} | {speedup:.1f} | {efficiency:.0%} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
