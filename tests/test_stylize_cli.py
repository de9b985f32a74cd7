"""``python -m engine stylize`` (engine.cli_stylize)."""

import importlib.util
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from engine.__main__ import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
from helpers import weights  # noqa: E402,F401 - the shared weights fixture


def write_png(path, rgb):
    assert cv2.imwrite(str(path), np.ascontiguousarray(rgb[..., ::-1]))
    return str(path)


@pytest.fixture
def frame_file(tmp_path):
    rng = np.random.default_rng(0)
    return write_png(tmp_path / "frame_0001.png", rng.integers(0, 256, (36, 50, 3), dtype=np.uint8))


@pytest.fixture
def art_file(tmp_path):
    rng = np.random.default_rng(1)
    return write_png(tmp_path / "art.png", rng.integers(0, 256, (60, 40, 3), dtype=np.uint8))


def run_main(args, capsys):
    code = main(["stylize", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def no_temp_files(folder):
    return [n for n in os.listdir(folder) if n.startswith(".") or n.endswith(".tmp")] == []


def test_painterly_writes_the_output(frame_file, tmp_path, capsys):
    out = tmp_path / "out.png"
    code, _, err = run_main([frame_file, "--method", "painterly", "--param", "filter=oil",
                             "--param", "radius=3", "--out", str(out)], capsys)
    assert code == 0, err
    img = cv2.imread(str(out))
    assert img.shape == (36, 50, 3)
    assert no_temp_files(tmp_path)


def test_image_method_fits_the_painted_key(frame_file, art_file, tmp_path, capsys):
    out = tmp_path / "key.png"
    code, _, err = run_main([frame_file, "--method", "image", "--style-image", art_file,
                             "--param", "fit=pad", "--out", str(out)], capsys)
    assert code == 0, err
    assert cv2.imread(str(out)).shape == (36, 50, 3)


def test_neural_shows_a_progress_bar(frame_file, art_file, weights, tmp_path, capsys):
    out = tmp_path / "n.png"
    code, _, err = run_main([frame_file, "--method", "neural", "--style-image", art_file,
                             "--param", f"weights={weights}", "--param", "iterations=3",
                             "--param", "device=cpu", "--out", str(out)], capsys)
    assert code == 0, err
    assert "3/3" in err and "loss=" in err
    assert cv2.imread(str(out)).shape == (36, 50, 3)


def test_existing_output_is_replaced_and_kept_on_failure(frame_file, tmp_path, capsys):
    out = tmp_path / "out.png"
    out.write_bytes(b"old")
    code, _, _ = run_main([frame_file, "--method", "painterly", "--param", "radius=x", "--param",
                           "filter=oil", "--out", str(out)], capsys)
    assert code == 1 and out.read_bytes() == b"old"
    code, _, _ = run_main([frame_file, "--method", "painterly", "--out", str(out)], capsys)
    assert code == 0 and cv2.imread(str(out)).shape == (36, 50, 3)


@pytest.mark.parametrize("extra,fragment", [
    (["--method", "painterly", "--param", "colour=1"], "unknown parameter 'colour'"),
    (["--method", "painterly", "--param", "filter=sepia"], "filter"),
    (["--method", "painterly", "--param", "filter=oil", "--param", "radius=many"], "'radius'"),
    (["--method", "painterly", "--param", "radius"], "NAME=VALUE"),
    (["--method", "neural"], "--style-image"),
    (["--method", "painterly", "--style-image", "x.png"], "not used"),
    (["--method", "image", "--style-image", "/no/such/art.png"], "not found"),
    pytest.param(["--method", "neural", "--style-image", "{art}", "--param",
                  "weights=/no/such/vgg19.pth"], "/no/such/vgg19.pth",
                 marks=pytest.mark.skipif(importlib.util.find_spec("torch") is None,
                                          reason="without PyTorch the error names PyTorch")),
])
def test_user_errors_exit_1_with_one_line(frame_file, art_file, tmp_path, capsys, extra, fragment):
    extra = [e.replace("{art}", art_file) for e in extra]
    code, out, err = run_main([frame_file, *extra, "--out", str(tmp_path / "o.png")], capsys)
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert fragment in lines[0]
    assert "Traceback" not in err
    assert not (tmp_path / "o.png").exists()


def test_bad_input_files(tmp_path, capsys):
    missing = tmp_path / "missing.png"
    code, _, err = run_main([str(missing), "--method", "painterly", "--out", str(tmp_path / "o.png")], capsys)
    assert code == 1 and "missing.png" in err and len(err.strip().splitlines()) == 1
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"not an image at all")
    code, _, err = run_main([str(corrupt), "--method", "painterly", "--out", str(tmp_path / "o.png")], capsys)
    assert code == 1 and "corrupt.png" in err and len(err.strip().splitlines()) == 1


def test_bad_output_paths(frame_file, tmp_path, capsys):
    code, _, err = run_main([frame_file, "--method", "painterly", "--out", str(tmp_path / "o.tiff")], capsys)
    assert code == 1 and ".png" in err
    code, _, err = run_main([frame_file, "--method", "painterly", "--out", str(tmp_path / "nodir" / "o.png")],
                            capsys)
    assert code == 1 and "does not exist" in err


def test_usage_errors_are_argparse_exit_2(frame_file, capsys):
    with pytest.raises(SystemExit) as err:
        main(["stylize", frame_file, "--out", "x.png"])  # no --method
    assert err.value.code == 2
    with pytest.raises(SystemExit) as err:
        main(["stylize", frame_file, "--method", "sepia", "--out", "x.png"])
    assert err.value.code == 2


def test_python_dash_m_engine(frame_file, tmp_path):
    out = tmp_path / "m.png"
    res = subprocess.run([sys.executable, "-m", "engine", "stylize", frame_file, "--method", "painterly",
                          "--param", "filter=ink", "--out", str(out)],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert cv2.imread(str(out)).shape == (36, 50, 3)
    res = subprocess.run([sys.executable, "-m", "engine", "stylize", frame_file, "--method", "painterly",
                          "--param", "filter=ink", "--param", "threshold=high", "--out", str(out)],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 1
    assert res.stderr.strip().startswith("error:") and "Traceback" not in res.stderr
