"""Keys a plan stylizes itself, one task per key (issue 15: "key stylisation when asked for").

A synthetic clip whose frame t+1 is frame t moved left by 2 pixels. The
stylized keys are compared with :func:`engine.stylize` and
:func:`engine.stylize_keys` (the same step, run outside a plan), and every
plan run with a local :func:`engine.propagate` of the same job, byte for byte.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from engine import stylize
from engine.frames import read_image, write_frame_atomic
from engine.propagation import JobSettings, KeyStylization, plan_job, propagate
from engine.propagation.plan import TASKS_DIR, PlanError, load_plan, task_graph
from engine.propagation.tasks import run_task
from engine.propagation.simulate import critical_path, simulate

ROOT = Path(__file__).resolve().parents[1]
H, W, SHIFT, N = 64, 96, 2, 9
SETTINGS = JobSettings(quality="draft")
OIL = KeyStylization(numbers=(1, 5, 9), method="painterly", params={"filter": "oil"})


def _texture(seed=0):
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (40, 60, 3)).astype(np.uint8)
    return cv2.resize(cv2.GaussianBlur(small, (0, 0), 1.5), (320, 200), interpolation=cv2.INTER_CUBIC)


def write_clip(folder, n=N):
    big = _texture()
    folder.mkdir(parents=True)
    for t in range(n):
        write_frame_atomic(folder / f"{t + 1:04d}.png", np.ascontiguousarray(big[20:20 + H, 20 + SHIFT * t:20 + SHIFT * t + W]))
    return folder


@pytest.fixture
def clip(tmp_path):
    return write_clip(tmp_path / "clip")


def pngs(folder):
    return {p.name: p.read_bytes() for p in Path(folder).glob("*.png")}


def run_all(plan):
    for task in plan.tasks:
        run_task(plan.path, task["id"])


def test_filter_keys_as_tasks_give_the_local_bytes_and_the_stylized_frames(clip, tmp_path):
    plan = plan_job(clip, {}, out=tmp_path / "farm", settings=SETTINGS, stylize=OIL)
    tasks = {t["id"]: t for t in plan.tasks}
    for n in OIL.numbers:  # a filter needs no neighbour: the keys are independent tasks
        assert tasks[f"key-{n}"]["deps"] == [] and tasks[f"key-{n}"]["units"] == {"key": 1, "stylize": 1}
    assert "key-1" in tasks["fwd-between-1-5"]["deps"] and "key-5" in tasks["bwd-between-1-5"]["deps"]
    run_all(plan)
    local = propagate(clip, {}, out=tmp_path / "local", settings=SETTINGS, stylize=OIL)
    assert local.computed == N - 3
    assert pngs(tmp_path / "farm") == pngs(tmp_path / "local") and len(pngs(tmp_path / "local")) == N
    for n in OIL.numbers:
        want = stylize(read_image(clip / f"{n:04d}.png", alpha=False), method="painterly", filter="oil")
        np.testing.assert_array_equal(read_image(tmp_path / "local" / f"{n:04d}.png", alpha=False), want)


def test_painted_and_stylized_keys_mix_in_one_job(clip, tmp_path):
    painted = cv2.stylization(cv2.imread(str(clip / "0009.png")), sigma_s=40, sigma_r=0.35)
    cv2.imwrite(str(tmp_path / "key9.png"), painted)
    job = KeyStylization(numbers=(1,), method="painterly", params={"filter": "ink"})
    result = propagate(clip, {9: tmp_path / "key9.png"}, out=tmp_path / "out", settings=SETTINGS, stylize=job)
    assert result.computed == N - 2
    assert (tmp_path / "out" / "0009.png").read_bytes() != (tmp_path / "out" / "0001.png").read_bytes()
    np.testing.assert_array_equal(read_image(tmp_path / "out" / "0009.png", alpha=False),
                                  cv2.cvtColor(painted, cv2.COLOR_BGR2RGB))
    with pytest.raises(ValueError, match="frame 9 has a painted key and is also to be stylized"):
        propagate(clip, {9: tmp_path / "key9.png"}, out=tmp_path / "out2", settings=SETTINGS,
                  stylize=KeyStylization(numbers=(1, 9), method="painterly"))


def test_a_rerun_keeps_the_keys_and_a_changed_recipe_or_frame_stylizes_again(clip, tmp_path):
    out = tmp_path / "out"
    propagate(clip, {}, out=out, settings=SETTINGS, stylize=OIL)
    keys_dir = out / TASKS_DIR / "keys"
    first = {p.name: p.stat().st_mtime_ns for p in keys_dir.glob("key-*.png")}
    assert len(first) == 3
    again = propagate(clip, {}, out=out, settings=SETTINGS, stylize=OIL)
    assert again.computed == 0
    assert {p.name: p.stat().st_mtime_ns for p in keys_dir.glob("key-*.png")} == first

    other = KeyStylization(numbers=(1, 5, 9), method="painterly", params={"filter": "oil", "radius": 5})
    changed = propagate(clip, {}, out=out, settings=SETTINGS, stylize=other)
    assert changed.computed == N - 3
    now = {p.name for p in keys_dir.glob("key-*.png")}
    assert len(now) == 3 and not now & set(first)  # new recipes; the old keys, made by the job, are gone

    frame = read_image(clip / "0005.png", alpha=False)
    write_frame_atomic(clip / "0005.png", np.ascontiguousarray(frame[:, ::-1]))
    propagate(clip, {}, out=out, settings=SETTINGS, stylize=other)
    after = {p.name for p in keys_dir.glob("key-*.png")}
    assert [n for n in sorted(after - now)] == [n for n in sorted(after) if n.startswith("key-5-")]
    want = stylize(np.ascontiguousarray(frame[:, ::-1]), method="painterly", filter="oil", radius=5)
    np.testing.assert_array_equal(read_image(out / "0005.png", alpha=False), want)


def test_a_stylized_key_is_checked_against_its_task_record(clip, tmp_path):
    plan = plan_job(clip, {}, out=tmp_path / "farm", settings=SETTINGS, stylize=OIL)
    with pytest.raises(PlanError, match="needs task key-1"):
        run_task(plan.path, "fwd-between-1-5")
    run_task(plan.path, "key-1")
    run_task(plan.path, "key-5")
    key1 = plan.resolve(plan.data["keys"]["1"]["file"])
    image = read_image(key1, alpha=False)
    image[0, 0] = 255 - image[0, 0]
    write_frame_atomic(key1, image)
    run_task(plan.path, "flow-between-1-5")
    with pytest.raises(PlanError, match="needs task key-1, which has not finished"):
        run_task(plan.path, "fwd-between-1-5")  # the key task's record no longer matches its outputs
    from engine.propagation.stylized_keys import stylized_key_image

    with pytest.raises(PlanError, match=r"key-1-[0-9a-f]{16}\.png: the stylized key of frame 1 changed"):
        stylized_key_image(plan, 1)
    run_task(plan.path, "key-1")  # it stylizes the key again
    want = stylize(read_image(clip / "0001.png", alpha=False), method="painterly", filter="oil")
    np.testing.assert_array_equal(read_image(key1, alpha=False), want)
    run_task(plan.path, "fwd-between-1-5")


def test_bad_stylization_is_refused_before_anything_is_written(clip, tmp_path):
    out = tmp_path / "out"
    cases = [
        (KeyStylization(numbers=(1,), method="image"), "stylize.method"),
        (KeyStylization(numbers=(1, 99), method="painterly"), "stylize.numbers: frame 99 is not in the clip"),
        (KeyStylization(numbers=(1, 1), method="painterly"), "stylize.numbers: a frame is given twice"),
        (KeyStylization(numbers=(1, 5), method="painterly", params={"bogus": 1}), "no parameter 'bogus'"),
        (KeyStylization(numbers=(1, 5), method="painterly", anchor=3), "anchor"),
        (KeyStylization(numbers=(1, 5), method="neural", params={"style_image": tmp_path / "nope.png"}),
         r"stylize.params\['style_image'\]: file not found"),
        (KeyStylization(numbers=(1, 5), method="neural", params={"style_image": np.zeros((4, 4, 3), np.uint8)}),
         "must be a file path"),
        (KeyStylization(numbers=(1, 5), method="painterly", temporal_weight=-1.0), "temporal_weight"),
    ]
    for job, message in cases:
        with pytest.raises(ValueError, match=message):
            plan_job(clip, {}, out=out, settings=SETTINGS, stylize=job)
        assert not out.exists()
    with pytest.raises(TypeError, match="stylize must be a KeyStylization"):
        propagate(clip, {}, out=out, stylize={"numbers": (1,)})
    with pytest.raises(ValueError, match="at least one keyframe"):
        propagate(clip, {}, out=out)
    style = tmp_path / "art.png"
    write_frame_atomic(style, np.full((8, 8, 3), 90, np.uint8))
    inside = clip / "art.png"
    write_frame_atomic(inside, np.full((8, 8, 3), 90, np.uint8))
    with pytest.raises(ValueError, match="style image"):
        propagate(clip, {}, out=clip, stylize=KeyStylization(numbers=(1,), method="neural",
                                                             params={"style_image": inside}))
    os.unlink(inside)


def test_a_worker_without_the_style_image_gets_its_path(clip, tmp_path):
    torch = pytest.importorskip("torch")
    del torch
    style = tmp_path / "shared" / "art.png"
    style.parent.mkdir()
    write_frame_atomic(style, np.full((8, 8, 3), 90, np.uint8))
    job = KeyStylization(numbers=(1, 5), method="neural", params={"style_image": style, "iterations": 1})
    plan = plan_job(clip, {}, out=tmp_path / "farm", settings=SETTINGS, stylize=job)
    entry = plan.data["keys"]["1"]["stylize"]
    assert entry["params"]["style_image"] == os.path.relpath(style, tmp_path / "farm")
    style.unlink()
    with pytest.raises(ValueError, match=r"art\.png: the style image of the keys is not found on this machine"):
        run_task(plan.path, "key-1")


def test_cli_plan_stylizes_keys_and_refuses_options_without_them(clip, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "engine", *map(str, args)], capture_output=True, text=True,
                              env=env, cwd=ROOT)

    proc = cli("plan", clip, "--out", tmp_path / "farm", "--quality", "draft", "--stylize-keys", "1,5,9",
               "--method", "painterly", "--param", "filter=oil")
    assert proc.returncode == 0, proc.stderr
    plan = load_plan(tmp_path / "farm" / ".karwai-plan.json")
    assert sorted(json.loads(json.dumps(plan.data["keys"]))) == ["1", "5", "9"]
    run_all(plan)
    propagate(clip, {}, out=tmp_path / "local", settings=SETTINGS, stylize=OIL)
    assert pngs(tmp_path / "farm") == pngs(tmp_path / "local")

    proc = cli("plan", clip, "--out", tmp_path / "x", "--key", f"1={clip / '0001.png'}", "--method", "painterly")
    assert proc.returncode == 1 and "--method is for keys the job stylizes" in proc.stderr
    proc = cli("plan", clip, "--out", tmp_path / "x", "--stylize-keys", "1,5")
    assert proc.returncode == 1 and "--stylize-keys needs --method" in proc.stderr
    proc = cli("plan", clip, "--out", tmp_path / "x")
    assert proc.returncode == 1 and "--key or --stylize-keys" in proc.stderr
    assert not (tmp_path / "x").exists()


def test_simulation_counts_the_keys_and_their_chain():
    stylized = [(1, None), (41, 1), (81, 41)]
    tasks = task_graph(range(1, 82), [1, 41, 81], stylized=stylized)
    by_id = {t["id"]: t for t in tasks}
    assert by_id["key-41"]["deps"] == ["key-1"] and by_id["key-81"]["deps"] == ["key-41"]
    costs = {"flow": 0.0, "pass": 0.0, "finish": 0.0, "key": 0.0, "stylize": 100.0}
    path, chain = critical_path(tasks, costs)
    assert path == pytest.approx(300.0) and chain[:3] == ["key-1", "key-41", "key-81"]
    assert simulate(tasks, costs, 8) == pytest.approx(300.0)  # keys that agree cannot run side by side
    independent = task_graph(range(1, 82), [1, 41, 81], stylized=[(n, None) for n, _ in stylized])
    assert simulate(independent, costs, 8) == pytest.approx(100.0)
    assert simulate(independent, costs, 1) == pytest.approx(300.0)


def test_neural_keys_follow_their_neighbour_as_tasks(tmp_path):
    torch = pytest.importorskip("torch")
    from engine import stylize_keys
    from helpers import write_weights
    from test_stylize_neural import make_style

    torch.set_num_threads(1)
    clip = write_clip(tmp_path / "clip", n=7)
    weights = tmp_path / "vgg19-small.pth"
    write_weights(weights)
    style = tmp_path / "art.png"
    write_frame_atomic(style, make_style())
    params = {"style_image": style, "weights": weights, "iterations": 30, "style_weight": 20.0}
    job = KeyStylization(numbers=(1, 4, 7), method="neural", params=params)
    plan = plan_job(clip, {}, out=tmp_path / "farm", settings=SETTINGS, stylize=job)
    deps = {t["id"]: t["deps"] for t in plan.tasks if t["kind"] == "key"}
    assert deps == {"key-1": [], "key-4": ["key-1"], "key-7": ["key-4"]}
    run_all(plan)
    want = stylize_keys(clip, [1, 4, 7], method="neural", **params)
    for n in (1, 4, 7):
        got = read_image(plan.resolve(plan.data["keys"][str(n)]["file"]), alpha=False)
        np.testing.assert_array_equal(got, want[n])
        np.testing.assert_array_equal(read_image(tmp_path / "farm" / f"{n:04d}.png", alpha=False), want[n])
