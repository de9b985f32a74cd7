"""The two passes of a span, side by side on two threads.

Between two keys a span has a forward and a backward pass that do not depend
on each other. Much of a pass is single-threaded (guides, flow lookups,
NumPy and OpenCV calls between the numba kernels), so on a machine of two
cores one pass at a time leaves a core idle for much of the time. Run side by
side, each pass on its own thread with half of numba's threads, both cores stay
busy. The bytes are the same: every frame's randomness is seeded by the frame,
and the kernels give the same output on any number of threads.

numba's ``tbb`` and ``omp`` threading layers take parallel kernels launched
from several threads at once; ``workqueue`` does not (it aborts the process),
so there, and with one numba thread or the JIT disabled, the passes run one
after the other.
"""

from concurrent.futures import ThreadPoolExecutor
import contextlib
import threading

__all__ = ["pass_threads", "run_side_by_side", "numba_threads", "rebalance"]

#: numba threading layers that take kernels launched from several threads at once
#: (numba's documentation, "The Threading Layers": tbb and omp are thread-safe,
#: workqueue is not).
THREAD_SAFE_LAYERS = ("tbb", "omp")


#: Memory a pass holds while it runs, per pixel of the frame: measured at 1080p, the peak
#: (tracemalloc) of a pass's step, its prepared key side included, is 487 MB.
PASS_BYTES_PER_PIXEL = 240
#: The most memory a second pass may add by running beside the first: 1080p's passes run side by
#: side (the 1080p case of ``bench speed`` then peaks at about 1.3 GiB, with engine.allocator's settings),
#: 1440p's (3.7 Mpx) and larger do not.
SIDE_BY_SIDE_MAX_BYTES = 512 << 20


def pass_threads(frame_pixels=0):
    """How many passes of frames of ``frame_pixels`` pixels may run at once in this process (1 or 2).

    One where a second pass would add more than ``SIDE_BY_SIDE_MAX_BYTES``
    (above 1080p: the passes then use numba's threads one after the other).
    """
    import numba

    if numba.config.DISABLE_JIT or numba.get_num_threads() < 2:
        return 1
    if frame_pixels * PASS_BYTES_PER_PIXEL > SIDE_BY_SIDE_MAX_BYTES:
        return 1
    try:
        layer = numba.threading_layer()
    except ValueError:  # no parallel kernel has run yet: the layer is picked at the first
        from ..synth import kernels

        kernels.threading_probe()
        layer = numba.threading_layer()
    return 2 if layer in THREAD_SAFE_LAYERS else 1


@contextlib.contextmanager
def numba_threads(count):
    """numba's thread count for the calling thread only (numba keeps it per thread), restored after.

    For a thread whose own worker threads keep the cores busy: a parallel kernel it launched on
    more than one thread would wait, at its join, for numba threads the system has no core for
    (a flow-cache hit in the finishing took 11 ms instead of 0.7 beside the blending threads).
    """
    import numba

    before = numba.get_num_threads()
    numba.set_num_threads(max(1, min(count, before)))
    try:
        yield
    finally:
        numba.set_num_threads(before)


def run_side_by_side(calls):
    """Run ``calls`` (callables without arguments) on threads of their own; their results, in order.

    numba's thread count is per thread: each call gets an equal share of this
    thread's. When a call raises, the others still finish (each leaves
    complete results only); then the first error that is not a cancel is
    raised, or else the cancel.
    """
    import numba

    group = _Group(numba.get_num_threads(), len(calls))

    def run(call):
        me = threading.get_ident()
        _GROUPS[me] = group
        numba.set_num_threads(group.share())
        try:
            return call()
        finally:
            del _GROUPS[me]
            group.leave()

    with ThreadPoolExecutor(max_workers=len(calls), thread_name_prefix="karwai-pass") as pool:
        futures = [pool.submit(run, call) for call in calls]
        results, errors = [], []
        for future in futures:
            try:
                results.append(future.result())
            except BaseException as exc:  # noqa: BLE001 - re-raised below, after the other calls finish
                errors.append(exc)
                results.append(None)
    if errors:
        from ..stylizers._common import Cancelled

        raise next((e for e in errors if not isinstance(e, Cancelled)), errors[0])
    return results


class _Group:
    """The calls of one :func:`run_side_by_side` still running, and the numba threads they share."""

    def __init__(self, threads, running):
        self.threads = threads
        self.running = running
        self.lock = threading.Lock()

    def share(self):
        with self.lock:
            return max(1, self.threads // max(1, self.running))

    def leave(self):
        with self.lock:
            self.running -= 1


#: The group of each thread :func:`run_side_by_side` runs a call on, by thread ident.
_GROUPS = {}


def rebalance():
    """Take an equal share of numba's threads among the side-by-side calls still running.

    For a long call to ask between steps, on its own thread (numba's count is
    per thread): once the other pass is done, the one left gets its threads.
    Two passes seldom end together (1080p: 1 to 3 s apart, with a core idle
    meanwhile). Elsewhere, on threads not started by :func:`run_side_by_side`,
    nothing changes. The kernels give the same bytes on any number of threads.
    """
    group = _GROUPS.get(threading.get_ident())
    if group is not None:
        import numba

        numba.set_num_threads(group.share())


class Tail:
    """Runs the last steps of each frame (detail, PNG encoding, writing) on worker threads.

    ``submit(fn, *args)`` queues a call, waiting while ``workers`` calls are
    pending (a 1080p frame's tail takes about 200 MB while it runs); leaving the ``with`` block waits
    for all of them and raises the first error. With ``workers=0`` each call
    runs at once on the calling thread. OpenCV's encoders and NumPy's big
    operations release the GIL, so the frames' tails overlap one another and
    the sweep that feeds them.
    """

    def __init__(self, workers):
        self.workers = workers
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="karwai-tail") if workers else None
        self.pending = []

    def submit(self, fn, *args):
        if self.pool is None:
            fn(*args)
            return
        while len(self.pending) >= self.workers:  # at most one frame per worker in flight
            self.pending.pop(0).result()
        self.pending.append(self.pool.submit(fn, *args))

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if self.pool is None:
            return False
        first = None
        for future in self.pending:
            try:
                future.result()
            except BaseException as error:  # noqa: BLE001 - the first is raised below
                first = first or error
        self.pool.shutdown()
        if first is not None and exc is None:
            raise first
        return False


#: Memory one frame's tail takes while it runs, per pixel (detail bands in float32).
TAIL_BYTES_PER_PIXEL = 100
#: The most memory the tails in flight may take together: 1080p's two (414 MB) fit, and the
#: finishing then stays under what the passes before it took (``bench speed``'s 1080p peak
#: RSS did not move); with one tail thread, that thread (detail, PNG) was 1080p's finishing's
#: bottleneck while the other core waited (the finishing of one job, timed alone: 4.95 s with
#: one, 4.72 s with two).
TAIL_MAX_BYTES = 512 << 20


def tail_workers(frame_pixels=0):
    """Worker threads for :class:`Tail` for frames of ``frame_pixels`` pixels.

    2 where numba and OpenCV may use two threads or more and two tails fit in
    ``TAIL_MAX_BYTES`` (up to 1080p), 1 where only one does, 0 with one thread.
    """
    import cv2
    import numba

    if min(numba.get_num_threads(), cv2.getNumThreads()) <= 1:
        return 0
    return 2 if 2 * frame_pixels * TAIL_BYTES_PER_PIXEL <= TAIL_MAX_BYTES else 1
