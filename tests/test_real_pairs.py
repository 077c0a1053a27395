"""Real LR/HR pairs whose LR is on the HR grid (RealSR, City100): the ``-real`` models, their
weights at every scale, the pair data set, Y-channel training, ``dynsr eval`` without
``--scale`` (and ``--downscale-lr``), ``dynsr upscale`` with the pre-upscaling.

Every image is made here: none of City100 is needed."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import skimage.data
import torch
from safetensors.torch import save_file

import dynsr
from dynsr.cli.main import main
from dynsr.evaluation import Degradation, evaluate_images, load_evaluated_model, modcrop
from dynsr.io import list_images, load_tensor, write_image
from dynsr.metrics import evaluate_pair
from dynsr.models import create
from dynsr.ops import imresize, quantize
from dynsr.ops.color import rgb_to_ycbcr, ycbcr_to_rgb
from dynsr.train.config import config_from_dict
from dynsr.train.datasets import build_dataset
from dynsr.train.engine import train
from dynsr.train.losses import pixel_loss
from dynsr.upscale.manifest import find_weights
from dynsr.upscale.weights import weights_model_config

REAL = ("ddet-real", "kpn7-real", "kpn7-pr-real", "kpn7-pr-cdm-real", "ddet-rgb-real")
SMALL = {"num_blocks": 1, "channels": 16}


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


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


# --------------------------------------------------------------------------------------------
# pairs on the HR grid: images made here


def _rgb(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1).double() / 255


def _grid_lr(hr: torch.Tensor, zoom: int = 3) -> torch.Tensor:
    """A real-like LR on the HR grid: down by ``zoom``, 8 bit, bicubic back to the HR size."""
    small = quantize(imresize(hr, 1 / zoom))
    return quantize(imresize(small, size=tuple(hr.shape[-2:])))


SOURCES = {  # distinct photos, not multiples of 4 or 3 in size
    "001": skimage.data.astronaut()[30:131, 150:253],
    "002": skimage.data.coffee()[100:197, 120:230],
    "003": skimage.data.chelsea()[40:140, 90:199],
}


@pytest.fixture(scope="module")
def pairs(tmp_path_factory) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Three pairs written in the three layouts; returns name → (HR, LR) as written."""
    root = tmp_path_factory.mktemp("pairs")
    made = {}
    for layout in ("folders", "city100", "realsr"):
        (root / layout).mkdir()
    for folder in ("HR", "LR"):
        (root / "folders" / folder).mkdir()
    for name, array in SOURCES.items():
        hr = _rgb(array)
        lr = _grid_lr(hr)
        made[name] = (hr, lr)
        for path, image in ((root / "folders" / "HR" / f"{name}.png", hr),
                            (root / "folders" / "LR" / f"{name}.png", lr),
                            (root / "city100" / f"{name}H.png", hr),
                            (root / "city100" / f"{name}L.png", lr),
                            (root / "realsr" / f"Cam_{name}_HR.png", hr),
                            (root / "realsr" / f"Cam_{name}_LR3.png", lr)):
            write_image(path, image)
    made["root"] = root
    return made


def _layout_cfg(root, layout: str, **extra) -> dict:
    if layout == "folders":
        return {"type": "paired_realsr", "hr": str(root / "folders" / "HR"),
                "lr": str(root / "folders" / "LR"), **extra}
    if layout == "realsr":
        return {"type": "paired_realsr", "paths": str(root / "realsr"), "realsr_scale": 3,
                **extra}
    return {"type": "paired_realsr", "paths": str(root / layout), **extra}


def _position(patch: torch.Tensor, image: torch.Tensor) -> tuple[int, int]:
    size = patch.shape[-1]
    hits = [(top, left) for top in range(image.shape[-2] - size + 1)
            for left in range(image.shape[-1] - size + 1)
            if torch.equal(image[:, top:top + size, left:left + size], patch)]
    assert len(hits) == 1, f"patch found {len(hits)} times"
    return hits[0]


@pytest.mark.parametrize("layout", ["folders", "city100", "realsr"])
def test_pairs_are_matched_and_crops_aligned(pairs, layout):
    ds = build_dataset(_layout_cfg(pairs["root"], layout, patch_size=40, augment=False),
                       scale=1, seed=3)
    assert len(ds) == 3
    names = sorted(SOURCES)
    tops = set()
    for n in range(9):
        sample = ds.sample(n)
        hr, lr = pairs[names[ds.image_index(n)]]
        assert bool(sample["prescaled"])
        assert sample["hr"].shape == sample["lr"].shape == (3, 40, 40)
        top, left = _position(sample["hr"].double(), hr.float().double())
        tops.add(top)
        # the LR crop is its own pair's LR at the HR crop's place
        assert torch.equal(sample["lr"], lr[:, top:top + 40, left:left + 40].float())
    assert len(tops) > 1  # random crops


