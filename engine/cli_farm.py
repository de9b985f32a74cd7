"""``python -m engine plan`` and ``python -m engine run-task``: a job as tasks for a farm.

::

    python -m engine plan FRAMES --key 1=k1.png --key 41=k41.png --out OUT [settings as for propagate]
        [--simulate N [--costs FILE | --save-costs FILE]] [--flamenco-job FILE [--video]]
    python -m engine plan --simulate N --film FRAMES --key-every K --costs FILE
    python -m engine run-task OUT/.karwai-plan.json TASK_ID

``plan`` writes ``OUT/.karwai-plan.json`` (see :mod:`engine.propagation.plan`);
``run-task`` runs one of its tasks on whatever machine calls it (exit 0 when the
task is done, also when it had nothing to do; 1 with one line on error; 130
when interrupted). ``--simulate`` prints the predicted wall time on 1, 2, 4 ...
N workers and the critical path.
"""

import json
import platform
import sys

__all__ = ["add_plan_parser", "run_plan_command", "add_run_task_parser", "run_task_command"]


def add_plan_parser(subparsers):
    from .cli_propagate import add_job_arguments

    p = subparsers.add_parser(
        "plan", help="write a job's task plan for a farm (Flamenco, Dask) instead of running it",
        description="Write OUT/.karwai-plan.json: every task of the job with its inputs, outputs, dependencies, "
                    "fingerprint and command line (python -m engine run-task PLAN TASK_ID).")
    add_job_arguments(p, required=False)
    p.add_argument("--simulate", type=int, metavar="N",
                   help="print the predicted wall time on 1, 2, 4 ... N workers, and the critical path")
    p.add_argument("--costs", metavar="FILE", help="per-unit costs (JSON) for --simulate instead of measuring them")
    p.add_argument("--save-costs", metavar="FILE", help="write the costs that --simulate measured to FILE")
    p.add_argument("--film", type=int, metavar="FRAMES",
                   help="with --simulate and --costs: a film of FRAMES frames instead of a clip (no plan is written)")
    p.add_argument("--key-every", type=int, metavar="K", default=40, help="with --film: a key every K frames (40)")
    p.add_argument("--flamenco-job", metavar="FILE",
                   help="also write a Flamenco job (JSON for POST /api/v3/jobs) of type karwai-propagate")
    p.add_argument("--job-name", default=None, help="name of the Flamenco job (default: the output folder's)")
    p.add_argument("--python", default="python", help="the workers' Python, for the Flamenco job (python)")
    p.add_argument("--video", action="store_true", help="the Flamenco job ends with a frames-to-video task")
    p.add_argument("--fps", type=float, default=24.0, help="frame rate of that video (24)")
    p.set_defaults(func=run_plan_command)
    return p


def _fail(what, message):
    print(f"{what}: error: {' '.join(str(message).split())}", file=sys.stderr)
    return 1


def run_plan_command(args):
    from .frames import FrameError
    from .propagation.plan import PlanError

    try:
        if args.film is not None:
            return _simulate_film(args)
        missing = [name for name, value in (("FRAMES_DIR_OR_VIDEO", args.frames),
                                            ("--key or --stylize-keys", args.key or args.stylize_keys),
                                            ("--out", args.out)) if not value]
        if missing:
            return _fail("plan", f"{', '.join(missing)} required (or --film with --simulate and --costs)")
        from .cli_propagate import job_settings, key_stylization, parse_keys
        from .propagation import plan_job

        stylize = key_stylization(args)
        _check_plan_args(args, parse_keys(args.key), stylize)
        plan = plan_job(args.frames, parse_keys(args.key), out=args.out, masks=args.mask,
                        settings=job_settings(args), cache_dir=args.cache_dir, keep_cache=args.keep_cache,
                        cache_limit_mb=args.cache_limit_mb, stylize=stylize)
        kinds = {}
        for task in plan.tasks:
            kinds[task["kind"]] = kinds.get(task["kind"], 0) + 1
        print(f"{plan.path}: {len(plan.tasks)} tasks ("
              + ", ".join(f"{n} {k}" for k, n in kinds.items()) + ")")
        print(f"run each with: python -m engine run-task {plan.path} TASK_ID (in dependency order)")
        if args.flamenco_job:
            _write_flamenco_job(plan, args)
        if args.simulate is not None:
            costs = _costs(args, plan)
            _print_simulation(plan.tasks, costs, args.simulate)
    except KeyboardInterrupt:
        print("\nplan: interrupted", file=sys.stderr)
        return 130
    except (PlanError, FrameError, ValueError, OSError) as exc:
        return _fail("plan", exc)
    return 0


