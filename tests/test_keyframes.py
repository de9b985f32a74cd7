"""Tests for engine.keyframes: cut detection, motion and reveal triggers."""

from pathlib import Path

import cv2
import numpy as np
import pytest

from engine.keyframes import FrameChange, KeyframeSuggestion, analyse_changes, suggest_keyframes

CLIPS = Path(__file__).resolve().parents[2] / "shared" / "data" / "clips"


def texture(h, w, *, seed=0, sigma=2.0):
    noise = np.random.default_rng(seed).random((h, w, 3)).astype(np.float32)
    blurred = cv2.GaussianBlur(noise, (0, 0), sigma)
    lo, hi = blurred.min(), blurred.max()
    return np.round((blurred - lo) / (hi - lo) * 255).astype(np.uint8)


def pan(big, count, *, step, h=96, w=128):
    """``count`` frames panning right over ``big`` by ``step`` pixels per frame."""
    return [np.ascontiguousarray(big[10 : 10 + h, 10 + k * step : 10 + k * step + w]) for k in range(count)]


def keys(suggestions):
    return [(s.frame, s.reason) for s in suggestions]


NO_MOTION = dict(motion_threshold=1e9, reveal_threshold=1e9)


def test_inserted_cut_with_new_palette_is_found():
    shot_a = pan(texture(120, 240, seed=1), 6, step=2)
    tinted = (texture(120, 240, seed=2).astype(np.float32) * np.float32([1.0, 0.45, 0.15])).astype(np.uint8)
    shot_b = pan(tinted, 6, step=2)
    result = suggest_keyframes(shot_a + shot_b, **NO_MOTION)
    assert keys(result) == [(1, "first"), (7, "cut")]
    assert result[1].value > 0.4
    assert all(isinstance(s, KeyframeSuggestion) for s in result)


def test_cut_between_shots_of_the_same_palette_is_found_by_flow():
    # Two random textures share their colour statistics: the histogram barely
    # moves, but the flow explains nothing across the cut.
    shot_a = pan(texture(120, 240, seed=3), 5, step=1)
    shot_b = pan(texture(120, 240, seed=4), 5, step=1)
    changes = list(analyse_changes(shot_a + shot_b))
    cut = changes[4]
    assert cut.frame == 6 and cut.previous == 5
    assert cut.cut_score < 0.4 and cut.inconsistent > 0.8
    assert max(c.inconsistent for c in changes if c.frame != 6) < 0.3
    assert keys(suggest_keyframes(shot_a + shot_b, **NO_MOTION)) == [(1, "first"), (6, "cut")]


def test_accumulated_motion_triggers_keys():
    # 4 px per frame at 96x128 (diagonal 160) is 0.025 of the diagonal per frame.
    frames = pan(texture(120, 300, seed=5), 12, step=4)
    changes = list(analyse_changes(frames))
    motion = np.array([c.motion for c in changes])
    np.testing.assert_allclose(motion, 4 / 160, rtol=0.1)
    result = suggest_keyframes(frames, motion_threshold=0.09, reveal_threshold=1e9, min_gap=1)
    assert keys(result) == [(1, "first"), (5, "motion"), (9, "motion")]
    assert result[1].value == pytest.approx(0.1, rel=0.1)
    # min_gap holds motion keys apart.
    spaced = suggest_keyframes(frames, motion_threshold=0.01, reveal_threshold=1e9, min_gap=5)
    assert [s.frame for s in spaced] == [1, 6, 11]


def test_revealed_content_triggers_a_key():
    h, w = 96, 128
    background = texture(h, w, seed=6)
    occluder = texture(60, 80, seed=7)
    frames = []
    for k in range(10):
        frame = background.copy()
        if k < 6:  # the occluder vanishes at frame 7
            frame[18:78, 24:104] = occluder
        frames.append(frame)
    changes = {c.frame: c for c in analyse_changes(frames)}
    assert changes[7].reveal > 0.3
    assert changes[7].cut_score < 0.4 and changes[7].inconsistent < 0.8
    assert max(c.reveal for n, c in changes.items() if n != 7) < 0.02
    result = suggest_keyframes(frames, motion_threshold=1e9, reveal_threshold=0.3, min_gap=1)
    assert keys(result) == [(1, "first"), (7, "reveal")]


def test_still_clip_gets_only_the_first_key_and_progress_is_reported():
    frame = texture(64, 64, seed=8)
    calls = []
    result = suggest_keyframes([frame] * 6, progress=lambda done, total: calls.append((done, total)))
    assert keys(result) == [(1, "first")]
    assert calls[-1] == (6, 6) and len(calls) == 6
    assert keys(suggest_keyframes([frame])) == [(1, "first")]
    assert suggest_keyframes([]) == []


def test_frame_source_numbers_are_used(tmp_path):
    from engine.frames import open_frames

    shot_a = pan(texture(120, 240, seed=1), 3, step=2)
    shot_b = pan((texture(120, 240, seed=2) // 3).astype(np.uint8), 3, step=2)
    for number, frame in zip([10, 11, 12, 20, 21, 22], shot_a + shot_b):
        cv2.imwrite(str(tmp_path / f"shot_{number:04d}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    result = suggest_keyframes(open_frames(tmp_path), **NO_MOTION)
    assert keys(result) == [(10, "first"), (20, "cut")]


def test_downscaling_and_validation():
    big = [texture(300, 400, seed=9)] * 2
    change = next(analyse_changes(big, max_side=64))
    assert isinstance(change, FrameChange) and change.motion < 0.01
    with pytest.raises(ValueError, match="different size"):
        list(analyse_changes([texture(32, 32), texture(32, 40)]))
    with pytest.raises(ValueError, match="uint8"):
        suggest_keyframes([np.zeros((8, 8, 3), np.float32)] * 2)
    with pytest.raises(ValueError, match="cut_threshold"):
        suggest_keyframes(big, cut_threshold=0)
    with pytest.raises(ValueError, match="min_gap"):
        suggest_keyframes(big, min_gap=0)
    with pytest.raises(TypeError, match="open_frames"):
        suggest_keyframes(iter(big))


@pytest.mark.skipif(not (CLIPS / "sam2_dog").is_dir(), reason="shared test clips not present")
def test_real_clips_spliced_cut():
    from engine.frames import open_frames

    dog = open_frames(CLIPS / "sam2_dog")
    juggle = open_frames(CLIPS / "sam2_juggle")
    frames = [dog.read(n) for n in range(1, 9)] + [juggle.read(n) for n in range(1, 9)]
    result = suggest_keyframes(frames, max_side=160)
    assert keys(result) == [(1, "first"), (9, "cut")]
