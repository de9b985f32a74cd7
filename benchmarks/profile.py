"""Benchmark: where the time of one propagation goes, per stage and per frame.

    python build.py bench profile [--case 640x360|1080p] [--style watercolor|strokes]

Runs one case of ``benchmarks/cases.py`` in this process (after a tiny
warm-up job that loads the numba kernels), with a timer wrapped around each
stage's function: optical flow (forward and backward DIS, and the flow
cache), guide building, each pyramid level of each pass (and inside it
PatchMatch, patch errors, voting), blending, temporal smoothing, detail
restoration, frame reading, pass-state files, PNG encoding and writing.
Times are exclusive (a stage's time excludes the stages timed inside it), so
the rows sum to the timed total; "untimed" is the rest of the wall time.
Divided by the number of frames propagated (keys excluded). Beside each
stage's time, its CPU time and minor page faults on the calling thread (a
parallel numba kernel's work on numba's threads is not in them), and above the
table the whole process's user and system time and page faults. Stages that ran on
other threads (the backward flow beside the forward one; the two passes of a
span side by side) are marked so: they overlap the main thread's time, and
each other's, and are left out of the main thread's sum.
"""

import argparse
from collections import defaultdict
import importlib
import resource
from pathlib import Path
import sys
import tempfile
import threading
import time

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[0] = str(ROOT)  # this file's folder would shadow the standard library's ``profile``

from benchmarks import cases  # noqa: E402

#: (module, attribute, stage label); a missing attribute is skipped, so the
#: table survives code moving between modules. Labels with {level} are per level.
TARGETS = [
    ("engine.flow", "compute_flow", "flow: DIS (one direction)"),
    ("engine.flow", "FlowCache.pair", "flow: cache (hash, store, load)"),
    ("engine.guides", "edge_guide", "guides: edge"),
    ("engine.guides", "advect_positions", "guides: positions"),
    ("engine.guides", "temporal_guide", "guides: temporal"),
    ("engine.guides", "positional_guide", "guides: positional"),
    ("engine.propagation.passes", "_advect_nnf", "guides: advect NNF"),
    ("engine.synth", "_run_level", "synth: level {level}"),
    ("engine.synth", "resize", "synth: pyramid resize"),
    ("engine.synth", "_Features.__init__", "synth: feature rows"),
    ("engine.synth.kernels", "patchmatch_sweep", "synth: PatchMatch sweeps"),
    ("engine.synth.kernels", "nnf_error", "synth: patch errors"),
    ("engine.synth.kernels", "occupancy", "synth: occupancy"),
    ("engine.synth.kernels", "vote", "synth: voting"),
    ("engine.synth.kernels", "changed_mask", "synth: freeze masks"),
    ("engine.synth.kernels", "dilate", "synth: freeze masks"),
    ("engine.propagation.blend", "weighted_blend", "blending"),
    ("engine.propagation.blend", "crossfade", "blending"),
    ("engine.propagation.blend", "choose_passes", "blending"),
    ("engine.propagation.blend", "blend_passes", "blending"),
    ("engine.propagation.refine", "smoothing_step", "temporal smoothing"),
    ("engine.propagation.refine", "restore_detail", "detail restoration"),
    ("engine.propagation.refine", "detail_ratio", "detail restoration"),
    ("engine.frame_source", "_Source.read", "I/O: frame reading"),
    ("engine.propagation.state", "save_state", "I/O: pass-state files (write)"),
    ("engine.propagation.state", "load_sealed", "I/O: pass-state files (read)"),
    ("engine.images", "encode_image", "I/O: PNG encoding"),
    ("engine.files", "write_bytes_atomic", "I/O: atomic file writes"),
]


def _thread_counters():
    """(CPU seconds, minor page faults) of the calling thread so far."""
    usage = resource.getrusage(resource.RUSAGE_THREAD)
    return np.array([usage.ru_utime + usage.ru_stime, usage.ru_minflt], dtype=np.float64)


class Timers:
    def __init__(self):
        self.total = defaultdict(float)
        self.calls = defaultdict(int)
        self.counters = defaultdict(lambda: np.zeros(2))  # CPU seconds, minor faults (exclusive)
        self.local = threading.local()

    def wrap(self, fn, label):
        timers = self

        def timed(*args, **kwargs):
            name = label
            if "{level}" in label:
                # _run_level(source, source_hw, target_guides, ...): the level's size is the target's.
                guides = args[2] if len(args) > 2 else None
                warm = kwargs.get("guides_only_first", False)
                shape = "x".join(map(str, guides[0].shape[:2][::-1])) if guides else "?"
                name = label.format(level=f"{shape} {'warm' if warm else 'cold/finer'}")
            stack = timers.local.__dict__.setdefault("stack", [])
            thread = threading.current_thread()
            if thread is not threading.main_thread():
                name += " [flow thread]" if thread.name.startswith("karwai-flow") else " [pass threads]"
            stack.append([0.0, np.zeros(2)])
            t0 = time.perf_counter()
            c0 = _thread_counters()
            try:
                return fn(*args, **kwargs)
            finally:
                spent = time.perf_counter() - t0
                used = _thread_counters() - c0
                inner, inner_used = stack.pop()
                timers.total[name] += spent - inner
                timers.counters[name] += used - inner_used
                timers.calls[name] += 1
                if stack:
                    stack[-1][0] += spent
                    stack[-1][1] += used
        timed.__wrapped__ = fn
        return timed