def _costs(args, plan):
    from .frames import open_frames
    from .propagation.simulate import measure_costs

    from .frames import write_bytes_atomic

    if args.costs:
        costs = _read_costs(args.costs)
        if "stylize" not in costs and _stylization_of(plan) is not None:
            raise ValueError(f"{args.costs}: field stylize is missing, and this plan stylizes keys (seconds per "
                             f"key; run --simulate without --costs to measure it)")
        return costs
    print("measuring per-frame costs on this machine (a short job on the clip's own frames) ...", flush=True)
    source = open_frames(plan.resolve(plan.data["source"]["path"]))
    costs = measure_costs(source, plan.settings, stylize=_stylization_of(plan))
    if args.save_costs:
        write_bytes_atomic(args.save_costs, json.dumps(costs, indent=1).encode())
    return costs


def _stylization_of(plan):
    """``(method, params)`` of the keys the plan stylizes (paths resolved), or None."""
    for entry in plan.data["keys"].values():
        how = entry.get("stylize")
        if how is not None:
            params = {k: (str(plan.resolve(v)) if k in ("style_image", "weights") and v is not None else v)
                      for k, v in how["params"].items()}
            return how["method"], params
    return None


def _check_plan_args(args, keys, stylize=None):
    """Refuse bad options, and files that --flamenco-job or --save-costs would write over, before any is written."""
    import math
    import os
    from pathlib import Path

    from .propagation.job import CACHE_NAME
    from .propagation.plan import PLAN_NAME, TASKS_DIR
    from .safety import check_clashes

    if args.simulate is not None and args.simulate < 1:
        raise ValueError("--simulate must be at least 1 worker")
    if not math.isfinite(args.fps) or args.fps <= 0:
        raise ValueError(f"--fps must be a frame rate above 0, got {args.fps}")
    out = Path(args.out)
    if os.path.lexists(out / TASKS_DIR) and not (out / TASKS_DIR).is_dir():
        raise ValueError(f"{out / TASKS_DIR}: the task records' folder is not a folder; move it away")
    reads = [("the source folder" if os.path.isdir(args.frames) else "the source video", args.frames,
              os.path.isdir(args.frames)),
             ("the plan", out / PLAN_NAME, False), ("the task records", out / TASKS_DIR, True),
             ("the cache folder", args.cache_dir or out / CACHE_NAME, True)]
    reads += [(f"the key for frame {n}", path, False) for n, path in keys.items()]
    if args.mask:
        reads.append(("the masks", args.mask, os.path.isdir(args.mask)))
    if args.costs:
        reads.append(("--costs", args.costs, False))
    if stylize is not None:
        reads += [(f"the keys' {name.replace('_', ' ')}", path, False) for name, path in stylize.params.items()
                  if name in ("style_image", "weights") and path is not None]
    writes = [(what, path, False) for what, path in (("--flamenco-job", args.flamenco_job),
                                                     ("--save-costs", args.save_costs)) if path]
    check_clashes(reads, writes)


def _read_costs(path):
    import math

    from .frames import read_regular_file
    from .propagation.simulate import COST_KINDS, OPTIONAL_KINDS

    try:
        costs = json.loads(read_regular_file(path, what="costs").decode("utf-8"))
    except (OSError, ValueError) as exc:  # FrameError is a ValueError
        raise ValueError(f"{path}: cannot read the costs ({exc})") from None

    def seconds(value):
        return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value) \
            and value >= 0

    for kind in COST_KINDS:
        if kind in OPTIONAL_KINDS and isinstance(costs, dict) and kind not in costs:
            continue
        if not seconds(costs.get(kind) if isinstance(costs, dict) else None):
            raise ValueError(f"{path}: field {kind} must be seconds per unit (a number >= 0)")
    if "overhead" in costs and not seconds(costs["overhead"]):
        raise ValueError(f"{path}: field overhead must be seconds per task (a number >= 0)")
    size = costs.get("size")
    if size is not None and not (isinstance(size, list) and len(size) == 2
                                 and all(isinstance(v, int) and not isinstance(v, bool) for v in size)):
        raise ValueError(f"{path}: field size must be [height, width]")
    return costs