def _symmetries(x: torch.Tensor) -> list[torch.Tensor]:
    out = []
    for hflip in (False, True):
        for vflip in (False, True):
            for transpose in (False, True):
                y = x.flip(-1) if hflip else x
                y = y.flip(-2) if vflip else y
                out.append(y.transpose(-2, -1) if transpose else y)
    return out


def test_augmentation_is_one_of_8_and_the_same_for_lr_and_hr(pairs):
    root = pairs["root"]
    plain = build_dataset(_layout_cfg(root, "folders", patch_size=40, augment=False), 1, 5)
    augmented = build_dataset(_layout_cfg(root, "folders", patch_size=40), 1, 5)
    used = set()
    for n in range(24):
        a, p = augmented.sample(n), plain.sample(n)  # crops drawn before the flips
        hr_ops = [i for i, t in enumerate(_symmetries(p["hr"])) if torch.equal(t, a["hr"])]
        lr_ops = [i for i, t in enumerate(_symmetries(p["lr"])) if torch.equal(t, a["lr"])]
        assert set(hr_ops) & set(lr_ops), f"sample {n}: LR and HR flipped differently"
        used.update(hr_ops)
    assert len(used) >= 5  # the 8 symmetries are drawn


def test_pair_samples_are_deterministic(pairs):
    cfg = _layout_cfg(pairs["root"], "city100", patch_size=32)
    ds, fresh, other = (build_dataset(cfg, 1, 7), build_dataset(cfg, 1, 7),
                        build_dataset(cfg, 1, 8))
    for n in (0, 4, 1000):
        a, b = ds.sample(n), fresh.sample(n)
        assert torch.equal(a["hr"], b["hr"]) and torch.equal(a["lr"], b["lr"])
        assert torch.equal(a["lr"], ds.sample(n)["lr"])
        assert not torch.equal(a["hr"], other.sample(n)["hr"])


def test_pair_errors_name_the_file_or_key(pairs, tmp_path):
    root = pairs["root"]
    (tmp_path / "HR").mkdir()
    (tmp_path / "LR").mkdir()
    write_image(tmp_path / "HR" / "a.png", pairs["001"][0])
    write_image(tmp_path / "LR" / "a.png", pairs["001"][0][:, :50])  # not on the HR grid
    with pytest.raises(ValueError, match=r"LR.a\.png: the LR of a pair is on the HR grid"):
        build_dataset(_layout_cfg(tmp_path, "folders") | {"hr": str(tmp_path / "HR"),
                                                          "lr": str(tmp_path / "LR")}, 1, 0)
    write_image(tmp_path / "HR" / "b.png", pairs["001"][0])
    with pytest.raises(ValueError, match=r"HR.b\.png: no LR image of the same name"):
        build_dataset({"type": "paired_realsr", "hr": str(tmp_path / "HR"),
                       "lr": str(tmp_path / "LR")}, 1, 0)
    both = _layout_cfg(root, "folders") | {"paths": str(root / "city100")}
    with pytest.raises(ValueError, match="give paths .* or hr and lr"):
        build_dataset(both, 1, 0)
    with pytest.raises(ValueError, match=r"NAME_LR1: set data.train.realsr_scale"), \
            pytest.warns(UserWarning, match="Cam_001_HR.png"):
        build_dataset({"type": "paired_realsr", "paths": str(root / "realsr")}, 1, 0)
    with pytest.raises(ValueError, match="scale 1 trains on pairs"):
        build_dataset({"type": "hr_folder", "paths": str(root / "folders" / "HR")}, 1, 0)


# --------------------------------------------------------------------------------------------
# Y-channel training


def test_y_loss_ignores_the_chroma_a_y_model_passes_through():
    hr = _rgb(SOURCES["001"]).float()[None]
    ycbcr = rgb_to_ycbcr(hr)
    shifted = ycbcr_to_rgb(torch.cat([ycbcr[:, :1], ycbcr[:, 1:] + 6.0], dim=1))
    y_l1, rgb_l1 = pixel_loss("l1", "y"), pixel_loss("l1")
    assert float(y_l1(shifted, hr)) < 1e-6 < 1e-2 < float(rgb_l1(shifted, hr))
    darker = (hr - 0.1).clamp(0, 1)
    expected = (rgb_to_ycbcr(darker)[:, :1] - ycbcr[:, :1]).abs().mean() / 255
    assert torch.allclose(y_l1(darker, hr), expected, rtol=1e-5)
    with pytest.raises(ValueError, match="loss channels must be one of rgb, y"):
        pixel_loss("l1", "lab")


