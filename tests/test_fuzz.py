"""Fuzzing of ``synthesize`` and ``propagate`` (issue 7, part 5).

Hypothesis draws random shapes, dtypes, weights, keys and settings (see
``tests/fuzzing.py``, which also runs the 1000-case campaign: ``python
build.py bench fuzz``). Each case must return a result of the right shape or
raise ``ValueError``; the cases run in worker subprocesses, so a segfault or a
hang fails the test instead of killing pytest. CI runs 200 synthesis and 30
propagation cases; the harness itself is tested on a crash, a hang and an
unexpected exception put there on purpose.

The regression tests at the end pin the bugs that fuzzing found.
"""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

#: Fuzzing: the full suite, not `build.py test --fast`.
pytestmark = pytest.mark.slow

import fuzzing as fuzz
from engine.guides import GuideWeights
from engine.synth import synthesize
from engine.propagation import JobSettings

DRAFT = JobSettings(quality="draft")

CI_CASES = {"synth": 200, "propagate": 30}


def _explain(report):
    lines = [report.summary()]
    for what in ("crashes", "hangs", "errors"):
        for item in getattr(report, what):
            lines.append(f"{what}: {item}")
    return "\n".join(lines)


def test_fuzz_synthesize_and_propagate():
    reports = fuzz.run_campaigns(CI_CASES, seed=20240607, timeout=120.0)
    for kind, count in CI_CASES.items():
        report = reports[kind]
        assert report.failures == 0, _explain(report)
        assert report.ran == count, _explain(report)
        # Both outcomes were exercised: valid inputs ran, broken ones were refused.
        assert report.returned >= count // 10 and report.refused >= count // 10, report.summary()


@pytest.mark.parametrize("kind, crashes, hangs, errors", [
    ("selftest-crash", 1, 0, 0),
    ("selftest-hang", 0, 1, 0),
    ("selftest-error", 0, 0, 1),
])
def test_the_harness_catches_crashes_hangs_and_unexpected_errors(kind, crashes, hangs, errors):
    """A segfault, a hang and an IndexError planted in the cases are each caught and counted,
    and the campaign goes on with the other cases."""
    report = fuzz.run_campaign(kind, 5, timeout=3.0)
    assert (len(report.crashes), len(report.hangs), len(report.errors)) == (crashes, hangs, errors), \
        _explain(report)
    assert report.ran == 5
    if crashes:
        assert report.crashes[0]["returncode"] < 0  # killed by the signal
        assert report.crashes[0]["case"] is not None
    if hangs:
        assert report.hangs[0]["case"] is not None
        assert "_selftest_case" in report.hangs[0]["stacks"]  # where it was stuck


# ---------------------------------------------------------------------------
# Regressions found by fuzzing


def _guides(rng, hw, channels=(2, 1, 2)):
    src = [(rng.random((*hw, c)) * 255).astype(np.uint8) for c in channels]
    tgt = [(rng.random((*hw, c)) * 255).astype(np.uint8) for c in channels]
    return src, tgt


def test_float_output_stays_within_0_255_and_can_be_fed_back():
    """A constant float32 style of 255 came back as 255.00002 (float32 rounding of the
    vote), which synthesize then refused as an input."""
    rng = np.random.default_rng(0)
    style = np.full((22, 19, 1), 255.0, np.float32)
    src, tgt = _guides(rng, (22, 19))
    result = synthesize(style, src, tgt, guide_weights=[7.6, 0.0, 1.5e-64], style_weight=7.8, patch_size=7,
                        search_vote_iters=3, patchmatch_iters=3, uniformity=1000.0)
    assert result.image.dtype == np.float32
    assert result.image.min() >= 0.0 and result.image.max() <= 255.0
    again = synthesize(result.image, src, tgt, guide_weights=[1.0, 1.0, 1.0])  # not refused
    assert again.image.shape == style.shape


@pytest.mark.parametrize("weight", [1e10, 1e38, 1e308])
def test_huge_weights_are_refused_not_turned_into_nan(weight):
    """Weights of 1e38 overflowed the float32 patch distances: inf/NaN errors and a spoiled
    image, silently. They are refused now, by synthesize and by GuideWeights."""
    rng = np.random.default_rng(1)
    style = (rng.random((20, 20, 3)) * 255).astype(np.uint8)
    src, tgt = _guides(rng, (20, 20), channels=(3,))
    for kwargs in ({"guide_weights": [weight]}, {"guide_weights": [1.0], "style_weight": weight},
                   {"guide_weights": [1.0], "uniformity": weight}):
        with pytest.raises(ValueError, match="at most 1e\\+?0?9"):
            synthesize(style, src, tgt, **kwargs)
    with pytest.raises(ValueError, match="weight colour must be at most 1e9"):
        GuideWeights(colour=weight)
    # The largest accepted weight still gives finite errors.
    result = synthesize(style, src, tgt, guide_weights=[1e9], style_weight=1e9)
    assert np.isfinite(result.error).all()


