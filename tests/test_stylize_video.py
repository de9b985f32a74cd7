"""Keys that agree, neural-video and fast-network (engine.stylizers.keys / video / fastnet).

Small random VGG19-layout weights (written here), 32x48 frames, few iterations.
Stability is measured with the warp error of ``bench propagate``.
"""

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from benchmarks.propagate import raw_flow, warp_error  # noqa: E402
from engine import key_disagreement, stylize, stylize_keys, stylize_video  # noqa: E402
from engine.__main__ import main as cli_main  # noqa: E402
from engine.frames import read_image, write_frame_atomic  # noqa: E402
from engine.stylizers import Cancelled  # noqa: E402
from engine.stylizers.fastnet import build_network, load_network  # noqa: E402
from engine.stylizers.keys import key_order  # noqa: E402
from engine.stylizers.video import RECORD_NAME  # noqa: E402
from helpers import weights, write_weights  # noqa: E402,F401 - the shared weights fixture
from test_stylize_neural import make_style  # noqa: E402

H, W = 32, 48
SHIFT = 2  # pixels per frame
NEURAL = dict(iterations=40, style_weight=20.0)
FAST = dict(width=8, blocks=1, steps=60, train_size=32, batch_size=2, style_weight=20.0)


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def style():
    return make_style()


def _texture(seed=0):
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (40, 60, 3)).astype(np.uint8)
    return cv2.resize(cv2.GaussianBlur(small, (0, 0), 1.5), (240, 160), interpolation=cv2.INTER_CUBIC)


def write_clip(folder, frames):
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(frames, start=1):
        write_frame_atomic(folder / f"{i:04d}.png", np.ascontiguousarray(frame))
    return folder


def shifting_frames(n=7, shift=SHIFT):
    """Frame t+1 is frame t moved left by ``shift`` pixels: F_{t+1}[:, x] = F_t[:, x + shift]."""
    big = _texture()
    return [big[20:20 + H, 20 + shift * t:20 + shift * t + W] for t in range(n)]


@pytest.fixture(scope="module")
def shift_clip(tmp_path_factory):
    return write_clip(tmp_path_factory.mktemp("shift") / "clip", shifting_frames())


def read_outputs(result):
    return [read_image(p, alpha=True) for p in result.frames]


def stability(result, clip):
    from engine.frames import open_frames

    source = open_frames(clip)
    numbers = source.frame_numbers
    frames = {n: source.read(n) for n in numbers}
    outs = {n: read_image(p, alpha=False) for n, p in zip(numbers, result.frames)}
    return warp_error(outs, frames, numbers[1:], raw_flow())


def shifted_gap(outputs, shift=SHIFT, margin=8):
    """Mean |O_{t+1} - O_t moved by the known shift| inside the frame, and without the move."""
    moved, still = [], []
    for a, b in zip(outputs, outputs[1:]):
        a = a[:, :, :3].astype(np.float32)
        b = b[:, :, :3].astype(np.float32)
        moved.append(np.abs(b[:, margin:W - margin - shift] - a[:, margin + shift:W - margin]).mean())
        still.append(np.abs(b[:, margin:W - margin] - a[:, margin:W - margin]).mean())
    return float(np.mean(moved)), float(np.mean(still))


# ---------------------------------------------------------------------------
# keys that agree


def test_key_order_follows_the_timeline_from_the_anchor():
    assert key_order([40, 1, 20]) == [(1, None), (20, 1), (40, 20)]
    assert key_order([1, 20, 40, 60], anchor=40) == [(40, None), (60, 40), (20, 40), (1, 20)]
    with pytest.raises(ValueError, match="anchor"):
        key_order([1, 20], anchor=5)


def test_consistent_keys_agree_and_the_anchor_is_stylized_as_today(shift_clip, weights, style):
    numbers = [1, 4, 7]
    alone = stylize_keys(shift_clip, numbers, method="neural", style_image=style, consistent=False,
                         weights=weights, **NEURAL)
    agreed = stylize_keys(shift_clip, numbers, method="neural", style_image=style, weights=weights, **NEURAL)
    assert sorted(agreed) == numbers
    frame1 = read_image(shift_clip / "0001.png", alpha=False)
    np.testing.assert_array_equal(agreed[1], stylize(frame1, method="neural", style_image=style,
                                                     weights=weights, **NEURAL))
    np.testing.assert_array_equal(alone[1], agreed[1])
    independent = key_disagreement(alone, shift_clip)
    consistent = key_disagreement(agreed, shift_clip)
    assert independent > 5.0
    assert consistent <= 0.5 * independent, (consistent, independent)


