"""engine.propagate on generated clips with a known answer."""

import hashlib
import json
import os
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from engine.frames import FrameError, write_frame_atomic
from engine.propagation import Cancelled, JobSettings, plan_spans, propagate
from engine.propagation import blend

CLIPS = Path(__file__).resolve().parents[2] / "shared" / "data" / "clips"
H, W = 64, 96


def _texture(h, w, seed):
    rng = np.random.default_rng(seed)
    img = cv2.GaussianBlur(rng.random((h, w, 3)).astype(np.float32), (0, 0), 2.0)
    img = (img - img.min()) / (img.max() - img.min())
    return (img * 255).astype(np.uint8)


def style(img):
    """A known filter S: posterized, colour-remapped, with dark edges."""
    poster = (img // 64) * 64 + 32
    edges = cv2.Canny(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY), 40, 100)
    out = poster[:, :, ::-1].copy()
    out[edges > 0] = 20
    return out


def make_clip(folder, n=10, dx=2, seed=0, start=1, name="{:04d}.png"):
    """A camera pan over a texture: frame t is the texture moved by dx * t pixels."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    big = _texture(H, W + dx * n + 8, seed)
    frames = {}
    for i in range(n):
        t = start + i
        frames[t] = np.ascontiguousarray(big[:, dx * i:dx * i + W])
        write_frame_atomic(folder / name.format(t), frames[t])
    return frames


def _psnr(a, b):
    return 10 * np.log10(255.0 ** 2 / max(np.mean((a.astype(float) - b.astype(float)) ** 2), 1e-9))


def _read(path):
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    return cv2.cvtColor(img, cv2.COLOR_BGRA2RGBA if img.shape[2] == 4 else cv2.COLOR_BGR2RGB)


def _digest(paths):
    h = hashlib.sha256()
    for p in paths:
        h.update(Path(p).read_bytes())
    return h.hexdigest()


# ---------------------------------------------------------------------------
# Spans


@pytest.mark.parametrize("keys, kinds", [
    ([1], ["after"]),
    ([10], ["before"]),
    ([5], ["before", "after"]),
    ([1, 10], ["between"]),
    ([1, 4, 10], ["between", "between"]),
    ([3, 7], ["before", "between", "after"]),
    ([4, 5], ["before", "after"]),
])
def test_plan_spans_covers_every_frame_once(keys, kinds):
    numbers = list(range(1, 11))
    spans = plan_spans(numbers, keys)
    assert [s.kind for s in spans] == kinds
    covered = sorted([n for s in spans for n in s.frames] + keys)
    assert covered == numbers


def test_plan_spans_with_gaps_in_numbering():
    spans = plan_spans([2, 3, 7, 8, 20], [3, 8])
    assert [(s.kind, s.frames) for s in spans] == [("before", (2,)), ("between", (7,)), ("after", (20,))]


# ---------------------------------------------------------------------------
# The manual test matrix of the Python peers: key first, middle or last; by a
# forward pass, a backward pass, or a blend of both.


@pytest.mark.parametrize("key_numbers", [[1], [5], [10], [1, 10], [1, 5, 10], [3, 8]],
                         ids=["first", "middle", "last", "first+last", "three", "inner-pair"])
def test_propagation_matrix(tmp_path, key_numbers):
    frames = make_clip(tmp_path / "in")
    keys = {n: style(frames[n]) for n in key_numbers}
    result = propagate(tmp_path / "in", keys, out=tmp_path / "out")
    assert [p.name for p in result.frames] == [f"{t:04d}.png" for t in range(1, 11)]
    for t, path in zip(range(1, 11), result.frames):
        out = _read(path)
        assert out.shape == (H, W, 3)
        if t in keys:
            np.testing.assert_array_equal(out, keys[t])  # keys come back exactly
        else:
            truth = style(frames[t])
            # Much closer to the right answer than the nearest key left in place.
            nearest = keys[min(keys, key=lambda k: abs(k - t))]
            assert _psnr(out, truth) > _psnr(nearest, truth) + 3.0, t


def test_blend_beats_either_single_pass_between_keys(tmp_path):
    frames = make_clip(tmp_path / "in", n=12)
    keys = {1: style(frames[1]), 12: style(frames[12])}
    both = propagate(tmp_path / "in", keys, out=tmp_path / "both")
    fwd = propagate(tmp_path / "in", {1: keys[1]}, out=tmp_path / "fwd")
    bwd = propagate(tmp_path / "in", {12: keys[12]}, out=tmp_path / "bwd")

    def mean_psnr(result):
        return np.mean([_psnr(_read(p), style(frames[t])) for t, p in zip(range(2, 12), result.frames[1:-1])])
    assert mean_psnr(both) >= max(mean_psnr(fwd), mean_psnr(bwd)) - 0.2


# ---------------------------------------------------------------------------
# Determinism and resume


def test_output_is_deterministic(tmp_path):
    frames = make_clip(tmp_path / "in")
    keys = {1: style(frames[1]), 10: style(frames[10])}
    a = propagate(tmp_path / "in", keys, out=tmp_path / "a")
    b = propagate(tmp_path / "in", keys, out=tmp_path / "b")
    assert _digest(a.frames) == _digest(b.frames)


@pytest.mark.parametrize("stop_after", [1, 4, 9, 13])
def test_cancel_then_resume_gives_identical_bytes(tmp_path, stop_after):
    frames = make_clip(tmp_path / "in", n=10)
    keys = {2: style(frames[2]), 9: style(frames[9])}
    reference = propagate(tmp_path / "in", keys, out=tmp_path / "ref")

    cancel = threading.Event()
    calls = []

    def progress(done, total, message):
        calls.append(done)
        if len(calls) >= stop_after:
            cancel.set()
    with pytest.raises(Cancelled):
        propagate(tmp_path / "in", keys, out=tmp_path / "out", progress=progress, cancel=cancel)
    # Whatever is on disk is complete: every PNG decodes.
    for png in (tmp_path / "out").glob("*.png"):
        assert cv2.imread(str(png)) is not None
    resumed = propagate(tmp_path / "in", keys, out=tmp_path / "out")
    assert resumed.computed < 8  # it did not start over
    assert _digest(resumed.frames) == _digest(reference.frames)
    assert not (tmp_path / "out" / ".karwai-cache" / "work").exists()


def test_rerun_skips_finished_work_and_a_changed_key_invalidates_only_its_spans(tmp_path):
    frames = make_clip(tmp_path / "in", n=10)
    keys = {1: style(frames[1]), 5: style(frames[5]), 10: style(frames[10])}
    first = propagate(tmp_path / "in", keys, out=tmp_path / "out")
    assert first.computed == 7
    again = propagate(tmp_path / "in", keys, out=tmp_path / "out")
    assert again.computed == 0 and again.skipped == 7
    before = {p.name: p.read_bytes() for p in first.frames}
    keys[10] = np.ascontiguousarray(keys[10][:, :, ::-1])  # repaint the last key
    changed = propagate(tmp_path / "in", keys, out=tmp_path / "out")
    assert changed.computed == 4  # frames 6..9 only
    after = {p.name: p.read_bytes() for p in changed.frames}
    assert all(before[f"{t:04d}.png"] == after[f"{t:04d}.png"] for t in range(1, 6))
    assert after["0010.png"] != before["0010.png"]
    record = json.loads((tmp_path / "out" / ".karwai-job.json").read_text())
    assert record["settings"]["quality"] == "balanced"


def test_a_changed_setting_recomputes(tmp_path):
    frames = make_clip(tmp_path / "in", n=6)
    keys = {1: style(frames[1])}
    propagate(tmp_path / "in", keys, out=tmp_path / "out")
    again = propagate(tmp_path / "in", keys, out=tmp_path / "out", settings=JobSettings(quality="draft"))
    assert again.computed == 5


# ---------------------------------------------------------------------------
# Masks, sources, keys


def test_masked_output_is_transparent_outside_the_mask(tmp_path):
    frames = make_clip(tmp_path / "in", n=5)
    (tmp_path / "masks").mkdir()
    for t in frames:
        mask = np.zeros((H, W), np.uint8)
        mask[:, : W // 2] = 255
        write_frame_atomic(tmp_path / "masks" / f"{t:04d}.png", mask)
    result = propagate(tmp_path / "in", {1: style(frames[1])}, out=tmp_path / "out", masks=tmp_path / "masks")
    for path in result.frames:
        out = _read(path)
        assert out.shape == (H, W, 4)
        assert (out[:, : W // 2, 3] == 255).all() and (out[:, W // 2:, 3] == 0).all()


def test_changed_masks_recompute(tmp_path):
    frames = make_clip(tmp_path / "in", n=4)
    (tmp_path / "masks").mkdir()
    for t in frames:
        write_frame_atomic(tmp_path / "masks" / f"{t:04d}.png", np.full((H, W), 255, np.uint8))
    keys = {1: style(frames[1])}
    propagate(tmp_path / "in", keys, out=tmp_path / "out", masks=tmp_path / "masks")
    write_frame_atomic(tmp_path / "masks" / "0003.png", np.zeros((H, W), np.uint8))
    again = propagate(tmp_path / "in", keys, out=tmp_path / "out", masks=tmp_path / "masks")
    assert again.computed == 3
    assert (_read(again.frames[2])[:, :, 3] == 0).all()


def test_video_source_and_key_from_file(tmp_path):
    frames = make_clip(tmp_path / "in", n=6)
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 24, (W, H))
    for t in sorted(frames):
        writer.write(cv2.cvtColor(frames[t], cv2.COLOR_RGB2BGR))
    writer.release()
    write_frame_atomic(tmp_path / "key.png", style(frames[1]))
    result = propagate(video, {1: tmp_path / "key.png"}, out=tmp_path / "out")
    assert [p.name for p in result.frames] == [f"{t:04d}.png" for t in range(1, 7)]


def test_frame_numbers_and_names_mirror_the_input(tmp_path):
    frames = make_clip(tmp_path / "in", n=4, start=7, name="shot_{:03d}.png")
    result = propagate(tmp_path / "in", {7: style(frames[7])}, out=tmp_path / "out")
    assert [p.name for p in result.frames] == ["shot_007.png", "shot_008.png", "shot_009.png", "shot_010.png"]


def test_key_of_the_same_aspect_is_resized_with_a_warning(tmp_path):
    frames = make_clip(tmp_path / "in", n=3)
    big_key = cv2.resize(style(frames[1]), (W * 2, H * 2), interpolation=cv2.INTER_NEAREST)
    with pytest.warns(UserWarning, match="resized"):
        result = propagate(tmp_path / "in", {1: big_key}, out=tmp_path / "out")
    assert _read(result.frames[0]).shape == (H, W, 3)


def test_key_of_another_aspect_is_refused_unless_cropped_or_padded(tmp_path):
    frames = make_clip(tmp_path / "in", n=3)
    square = np.ascontiguousarray(style(frames[1])[:, :H])
    with pytest.raises(ValueError, match="different aspect ratio"):
        propagate(tmp_path / "in", {1: square}, out=tmp_path / "out")
    with pytest.warns(UserWarning, match="by crop"):
        result = propagate(tmp_path / "in", {1: square}, out=tmp_path / "crop",
                           settings=JobSettings(key_fit="crop"))
    assert _read(result.frames[0]).shape == (H, W, 3)
    with pytest.warns(UserWarning, match="by pad"):
        result = propagate(tmp_path / "in", {1: square}, out=tmp_path / "pad",
                           settings=JobSettings(key_fit="pad"))
    assert _read(result.frames[0]).shape == (H, W, 4)  # padding is transparent


@pytest.mark.parametrize("keys, message", [
    ({}, "at least one keyframe"),
    ({11: None}, "frame 11 is outside the clip"),
    ({0: None}, "frame 0 is outside the clip"),
    ({"1": None}, "is not an integer"),
    ({1: 42}, "must be an image array or a path"),
    ({1: np.zeros((H, W, 3), np.float64)}, "8- or 16-bit"),
])
def test_bad_keys_are_clear_errors(tmp_path, keys, message):
    make_clip(tmp_path / "in", n=10)
    keys = {n: (np.zeros((H, W, 3), np.uint8) if v is None else v) for n, v in keys.items()}
    with pytest.raises(ValueError, match=message):
        propagate(tmp_path / "in", keys, out=tmp_path / "out")


def test_missing_key_file_is_named(tmp_path):
    make_clip(tmp_path / "in", n=3)
    with pytest.raises(ValueError, match="nope.png"):
        propagate(tmp_path / "in", {1: tmp_path / "nope.png"}, out=tmp_path / "out")


@pytest.mark.parametrize("where", ["same", "inside"])
def test_output_in_the_input_folder_is_refused_and_nothing_is_touched(tmp_path, where):
    frames = make_clip(tmp_path / "in", n=4)
    before = {p.name: p.read_bytes() for p in (tmp_path / "in").iterdir()}
    out = tmp_path / "in" if where == "same" else tmp_path / "in" / "out"
    with pytest.raises(FrameError, match="source folder"):
        propagate(tmp_path / "in", {1: style(frames[1])}, out=out)
    assert {p.name: p.read_bytes() for p in (tmp_path / "in").iterdir()} == before


def test_mixed_resolutions_are_named(tmp_path):
    make_clip(tmp_path / "in", n=4)
    write_frame_atomic(tmp_path / "in" / "0003.png", np.zeros((H + 2, W, 3), np.uint8))
    with pytest.raises(FrameError, match="0003.png"):
        propagate(tmp_path / "in", {1: np.zeros((H, W, 3), np.uint8)}, out=tmp_path / "out")


def test_bad_settings_are_clear_errors(tmp_path):
    frames = make_clip(tmp_path / "in", n=3)
    with pytest.raises(ValueError, match="quality must be one of"):
        propagate(tmp_path / "in", {1: style(frames[1])}, out=tmp_path / "out",
                  settings=JobSettings(quality="ultra"))
    with pytest.raises(ValueError, match="blend must be one of"):
        JobSettings(blend="median")


# ---------------------------------------------------------------------------
# Blending


@pytest.mark.parametrize("h, w", [(20, 30), (21, 30), (20, 33), (21, 33)])
def test_screened_poisson_reconstructs_an_image_from_its_own_gradients(h, w):
    img = _texture(h, w, 3).astype(np.float32)
    gx, gy = blend._gradients(img)
    np.testing.assert_allclose(blend.screened_poisson(img, gx, gy, screening=0.05), img, atol=1e-3)
    # With flat gradients the result is the base smoothed flat: about its mean
    # (exactly, up to the one padded row or column of odd sizes).
    flat = blend.screened_poisson(img, np.zeros_like(gx), np.zeros_like(gy), screening=0.05)
    np.testing.assert_allclose(flat.mean(axis=(0, 1)), img.mean(axis=(0, 1)), atol=1.0)
    assert flat.std(axis=(0, 1)).max() < img.std(axis=(0, 1)).min()


def test_error_weights_follow_the_keys_and_the_errors():
    e = np.ones((8, 8), np.float32) * 100
    assert np.allclose(blend.error_weights(e, e, position=0.0), 1.0)
    assert np.allclose(blend.error_weights(e, e, position=1.0), 0.0)
    w = blend.error_weights(e, e * 10, position=0.5)
    assert (w > 0.8).all()  # the forward pass matches far better


def test_choose_passes_prefers_the_lower_error_and_keeps_its_choice():
    ef = np.full((40, 40), 100.0, np.float32)
    eb = np.full((40, 40), 100.0, np.float32)
    ef[:, :20] = 10.0
    choice = blend.choose_passes(ef, eb, position=0.5)
    assert choice[:, :15].mean() == 1.0 and choice[:, 32:].mean() == 0.0
    # A slightly better backward pass does not flip a pixel already chosen forward.
    kept = blend.choose_passes(eb * 0.95, eb, position=0.5, previous=np.ones((40, 40), np.float32))
    assert kept.mean() == 1.0


@pytest.mark.slow
@pytest.mark.skipif(not (CLIPS / "sam2_dog").is_dir(), reason="real clips not available")
def test_real_clip_beats_leaving_the_key_in_place(tmp_path):
    src = CLIPS / "sam2_dog"
    clip = tmp_path / "in"
    clip.mkdir()
    for t in range(1, 7):
        (clip / f"{t:04d}.jpg").write_bytes((src / f"{t:04d}.jpg").read_bytes())
    from engine.frames import open_frames

    source = open_frames(clip)
    truths = {t: cv2.stylization(source.read(t), sigma_s=40, sigma_r=0.35) for t in range(1, 7)}
    result = propagate(clip, {1: truths[1], 6: truths[6]}, out=tmp_path / "out", settings=JobSettings(quality="draft"))
    for t in range(2, 6):
        out = _read(result.frames[t - 1])
        assert _psnr(out, truths[t]) > _psnr(truths[1], truths[t]) + 1.0


def test_engine_propagate_is_the_function_whatever_was_imported_first(tmp_path):
    import importlib

    import engine

    importlib.import_module("engine.propagation.job")
    frames = make_clip(tmp_path / "in", n=3)
    assert engine.propagate is propagate
    result = engine.propagate(tmp_path / "in", {1: style(frames[1])}, out=tmp_path / "out")
    assert len(result.frames) == 3
    assert engine.propagation.JobSettings is JobSettings


# ---------------------------------------------------------------------------
# Threads


_THREADS_SCRIPT = """
import hashlib, sys, cv2
sys.path.insert(0, {root!r})
from pathlib import Path
import numba
from engine import propagate
from engine.propagation import side_by_side
keys = {{n: cv2.imread(str(p))[:, :, ::-1].copy() for n, p in (({k1}, {p1!r}), ({k2}, {p2!r}))}}
result = propagate({clip!r}, keys, out={out!r})
h = hashlib.sha256()
for p in result.frames:
    h.update(Path(p).read_bytes())