def test_frames_under_12_pixels_a_side_propagate(tmp_path):
    """OpenCV's DIS raised cv2.error (not a ValueError) for frames under 12 pixels on a
    side, after the keys were written; such frames are padded for the flow now."""
    import cv2

    from engine.flow import compute_flow_pair
    from engine.propagation import propagate

    rng = np.random.default_rng(2)
    for hw in [(1, 1), (8, 10), (5, 40), (40, 5)]:
        a = (rng.random((*hw, 3)) * 255).astype(np.uint8)
        fwd, bwd = compute_flow_pair(a, np.roll(a, 1, axis=1))
        assert fwd.shape == bwd.shape == (*hw, 2) and np.isfinite(fwd).all()
    big = (rng.random((10, 20, 3)) * 255).astype(np.uint8)
    (tmp_path / "in").mkdir()
    for t in range(1, 5):
        cv2.imwrite(str(tmp_path / "in" / f"{t:04d}.png"), big[:, t:t + 8])
    result = propagate(tmp_path / "in", {1: big[:, 1:9, ::-1].copy()}, out=tmp_path / "out", settings=DRAFT)
    assert [cv2.imread(str(p)).shape for p in result.frames] == [(10, 8, 3)] * 4


def test_short_wide_frames_do_not_crash_the_flow():
    """A 13x40 clip at draft quality killed the process with SIGSEGV inside OpenCV's
    DIS: when its coarsest level falls below the finest ("medium" and "fast" presets),
    DIS re-picks its pyramid from the width alone and reads outside a short frame.
    Run in a subprocess, so that a regression fails this test instead of killing pytest."""
    script = """
import tempfile
from pathlib import Path
import cv2, numpy as np
from engine.flow import FlowParams, compute_flow_pair
from engine.propagation import JobSettings, propagate
rng = np.random.default_rng(0)
for preset in ("medium", "fast", "ultrafast"):
    for hw in [(13, 40), (15, 50), (12, 100), (31, 200), (40, 13), (8, 300), (16, 44)]:
        a = (rng.random((*hw, 3)) * 255).astype(np.uint8)
        fwd, bwd = compute_flow_pair(a, np.roll(a, 1, axis=1), params=FlowParams.preset_only(preset))
        assert fwd.shape == (*hw, 2) and np.isfinite(fwd).all() and np.isfinite(bwd).all()
root = Path(tempfile.mkdtemp())
(root / "in").mkdir()
big = (rng.random((13, 60, 3)) * 255).astype(np.uint8)
for t in (2, 8):
    cv2.imwrite(str(root / "in" / f"{t:04d}.png"), big[:, t:t + 40])
result = propagate(root / "in", {8: big[:, 8:48, ::-1].copy()}, out=root / "out", settings=JobSettings(quality="draft"))
assert [cv2.imread(str(p)).shape for p in result.frames] == [(13, 40, 3)] * 2
print("ok")
"""
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, "-c", script], cwd=root, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "PYTHONPATH": str(root)})
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stderr[-2000:]}"
    assert proc.stdout.strip().endswith("ok")


@pytest.mark.parametrize("shape", [(0, 20, 3), (19, 0, 3), (0, 0, 4)])
def test_an_empty_key_is_a_clear_error(tmp_path, shape):
    """An empty key array raised ZeroDivisionError while its aspect was compared."""
    import cv2

    from engine.propagation import propagate

    (tmp_path / "in").mkdir()
    frame = (np.random.default_rng(3).random((19, 20, 3)) * 255).astype(np.uint8)
    for t in (1, 2):
        cv2.imwrite(str(tmp_path / "in" / f"{t:04d}.png"), frame)
    with pytest.raises(ValueError, match="keyframe is empty"):
        propagate(tmp_path / "in", {1: np.zeros(shape, np.uint8)}, out=tmp_path / "out", settings=DRAFT)
    assert not list((tmp_path / "out").glob("*.png"))