def install(timers):
    """Wrap every target where it is defined and wherever it was imported by name."""
    import engine  # noqa: F401
    loaded = [m for name, m in list(sys.modules.items()) if name.startswith("engine")]
    for module_name, attr, label in TARGETS:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        owner, _, name = attr.rpartition(".")
        holder = getattr(module, owner) if owner else module
        original = getattr(holder, name, None)
        if original is None:
            continue
        wrapped = timers.wrap(original, label)
        setattr(holder, name, wrapped)
        if owner:
            continue
        for other in loaded + [m for n, m in sys.modules.items() if n.startswith("engine")]:
            if getattr(other, name, None) is original:
                setattr(other, name, wrapped)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case", default="640x360", choices=sorted(cases.CASES))
    parser.add_argument("--style", default="watercolor", choices=("watercolor", "strokes"))
    args = parser.parse_args(argv)
    import engine.propagation.job  # noqa: F401  (every stage's module, before wrapping)
    import engine.propagation.plan  # noqa: F401
    import engine.propagation.passes  # noqa: F401
    import engine.propagation.finish  # noqa: F401
    import engine.propagation.tasks  # noqa: F401
    import engine.propagation.state  # noqa: F401
    import engine.propagation.blend  # noqa: F401
    import engine.propagation.refine  # noqa: F401
    import engine.synth  # noqa: F401
    from engine import propagate

    frames = cases.load_frames(args.case)
    truth = cases.truths(frames, args.style)
    keys = cases.keys_of(truth)
    n_frames = len(frames) - len(keys)
    with tempfile.TemporaryDirectory(prefix="kw-profile-") as tmp:
        small = {n: frames[n][:64, :96].copy() for n in sorted(frames)[:3]}
        cases.write_clip(small, Path(tmp) / "warm")
        propagate(Path(tmp) / "warm", cases.keys_of(cases.truths(small, "watercolor")), out=Path(tmp) / "warm-out")
        clip = cases.write_clip(frames, Path(tmp) / "clip")
        timers = Timers()
        install(timers)
        t0 = time.perf_counter()
        r0 = resource.getrusage(resource.RUSAGE_SELF)
        propagate(clip, keys, out=Path(tmp) / "out")
        wall = time.perf_counter() - t0
        r1 = resource.getrusage(resource.RUSAGE_SELF)
    timed = sum(v for k, v in timers.total.items() if "[" not in k)
    beside = sum(v for k, v in timers.total.items() if "[" in k)
    print(f"=== profile {args.case} {args.style}: {len(frames)} frames, {n_frames} propagated, "
          f"wall {wall:.1f} s = {wall / n_frames:.3f} s/frame")
    print(f"process: {r1.ru_utime - r0.ru_utime:.1f} s user, {r1.ru_stime - r0.ru_stime:.1f} s system, "
          f"{(r1.ru_minflt - r0.ru_minflt) / n_frames:.0f} minor page faults per frame")
    print(f"{'stage':<44}{'calls':>7}{'s total':>9}{'s/frame':>9}{'share':>7}{'cpu s/fr':>9}{'faults/fr':>10}")
    for name, seconds in sorted(timers.total.items(), key=lambda kv: -kv[1]):
        cpu, faults = timers.counters[name]
        print(f"{name:<44}{timers.calls[name]:>7}{seconds:>9.2f}{seconds / n_frames:>9.3f}"
              f"{100 * seconds / wall:>6.1f}%{cpu / n_frames:>9.3f}{faults / n_frames:>10.0f}")
    print(f"{'sum of stages':<44}{'':>7}{timed:>9.2f}{timed / n_frames:>9.3f}{100 * timed / wall:>6.1f}%")
    print(f"{'untimed on the main thread':<44}{'':>7}{wall - timed:>9.2f}"
          f"{(wall - timed) / n_frames:>9.3f}{100 * (wall - timed) / wall:>6.1f}%")
    print(f"{'on other threads, overlapping the main one':<44}{'':>7}{beside:>9.2f}{beside / n_frames:>9.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