def test_ddet_real_trains_on_y_at_scale_1_with_pair_validation(pairs, tmp_path):
    root = pairs["root"] / "folders"
    cfg = {
        "name": "tiny-real",
        "model": {"name": "ddet-real", "scale": 1, "config": {"num_blocks": 1, "channels": 16}},
        "data": {"train": {"type": "paired_realsr", "hr": str(root / "HR"),
                           "lr": str(root / "LR"), "patch_size": 32},
                 "val": {"hr": str(root / "HR"), "lr": str(root / "LR"), "every": 3}},
        "train": {"iterations": 3, "batch_size": 2, "loss_channels": "y", "threads": 1},
        "log": {"every": 1, "progress": "never"},
    }
    result = train(cfg, tmp_path / "run")
    assert result.completed and math.isfinite(result.last_loss)
    # Validation scored the pairs as dynsr eval does: the LR as it is into the x1 model,
    # crop 8 on the HR grid.
    model, _ = load_evaluated_model("ddet-real", 1, tmp_path / "run" / "model.safetensors")
    scores = evaluate_images(model.eval(), list_images(root / "HR"), Degradation(1),
                             lr_dir=root / "LR", crop=8).mean()
    assert result.best_psnr_y == pytest.approx(scores["psnr_y"], abs=1e-9)
    with pytest.raises(ValueError, match="data.val.lr: required at scale 1"):
        config_from_dict({**cfg, "data": {**cfg["data"], "val": {"hr": str(root / "HR")}}})


# --------------------------------------------------------------------------------------------
# dynsr eval on pairs on the HR grid, dynsr score for the LR itself, dynsr upscale


def _mean_scores(pairs_of_images, crop: int) -> dict[str, float]:
    rows = [evaluate_pair(sr, hr, crop) for sr, hr in pairs_of_images]
    return {k: sum(r[k] for r in rows) / len(rows) for k in ("psnr_y", "ssim_y")}


