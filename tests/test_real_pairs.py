"""Real LR/HR pairs whose LR is on the HR grid (RealSR, City100): the ``-real`` models, their
weights at every scale, the pair data set, Y-channel training, ``dynsr eval`` without
``--scale`` (and ``--downscale-lr``), ``dynsr upscale`` with the pre-upscaling.

Every image is made here: none of City100 is needed."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

import dynsr
from dynsr.models import create
from dynsr.ops import imresize
from dynsr.upscale.manifest import find_weights
from dynsr.upscale.weights import weights_model_config

REAL = ("ddet-real", "kpn7-real", "kpn7-pr-real", "kpn7-pr-cdm-real", "ddet-rgb-real")
SMALL = {"num_blocks": 1, "channels": 16}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _seeded(name: str, scale: int, **config) -> torch.nn.Module:
    torch.manual_seed(0)
    return create(name, scale=scale, **config).eval()


# --------------------------------------------------------------------------------------------
# models


@pytest.mark.parametrize("name", REAL)
def test_one_network_for_every_scale(name):
    # x1 maps an image on the HR grid to one of its size; xS is bicubic xS, then the same
    # network: the x1 weights fit the xS model and give exactly x1(bicubic(lr)).
    x1 = _seeded(name, 1, **SMALL)
    lr = torch.rand(1, 3, 13, 11)
    with torch.no_grad():
        assert x1(lr).shape == lr.shape
        for scale in (2, 3, 4):
            up = create(name, scale=scale, **SMALL).eval()
            up.load_state_dict(x1.state_dict())  # strict: the same tensors at every scale
            assert torch.allclose(up(lr), x1(imresize(lr, scale)), atol=1e-6)


def test_real_models_are_the_table_ii_networks():
    # ddet-real is ddet with M = 64 (as ddet x2); kpn7-real has one 7x7 head and no CDM/PR.
    assert create("ddet-real", scale=1).core.kernel_sizes == (3, 5, 7)
    assert sum(p.numel() for p in create("ddet-real", scale=3).parameters()) == \
        sum(p.numel() for p in create("ddet", scale=2).parameters())
    plain = create("kpn7-real", scale=1).core
    assert plain.kernel_sizes == (7,) and plain.cdm is None and plain.refine is None
    assert create("kpn7-pr-real", scale=1).core.refine is not None
    assert create("kpn7-pr-cdm-real", scale=1).core.cdm is not None
    assert create("ddet-rgb-real", scale=1).in_channels == 3
    assert create("ddet-real", scale=1).in_channels == 1


def _weights_file(path, name: str, scale: int, model: torch.nn.Module) -> None:
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(path), metadata={"model": name, "scale": str(scale),
                                          "model_config": json.dumps(SMALL)})


def test_x1_weights_serve_every_scale(tmp_path):
    model = _seeded("kpn7-real", 1, **SMALL)
    _weights_file(tmp_path / "kpn7-real_x1.safetensors", "kpn7-real", 1, model)
    manifest = {"version": 1, "models": {
        "kpn7-real": {"1": {"file": "kpn7-real_x1.safetensors", "config": SMALL}},
        "kpn7": {"2": {"file": "other.safetensors"}}}}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    entry = find_weights("kpn7-real", 3, tmp_path)
    assert entry is not None and entry.scale == 1 and entry.config == SMALL
    assert find_weights("kpn7", 3, tmp_path) is None  # no x1 entry: nothing at x3
    assert find_weights("kpn7", 2, tmp_path).path.name == "other.safetensors"
    # --weights FILE: a file trained at x1 is accepted at x3; a x2 file is not.
    assert weights_model_config(tmp_path / "kpn7-real_x1.safetensors", "kpn7-real", 3) == SMALL
    _weights_file(tmp_path / "x2.safetensors", "kpn7-real", 2, model)
    with pytest.raises(ValueError, match="weights of kpn7-real x2, not kpn7-real x3"):
        weights_model_config(tmp_path / "x2.safetensors", "kpn7-real", 3)
    # dynsr.load at x3 finds the x1 weights and runs bicubic x3, then the network.
    up = dynsr.load("kpn7-real", 3, device="cpu", precision="fp32", weights_dir=tmp_path)
    assert up.trained
    lr = torch.rand(3, 20, 18)
    with torch.no_grad():
        expected = model(imresize(lr[None], 3))[0].clamp(0, 1)
    assert torch.allclose(up.upscale(lr), expected, atol=1e-5)