def _simulate_film(args):
    from .propagation.plan import task_graph

    if args.simulate is None or not args.costs:
        return _fail("plan", "--film needs --simulate N and --costs FILE")
    if args.film < 2 or args.key_every < 1:
        return _fail("plan", "--film must be at least 2 frames and --key-every at least 1")
    costs = _read_costs(args.costs)
    frames = range(1, args.film + 1)
    keys = list(range(1, args.film + 1, args.key_every))
    tasks = task_graph(frames, keys)
    print(f"film of {args.film} frames, a key every {args.key_every} frames ({len(keys)} keys, "
          f"{len(tasks)} tasks), costs from {args.costs}"
          + (f" ({costs['size'][1]}x{costs['size'][0]}, {costs.get('quality')})" if "size" in costs else ""))
    _print_simulation(tasks, costs, args.simulate)
    return 0


def _hms(seconds):
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _print_simulation(tasks, costs, max_workers):
    from .propagation.simulate import critical_path, table, task_seconds

    if max_workers < 1:
        raise ValueError("--simulate must be at least 1 worker")
    print("costs (s per unit): " + ", ".join(f"{k} {costs[k]:.3f}" for k in ("flow", "pass", "finish", "key",
                                                                          "stylize") if k in costs)
          + (f", overhead {costs['overhead']:.3f} per task" if costs.get("overhead") else ""))
    print(f"{'workers':>7}  {'makespan':>10}  {'speedup':>7}  {'efficiency':>10}  {'bound':>10}")
    for workers, span, speedup, efficiency, bound in table(tasks, costs, max_workers):
        print(f"{workers:>7}  {_hms(span):>10}  {speedup:>7.2f}  {efficiency:>10.0%}  {_hms(bound):>10}")
    seconds, chain = critical_path(tasks, costs)
    by_id = {t["id"]: t for t in tasks}
    print(f"critical path {_hms(seconds)} ({seconds:.1f} s): "
          + " -> ".join(f"{c} {task_seconds(by_id[c], costs):.1f}s" for c in chain))


def _write_flamenco_job(plan, args):
    from .files import write_bytes_atomic

    graph = [[t["id"], t["deps"], t["command"]] for t in plan.tasks]
    job = {
        "name": args.job_name or f"Kar-Wai {plan.out.name}",
        "type": "karwai-propagate",
        "priority": 50,
        "submitter_platform": platform.system().lower(),
        "settings": {"plan": str(plan.path.resolve()), "tasks": json.dumps(graph), "python": args.python,
                     "video": bool(args.video), "fps": float(args.fps),
                     "frame_extension": _frame_extension(plan)},
        "metadata": {"karwai.plan": str(plan.path.resolve())},
    }
    write_bytes_atomic(args.flamenco_job, json.dumps(job, indent=1).encode())
    print(f"{args.flamenco_job}: Flamenco job; submit with "
          f"curl -X POST -H 'Content-Type: application/json' -d @{args.flamenco_job} http://MANAGER:8080/api/v3/jobs")


def _frame_extension(plan):
    for task in plan.tasks:
        if task["kind"] == "key":
            name = task["outputs"][0]
            return name[name.rfind("."):] if "." in name else ".png"
    return ".png"


def add_run_task_parser(subparsers):
    p = subparsers.add_parser(
        "run-task", help="run one task of a plan (what a farm worker runs)",
        description="Run one task of a plan written by 'python -m engine plan'. A task whose outputs are "
                    "present with a matching fingerprint does nothing; a second run of a running task waits.")
    p.add_argument("plan", metavar="PLAN", help="OUT/.karwai-plan.json")
    p.add_argument("task", metavar="TASK_ID")
    p.set_defaults(func=run_task_command)
    return p


def run_task_command(args):
    import time

    from .frames import FrameError
    from .propagation import Cancelled
    from .propagation.plan import PlanError
    from .propagation.tasks import run_task_status

    def waiting(lock):
        print(f"run-task: {args.task} is running elsewhere; waiting for it (lock {lock})", file=sys.stderr,
              flush=True)

    t0 = time.perf_counter()
    try:
        computed, ran = run_task_status(args.plan, args.task, on_wait=waiting)
    except KeyboardInterrupt:
        print(f"\nrun-task: {args.task} interrupted; its complete results are kept, run it again to resume",
              file=sys.stderr)
        return 130
    except Cancelled as exc:
        print(f"run-task: {exc}", file=sys.stderr)
        return 130
    except (PlanError, FrameError, ValueError, OSError) as exc:
        return _fail(f"run-task {args.task}", exc)
    if ran:
        print(f"{args.task}: done in {time.perf_counter() - t0:.1f} s ({computed} frames synthesized)")
    else:
        print(f"{args.task}: already done (outputs present with a matching fingerprint)")
    return 0