def test_eval_without_scale_feeds_the_lr_as_it_is(pairs, tmp_path, capsys):
    root = pairs["root"] / "folders"
    model = _seeded("ddet-real", 1, **SMALL)
    weights = tmp_path / "ddet-real_x1.safetensors"
    _weights_file(weights, "ddet-real", 1, model)
    out = tmp_path / "ddet.json"
    assert main(["eval", "--model", "ddet-real", "--weights", str(weights), "--hr",
                 str(root / "HR"), "--lr", str(root / "LR"), "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    with torch.no_grad():
        expected = _mean_scores([(model(lr.float()[None])[0].double(), hr)
                                 for hr, lr in (pairs[n] for n in sorted(SOURCES))], crop=8)
    assert result["psnr_y"] == pytest.approx(expected["psnr_y"], abs=1e-6)
    assert result["ssim_y"] == pytest.approx(expected["ssim_y"], abs=1e-8)
    settings = result["settings"]
    assert settings["metrics"]["crop_border"] == 8  # the default on pairs on the HR grid
    assert settings["pairs"]["lr_downscale"] == 1 and "as it is" in settings["pairs"]["model_input"]
    assert "x1, LR on the HR grid as it is" in capsys.readouterr().out


def test_the_lr_as_it_is_row(pairs, tmp_path):
    root = pairs["root"] / "folders"
    out = tmp_path / "lr.json"
    assert main(["score", str(root / "LR"), str(root / "HR"), "--crop", "8", "--json",
                 str(out)]) == 0
    expected = _mean_scores([(lr, hr) for hr, lr in (pairs[n] for n in sorted(SOURCES))], 8)
    assert json.loads(out.read_text())["psnr_y"] == pytest.approx(expected["psnr_y"], abs=1e-9)


def test_downscale_lr_gives_an_xs_model_the_lr_bicubic_downscaled(pairs, tmp_path):
    root = pairs["root"] / "folders"
    out = tmp_path / "bicubic.json"
    assert main(["eval", "--model", "bicubic", "--downscale-lr", "3", "--hr", str(root / "HR"),
                 "--lr", str(root / "LR"), "--crop", "8", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    made = []
    for name in sorted(SOURCES):
        hr, lr = pairs[name]
        hr, lr = modcrop(hr, 3), modcrop(lr, 3)  # 101x103 -> 99x102 ...
        made.append((imresize(quantize(imresize(lr, 1 / 3)), 3), hr))
    assert result["psnr_y"] == pytest.approx(_mean_scores(made, 8)["psnr_y"], abs=1e-9)
    assert result["settings"]["pairs"]["lr_downscale"] == 3
    # The round trip loses detail: it scores below the LR as it is.
    as_is = _mean_scores([(lr, hr) for hr, lr in (pairs[n] for n in sorted(SOURCES))], 8)
    assert result["psnr_y"] < as_is["psnr_y"]


@pytest.mark.parametrize("argv,message", [
    (["--model", "dyconvsr"], "give --downscale-lr S"),
    (["--model", "bicubic", "--scale", "2", "--downscale-lr", "3"], "give one of them"),
    (["--model", "dualsr"], "dualsr trains on LR-size images"),
])
def test_eval_pair_flag_errors_are_one_line(pairs, tmp_path, capsys, argv, message):
    root = pairs["root"] / "folders"
    out = tmp_path / "x.json"
    assert main(["eval", *argv, "--hr", str(root / "HR"), "--lr", str(root / "LR"),
                 "--json", str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and not out.exists()


def test_eval_without_scale_names_an_lr_not_on_the_hr_grid(pairs, tmp_path, capsys):
    (tmp_path / "HR").mkdir()
    (tmp_path / "LR").mkdir()
    hr = pairs["001"][0]
    write_image(tmp_path / "HR" / "a.png", hr)
    write_image(tmp_path / "LR" / "a.png", imresize(hr, 0.5).clamp(0, 1))
    assert main(["eval", "--model", "bicubic", "--downscale-lr", "2", "--hr",
                 str(tmp_path / "HR"), "--lr", str(tmp_path / "LR")]) == 1
    err = capsys.readouterr().err
    assert "a.png: 52x51, not on the grid of a.png (103x101)" in err


def test_upscale_pre_upscales_by_the_scale_then_restores(pairs, tmp_path):
    model = _seeded("kpn7-real", 1, **SMALL)
    weights = tmp_path / "kpn7-real_x1.safetensors"
    _weights_file(weights, "kpn7-real", 1, model)
    photo = pairs["002"][0]
    write_image(tmp_path / "photo.png", photo)
    assert main(["upscale", str(tmp_path / "photo.png"), "--model", "kpn7-real", "--scale",
                 "2", "--weights", str(weights), "--precision", "fp32", "-o",
                 str(tmp_path / "out")]) == 0
    result = load_tensor(tmp_path / "out" / "photo_x2.png")
    with torch.no_grad():
        expected = quantize(model(imresize(photo.float()[None], 2))[0].double())
    assert result.shape == (3, 2 * photo.shape[1], 2 * photo.shape[2])
    # One level at most (float32 rounding ties); the levels read back are float32, whose
    # k/255 is off by up to ~3e-8 (seen: 1/255 + 3.7e-9 on an AMD EPYC).
    assert (result - expected).abs().max() <= 1 / 255 + 1e-7
    assert (result - expected).abs().mean() < 1e-3


def test_upscale_at_scale_1_restores_a_photo_at_its_own_size(pairs, tmp_path, capsys):
    model = _seeded("kpn7-real", 1, **SMALL)
    weights = tmp_path / "kpn7-real_x1.safetensors"
    _weights_file(weights, "kpn7-real", 1, model)
    photo = pairs["002"][0]
    write_image(tmp_path / "photo.png", photo)
    assert main(["upscale", str(tmp_path / "photo.png"), "--model", "kpn7-real", "--scale",
                 "1", "--weights", str(weights), "--precision", "fp32", "-o",
                 str(tmp_path / "out")]) == 0
    result = load_tensor(tmp_path / "out" / "photo_x1.png")
    with torch.no_grad():
        expected = quantize(model(photo.float()[None])[0].double())
    assert result.shape == photo.shape
    assert (result - expected).abs().max() <= 1 / 255 + 1e-7  # as above
    # A model without x1 says so in one line and writes nothing.
    assert main(["upscale", str(tmp_path / "photo.png"), "--model", "bicubic", "--scale", "1",
                 "-o", str(tmp_path / "none")]) != 0
    assert "supports scales 2, 3, 4, not 1" in capsys.readouterr().err
    assert not (tmp_path / "none").exists() or not any((tmp_path / "none").iterdir())
