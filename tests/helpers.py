"""Helpers shared by the test modules: small VGG19-layout weights and their fixture.

Imported as ``helpers`` (pytest puts ``tests/`` on the path). A module that needs
the weights imports the fixture: ``from helpers import weights  # noqa: F401``.
"""

import pytest

#: Indices of the convolutions in torchvision's ``vgg19().features``.
TV_CONV_INDICES = [0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34]
#: Channel widths of the small network the tests use (the real one: 64..512).
SMALL_WIDTHS = [8, 8, 16, 16, 16, 16, 16, 16, 32, 32, 32, 32, 32, 32, 32, 32]


def write_weights(path, widths=SMALL_WIDTHS, seed=0):
    """torch.save a torchvision-layout vgg19 state dict with random weights (He scale)
    and a classifier entry, which the loader ignores."""
    import torch

    g = torch.Generator().manual_seed(seed)
    state = {}
    in_ch = 3
    for idx, out_ch in zip(TV_CONV_INDICES, widths):
        std = (2.0 / (9 * out_ch)) ** 0.5
        state[f"features.{idx}.weight"] = torch.randn(out_ch, in_ch, 3, 3, generator=g) * std
        state[f"features.{idx}.bias"] = torch.zeros(out_ch)
        in_ch = out_ch
    state["classifier.0.weight"] = torch.zeros(4, 8)
    state["classifier.0.bias"] = torch.zeros(4)
    torch.save(state, path)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """A small random VGG19 weights file, written once per module."""
    pytest.importorskip("torch")
    path = tmp_path_factory.mktemp("vgg") / "vgg19-small.pth"
    write_weights(path)
    return str(path)