def test_keys_follow_a_marked_anchor(shift_clip, weights, style):
    agreed = stylize_keys(shift_clip, [1, 7], method="neural", style_image=style, anchor=7,
                          weights=weights, **NEURAL)
    frame7 = read_image(shift_clip / "0007.png", alpha=False)
    np.testing.assert_array_equal(agreed[7], stylize(frame7, method="neural", style_image=style,
                                                     weights=weights, **NEURAL))


def test_deepdream_keys_agree(shift_clip, weights):
    params = dict(octaves=2, iterations=4, step=0.05, jitter=2, weights=weights, layers=("conv3_1",))
    alone = stylize_keys(shift_clip, [1, 5], method="deepdream", consistent=False, **params)
    agreed = stylize_keys(shift_clip, [1, 5], method="deepdream", **params)
    assert key_disagreement(agreed, shift_clip) <= 0.5 * key_disagreement(alone, shift_clip)


def test_filters_are_stylized_frame_by_frame(shift_clip):
    keys = stylize_keys(shift_clip, [2, 6], method="painterly", filter="cartoon")
    frame = read_image(shift_clip / "0006.png", alpha=False)
    np.testing.assert_array_equal(keys[6], stylize(frame, method="painterly", filter="cartoon"))


def test_stylize_keys_errors(shift_clip, weights, style):
    with pytest.raises(ValueError, match="not in the clip"):
        stylize_keys(shift_clip, [1, 99], method="neural", style_image=style, weights=weights)
    with pytest.raises(ValueError, match="twice"):
        stylize_keys(shift_clip, [1, 1], method="neural", style_image=style, weights=weights)
    with pytest.raises(ValueError, match="unknown method"):
        stylize_keys(shift_clip, [1], method="nope")
    with pytest.raises(ValueError, match="bogus"):
        stylize_keys(shift_clip, [1, 4], method="neural", style_image=style, weights=weights, bogus=1)


# ---------------------------------------------------------------------------
# neural-video


def test_neural_video_still_scene_gives_identical_frames(tmp_path, weights, style):
    frame = shifting_frames(1)[0]
    clip = write_clip(tmp_path / "still", [frame] * 4)
    result = stylize_video(clip, method="neural-video", style_image=style, out=tmp_path / "out",
                           weights=weights, **NEURAL)
    outputs = read_outputs(result)
    assert result.computed == 4
    for image in outputs[1:]:
        np.testing.assert_array_equal(image, outputs[0])


def test_neural_video_nearly_still_scene_barely_changes(tmp_path, weights, style):
    rng = np.random.default_rng(3)
    frame = shifting_frames(1)[0].astype(np.int16)
    frames = [np.clip(frame + rng.integers(-2, 3, frame.shape), 0, 255).astype(np.uint8) for _ in range(4)]
    clip = write_clip(tmp_path / "noisy", frames)
    video = read_outputs(stylize_video(clip, method="neural-video", style_image=style, out=tmp_path / "v",
                                       weights=weights, **NEURAL))
    alone = read_outputs(stylize_video(clip, method="neural-video", style_image=style, out=tmp_path / "a",
                                       weights=weights, temporal_weight=0.0, **NEURAL))
    change = np.mean([np.abs(b.astype(float) - a).mean() for a, b in zip(video, video[1:])])
    change_alone = np.mean([np.abs(b.astype(float) - a).mean() for a, b in zip(alone, alone[1:])])
    assert change <= 0.25 * change_alone, (change, change_alone)