print(side_by_side.pass_threads(), h.hexdigest())
"""


def test_the_output_does_not_depend_on_the_thread_count_and_passes_run_side_by_side(tmp_path):
    import subprocess
    import sys

    frames = make_clip(tmp_path / "in", n=8)
    for k in (2, 7):
        write_frame_atomic(tmp_path / f"key{k}.png", style(frames[k]))
    results = {}
    for threads in ("1", "2"):
        script = _THREADS_SCRIPT.format(root=str(Path(__file__).resolve().parents[1]), k1=2, k2=7,
                                        p1=str(tmp_path / "key2.png"), p2=str(tmp_path / "key7.png"),
                                        clip=str(tmp_path / "in"), out=str(tmp_path / f"out{threads}"))
        proc = subprocess.run([sys.executable, "-c", script], env=dict(os.environ, NUMBA_NUM_THREADS=threads),
                              capture_output=True, text=True, check=True)
        results[threads] = proc.stdout.split()
    assert results["1"][0] == "1"  # one numba thread: one pass at a time
    # Two threads: side by side where numba's threading layer allows it (omp or tbb).
    assert results["2"][0] in ("1", "2")
    assert results["1"][1] == results["2"][1]


def test_numba_threads_applies_to_the_calling_thread_only_and_is_restored():
    import threading

    import numba

    from engine.propagation.side_by_side import numba_threads

    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("numba has one thread here")
    before = numba.get_num_threads()
    seen = []
    with numba_threads(1):
        assert numba.get_num_threads() == 1
        other = threading.Thread(target=lambda: seen.append(numba.get_num_threads()))
        other.start()
        other.join()
    assert seen == [numba.config.NUMBA_NUM_THREADS]  # another thread keeps numba's default
    assert numba.get_num_threads() == before


def test_a_side_by_side_call_left_running_takes_the_threads_of_the_one_that_ended():
    import numba

    from engine.propagation.side_by_side import numba_threads, rebalance, run_side_by_side

    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("numba has one thread here")
    long_started, first_done = threading.Event(), threading.Event()
    seen = []

    def short():
        seen.append(("short", numba.get_num_threads()))
        long_started.wait(10)  # both run before one ends
        first_done.set()

    def long():
        seen.append(("long before", numba.get_num_threads()))
        long_started.set()
        first_done.wait(10)
        deadline = time.monotonic() + 10
        while numba.get_num_threads() == 1 and time.monotonic() < deadline:  # until short() has left
            rebalance()
            time.sleep(0.01)
        seen.append(("long after", numba.get_num_threads()))

    with numba_threads(2):  # two to share, whatever this machine's count
        run_side_by_side([short, long])
        assert ("short", 1) in seen and ("long before", 1) in seen
        assert ("long after", 2) in seen
        rebalance()  # not a side-by-side thread: nothing changes
        assert numba.get_num_threads() == 2


def test_passes_run_side_by_side_up_to_1080p_and_not_beyond(monkeypatch):
    import numba

    from engine.propagation import side_by_side

    if numba.config.DISABLE_JIT:
        pytest.skip("without the JIT the passes always run one after the other")
    monkeypatch.setattr(numba, "get_num_threads", lambda: 2)
    monkeypatch.setattr(numba, "threading_layer", lambda: "omp")
    assert side_by_side.pass_threads(640 * 360) == 2
    assert side_by_side.pass_threads(1920 * 1080) == 2
    assert side_by_side.pass_threads(2560 * 1440) == 1
    assert side_by_side.pass_threads(3840 * 2160) == 1
    monkeypatch.setattr(numba, "threading_layer", lambda: "workqueue")  # not safe from two threads
    assert side_by_side.pass_threads(640 * 360) == 1


def test_two_tail_threads_up_to_1080p_and_one_beyond(monkeypatch):
    import cv2
    import numba

    from engine.propagation import side_by_side

    monkeypatch.setattr(numba, "get_num_threads", lambda: 2)
    monkeypatch.setattr(cv2, "getNumThreads", lambda: 2)
    assert side_by_side.tail_workers(640 * 360) == 2
    assert side_by_side.tail_workers(1920 * 1080) == 2
    assert side_by_side.tail_workers(2560 * 1440) == 1
    monkeypatch.setattr(cv2, "getNumThreads", lambda: 1)
    assert side_by_side.tail_workers(640 * 360) == 0
