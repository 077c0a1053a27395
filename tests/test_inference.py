"""The one calling convention every command uses: any model, RGB or gray, fp32 or bf16."""

import json

import pytest
import skimage.data
import torch

from dynsr.cli.main import main
from dynsr.metrics import evaluate_pair
from dynsr.models import available, create
from dynsr.models.inference import prepare_model, upscale_batch
from dynsr.ops import imresize, quantize

LEARNED = [s for s in available() if s.name != "bicubic"]


def _conditions(spec) -> dict:
    return {"blur": 1.3, "noise": 15.0} if spec.needs_degradation else {}


def _photo_pair(scale: int, size: int = 48) -> tuple[torch.Tensor, torch.Tensor]:
    img = torch.from_numpy(skimage.data.astronaut()[80:80 + size * scale, 200:200 + size * scale])
    hr = img.permute(2, 0, 1).double() / 255
    return quantize(imresize(hr, 1 / scale)).float()[None], hr


def test_every_registered_model_is_listed():
    names = {s.name for s in available()}
    assert {"bicubic", "ddet", "ddet-release", "kpn7", "udvd", "udvd-lite", "dyconvsr"} <= names


@pytest.mark.parametrize("spec", LEARNED, ids=lambda s: s.name)
def test_bf16_channels_last_within_0_1_db_of_fp32(spec):
    # bf16 autocast + channels_last is the fast CPU path; on a real photo its PSNR must stay
    # within 0.1 dB of the fp32 result of the same (seeded, untrained) network.
    torch.manual_seed(0)
    model = create(spec.name, scale=2)
    lr, hr = _photo_pair(2)
    fp32 = upscale_batch(prepare_model(model), lr, **_conditions(spec))[0]
    fast = upscale_batch(prepare_model(model, channels_last=True), lr, precision="bf16",
                         channels_last=True, **_conditions(spec))[0]
    assert fast.dtype == torch.float32 and torch.isfinite(fast).all()
    p32 = evaluate_pair(fp32.double(), hr, 2)["psnr_y"]
    p16 = evaluate_pair(fast.double(), hr, 2)["psnr_y"]
    assert abs(p32 - p16) < 0.1, (p32, p16)


@pytest.mark.parametrize("spec", LEARNED, ids=lambda s: s.name)
def test_grayscale_in_grayscale_out(spec):
    torch.manual_seed(0)
    model = prepare_model(create(spec.name, scale=3))
    gray = torch.rand(1, 1, 13, 11)
    out = upscale_batch(model, gray, **_conditions(spec))
    assert out.shape == (1, 1, 39, 33)


def test_fp16_refused_on_cpu():
    model = prepare_model(create("bicubic", scale=2))
    with pytest.raises(ValueError, match="fp16 is not supported on the CPU"):
        upscale_batch(model, torch.rand(1, 3, 8, 8), precision="fp16")


def test_models_command_json(capsys):
    assert main(["models", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["models"]
    by_key = {(r["name"], r["scale"]): r for r in rows}
    for spec in available():
        for scale in spec.scales:
            row = by_key[(spec.name, scale)]
            assert row["gflops_256"] > 0
            assert (row["parameters"] > 0) == (spec.name != "bicubic")