def test_neural_video_known_shift_gives_shifted_frames(tmp_path, shift_clip, weights, style):
    video = stylize_video(shift_clip, method="neural-video", style_image=style, out=tmp_path / "v",
                          weights=weights, **NEURAL)
    alone = stylize_video(shift_clip, method="neural-video", style_image=style, out=tmp_path / "a",
                          weights=weights, temporal_weight=0.0, **NEURAL)
    moved, still = shifted_gap(read_outputs(video))
    moved_alone, _ = shifted_gap(read_outputs(alone))
    assert moved < 0.5 * still
    assert moved <= 0.5 * moved_alone, (moved, moved_alone)
    # The same figure as bench propagate's: the stability target of the issue.
    assert stability(video, shift_clip) <= 0.5 * stability(alone, shift_clip)


def test_neural_video_resumes_byte_identical(tmp_path, shift_clip, weights, style):
    whole = stylize_video(shift_clip, method="neural-video", style_image=style, out=tmp_path / "whole",
                          weights=weights, **NEURAL)
    stop = {"now": False}

    def progress(done, total, message):
        stop["now"] = stop["now"] or "frame 3: iteration 5/" in message  # in the middle of frame 3

    with pytest.raises(Cancelled):
        stylize_video(shift_clip, method="neural-video", style_image=style, out=tmp_path / "part",
                      weights=weights, progress=progress, cancel=lambda: stop["now"], **NEURAL)
    done = sorted(p.name for p in (tmp_path / "part").glob("*.png"))
    assert done == ["0001.png", "0002.png"]
    resumed = stylize_video(shift_clip, method="neural-video", style_image=style, out=tmp_path / "part",
                            weights=weights, **NEURAL)
    assert (resumed.computed, resumed.skipped) == (5, 2)
    for a, b in zip(whole.frames, resumed.frames):
        assert a.read_bytes() == b.read_bytes()
    again = stylize_video(shift_clip, method="neural-video", style_image=style, out=tmp_path / "part",
                          weights=weights, **NEURAL)
    assert (again.computed, again.skipped) == (0, 7)
    # A changed setting recomputes everything.
    changed = stylize_video(shift_clip, method="neural-video", style_image=style, out=tmp_path / "part",
                            weights=weights, temporal_weight=500.0, **NEURAL)
    assert changed.computed == 7


def test_neural_video_changed_frame_recomputes_from_it(tmp_path, weights, style):
    clip = write_clip(tmp_path / "clip", shifting_frames(5))
    first = stylize_video(clip, method="neural-video", style_image=style, out=tmp_path / "out",
                          weights=weights, **NEURAL)
    before = [p.read_bytes() for p in first.frames]
    frame = read_image(clip / "0004.png", alpha=False).copy()
    frame[:8, :8] = 255
    write_frame_atomic(clip / "0004.png", frame)
    second = stylize_video(clip, method="neural-video", style_image=style, out=tmp_path / "out",
                           weights=weights, **NEURAL)
    assert (second.computed, second.skipped) == (2, 3)
    assert [p.read_bytes() for p in second.frames[:3]] == before[:3]


