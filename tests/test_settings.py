"""JobSettings is the one source of every propagation knob (issue 12): the API, the
command line and the add-on are made from its fields."""

import argparse
import dataclasses
import warnings

import numpy as np
import pytest

from engine.cli_propagate import add_job_arguments, job_settings
from engine.settings import DEFAULT_TEMPORAL_SMOOTHING, GuideWeights, JobSettings, knobs


def _parse(*argv):
    parser = argparse.ArgumentParser()
    add_job_arguments(parser)
    return parser.parse_args(["clip", "--key", "1=k.png", "--out", "o", *argv])


def test_every_field_is_a_knob_with_help_and_a_default():
    names = [k.name for k in knobs()]
    fields = [f.name for f in dataclasses.fields(JobSettings) if f.name != "weights"]
    weights = [f"weight_{f.name}" for f in dataclasses.fields(GuideWeights)]
    assert sorted(names) == sorted(fields + weights)
    defaults = JobSettings()
    for knob in knobs():
        assert knob.help and knob.label
        assert knob.get(defaults) == knob.default
    assert JobSettings().temporal_smoothing == DEFAULT_TEMPORAL_SMOOTHING


def test_the_command_line_has_every_knob_with_its_default():
    args = _parse()
    assert job_settings(args) == JobSettings()
    for knob in knobs():
        assert getattr(args, knob.name) == knob.default
    args = _parse("--quality", "best", "--blend", "poisson", "--key-fit", "pad", "--seed", "7",
                  "--weight-edge", "2.5", "--temporal-smoothing", "0", "--no-restore-detail")
    assert job_settings(args) == JobSettings(quality="best", blend="poisson", key_fit="pad", seed=7,
                                             weights=GuideWeights(edge=2.5), temporal_smoothing=0.0,
                                             restore_detail=False)


def test_choices_on_the_command_line_are_the_settings_choices():
    for knob in knobs():
        if knob.choices:
            for value in knob.values:
                assert getattr(job_settings(_parse(knob.flag, value)), knob.name) == value
            with pytest.raises(SystemExit):
                _parse(knob.flag, "no-such-choice")


@pytest.mark.parametrize("name, value", [("quality", "ultra"), ("blend", "median"), ("key_fit", "stretch"),
                                         ("seed", -1), ("seed", 1.5), ("temporal_smoothing", 1.0),
                                         ("temporal_smoothing", float("nan")), ("restore_detail", 1)])
def test_a_bad_knob_is_refused_by_name(name, value):
    with pytest.raises(ValueError, match=name):
        JobSettings(**{name: value})


def test_knob_values_round_trip():
    s = JobSettings(quality="draft", blend="crossfade", seed=3, weights=GuideWeights(style=2.0))
    assert JobSettings.from_knobs(s.knob_values()) == s
    assert JobSettings.from_dict(s.as_dict()) == s
    with pytest.raises(ValueError, match="unknown setting"):
        JobSettings.from_knobs({"qualty": "draft"})


def test_old_keywords_still_work_with_a_deprecation_warning_and_clash_with_settings(tmp_path):
    from engine.frames import write_frame_atomic
    from engine.propagation import propagate

    rng = np.random.default_rng(0)
    (tmp_path / "in").mkdir()
    for n in (1, 2, 3):
        write_frame_atomic(tmp_path / "in" / f"{n:04d}.png", (rng.random((16, 24, 3)) * 255).astype(np.uint8))
    key = (rng.random((16, 24, 3)) * 255).astype(np.uint8)
    with pytest.raises(TypeError, match="not both"):
        propagate(tmp_path / "in", {1: key}, out=tmp_path / "clash", settings=JobSettings(), quality="draft")
    assert not (tmp_path / "clash").exists()
    with pytest.raises(TypeError, match="unexpected keyword"):
        propagate(tmp_path / "in", {1: key}, out=tmp_path / "typo", qualty="draft")
    with pytest.warns(DeprecationWarning, match="quality"):
        old = propagate(tmp_path / "in", {1: key}, out=tmp_path / "old", quality="draft", seed=4)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        new = propagate(tmp_path / "in", {1: key}, out=tmp_path / "new", settings=JobSettings(quality="draft", seed=4))
    for a, b in zip(old.frames, new.frames):
        assert a.read_bytes() == b.read_bytes()