def test_neural_video_two_passes_long_term_and_mask(tmp_path, shift_clip, weights, style):
    mask = np.zeros((H, W), np.uint8)
    mask[:, : W // 2] = 255
    write_frame_atomic(tmp_path / "mask.png", mask)
    result = stylize_video(shift_clip, method="neural-video", style_image=style, out=tmp_path / "out",
                           masks=tmp_path / "mask.png", weights=weights, passes=2, long_term=(2, 4), **NEURAL)
    outputs = read_outputs(result)
    assert all(o.shape == (H, W, 4) for o in outputs)
    np.testing.assert_array_equal(outputs[3][:, :, 3], mask)
    assert not (tmp_path / "out" / ".karwai-video").exists()  # work copies removed once finished
    single = stylize_video(shift_clip, method="neural-video", style_image=style, out=tmp_path / "one",
                           weights=weights, **NEURAL)
    two = stylize_video(shift_clip, method="neural-video", style_image=style, out=tmp_path / "two",
                        weights=weights, passes=2, **NEURAL)
    assert stability(two, shift_clip) <= 1.1 * stability(single, shift_clip)


def test_stylize_video_errors(tmp_path, shift_clip, weights, style):
    with pytest.raises(ValueError, match="method"):
        stylize_video(shift_clip, method="neural", style_image=style, out=tmp_path / "o")
    with pytest.raises(ValueError, match="style_image"):
        stylize_video(shift_clip, method="neural-video", style_image=None, out=tmp_path / "o")
    with pytest.raises(ValueError, match="unknown parameter 'itterations'"):
        stylize_video(shift_clip, method="neural-video", style_image=style, out=tmp_path / "o", itterations=3)
    with pytest.raises(ValueError, match="source folder"):
        stylize_video(shift_clip, method="neural-video", style_image=style, out=shift_clip / "out",
                      weights=weights)
    with pytest.raises(ValueError, match="passes"):
        stylize_video(shift_clip, method="neural-video", style_image=style, out=tmp_path / "o",
                      weights=weights, passes=3)
    with pytest.raises(ValueError, match="steps"):
        stylize_video(shift_clip, method="fast-network", style_image=style, out=tmp_path / "o",
                      weights=weights, steps=-1)
    assert not (shift_clip / "out").exists()


# ---------------------------------------------------------------------------
# fast-network


def test_fast_network_shape_and_no_checkerboard_layers():
    net = build_network(4, 1)
    x = torch.rand(1, 3, 30, 45)
    assert net(x).shape == x.shape
    names = {type(m).__name__ for m in net.modules()}
    assert "InstanceNorm2d" in names and "ConvTranspose2d" not in names


def test_fast_network_still_and_shifted_scene(tmp_path, shift_clip, weights, style):
    frame = shifting_frames(1)[0]
    still = write_clip(tmp_path / "still", [frame] * 3)
    result = stylize_video(still, method="fast-network", style_image=style, out=tmp_path / "s",
                           weights=weights, **FAST)
    outputs = read_outputs(result)
    for image in outputs[1:]:
        np.testing.assert_array_equal(image, outputs[0])
    assert result.model.stat().st_size < 200_000
    # The network trained on the still clip, run on a moving one, moves its output with the frame
    # (by a multiple of 4 pixels: two stride-2 layers make it equivariant to those).
    moving_clip = write_clip(tmp_path / "moving", shifting_frames(4, shift=4))
    moving = stylize_video(moving_clip, method="fast-network", style_image=style, out=tmp_path / "m",
                           weights=weights, model=str(result.model), **FAST)
    assert moving.train_seconds == 0.0
    moved, unmoved = shifted_gap(read_outputs(moving), shift=4)
    assert moved < 0.25 * unmoved, (moved, unmoved)


def test_fast_network_training_resumes_to_the_same_network(tmp_path, shift_clip, weights, style):
    whole = stylize_video(shift_clip, method="fast-network", style_image=style, out=tmp_path / "whole",
                          weights=weights, checkpoint_every=5, **FAST)
    steps = {"n": 0}

    def progress(done, total, message):
        if message.startswith("training"):
            steps["n"] += 1

    with pytest.raises(Cancelled):
        stylize_video(shift_clip, method="fast-network", style_image=style, out=tmp_path / "part",
                      weights=weights, checkpoint_every=5, progress=progress,
                      cancel=lambda: steps["n"] >= 23, **FAST)
    assert (tmp_path / "part" / ".karwai-video" / "fast-network.ckpt").exists()
    assert not list((tmp_path / "part").glob("*.png"))
    resumed = stylize_video(shift_clip, method="fast-network", style_image=style, out=tmp_path / "part",
                            weights=weights, checkpoint_every=5, **FAST)
    assert resumed.model.read_bytes() == whole.model.read_bytes()
    for a, b in zip(whole.frames, resumed.frames):
        assert a.read_bytes() == b.read_bytes()
    again = stylize_video(shift_clip, method="fast-network", style_image=style, out=tmp_path / "part",
                          weights=weights, checkpoint_every=5, **FAST)
    assert (again.computed, again.skipped, again.train_seconds) == (0, 7, 0.0)


def test_fast_network_stability_loss_halves_flicker(tmp_path, shift_clip, weights, style):
    stable = stylize_video(shift_clip, method="fast-network", style_image=style, out=tmp_path / "with",
                           weights=weights, **FAST)
    plain = stylize_video(shift_clip, method="fast-network", style_image=style, out=tmp_path / "without",
                          weights=weights, stability_weight=0.0, **FAST)
    assert stability(stable, shift_clip) <= 0.7 * stability(plain, shift_clip)


def test_fast_network_refuses_a_foreign_model_file(tmp_path, shift_clip, weights, style):
    bad = tmp_path / "net.pt"
    bad.write_bytes(b"not a network")
    with pytest.raises(ValueError, match="not a fast-network file"):
        stylize_video(shift_clip, method="fast-network", style_image=style, out=tmp_path / "o",
                      weights=weights, model=str(bad), **FAST)
    assert bad.read_bytes() == b"not a network"
    with pytest.raises(ValueError):
        load_network(tmp_path / "missing.pt")


# ---------------------------------------------------------------------------
# CLI


def test_cli_stylize_keys_and_video(tmp_path, shift_clip, weights, capsys):
    art = tmp_path / "art.png"
    write_frame_atomic(art, make_style())
    rc = cli_main(["stylize-keys", str(shift_clip), "--keys", "1,7", "--method", "neural", "--style-image",
                   str(art), "--out", str(tmp_path / "keys"), "--param", f"weights={weights}",
                   "--param", "iterations=20", "--quiet"])
    assert rc == 0
    assert sorted(p.name for p in (tmp_path / "keys").glob("*.png")) == ["0001.png", "0007.png"]
    rc = cli_main(["stylize-video", str(shift_clip), "--method", "neural-video", "--style-image", str(art),
                   "--out", str(tmp_path / "video"), "--param", f"weights={weights}", "--param",
                   "iterations=20", "--param", "long_term=2", "--quiet"])
    assert rc == 0
    assert len(list((tmp_path / "video").glob("*.png"))) == 7
    assert (tmp_path / "video" / RECORD_NAME).exists()
    rc = cli_main(["stylize-video", str(shift_clip), "--method", "fast-network", "--style-image", str(art),
                   "--out", str(tmp_path / "fast"), "--param", f"weights={weights}", "--param", "steps=4",
                   "--param", "width=4", "--param", "blocks=1", "--param", "train_size=32", "--quiet"])
    assert rc == 0
    assert len(list((tmp_path / "fast").glob("*.png"))) == 7
    capsys.readouterr()
    rc = cli_main(["stylize-video", str(shift_clip), "--method", "neural-video", "--style-image",
                   str(tmp_path / "missing.png"), "--out", str(tmp_path / "x")])
    assert rc == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: --style-image: file not found: '{tmp_path / 'missing.png'}'"]
    rc = cli_main(["stylize-video", str(shift_clip), "--method", "neural-video", "--style-image", str(art),
                   "--out", str(tmp_path / "x"), "--param", "passes=x"])
    assert rc == 1
    assert "passes" in capsys.readouterr().err
    rc = cli_main(["stylize-keys", str(shift_clip), "--keys", "1,x", "--method", "neural", "--style-image",
                   str(art), "--out", str(tmp_path / "k2")])
    assert rc == 1 and "--keys" in capsys.readouterr().err


# ---------------------------------------------------------------------------
# a real clip


REAL_CLIPS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "clips"


@pytest.mark.skipif(not (REAL_CLIPS / "sam2_bedroom").is_dir(), reason="real clips not available")
def test_neural_video_on_a_real_clip_halves_the_warp_error(tmp_path, weights, style):
    from engine.frames import open_frames

    source = open_frames(REAL_CLIPS / "sam2_bedroom")
    frames = [cv2.resize(np.asarray(source.read(n)), (64, 36), interpolation=cv2.INTER_AREA)
              for n in source.frame_numbers[:6]]
    clip = write_clip(tmp_path / "clip", frames)
    video = stylize_video(clip, method="neural-video", style_image=style, out=tmp_path / "v",
                          weights=weights, **NEURAL)
    alone = stylize_video(clip, method="neural-video", style_image=style, out=tmp_path / "a",
                          weights=weights, temporal_weight=0.0, **NEURAL)
    assert stability(video, clip) <= 0.5 * stability(alone, clip)
    shutil.rmtree(tmp_path / "v")
