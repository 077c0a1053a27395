"""`dynsr eval` and `dynsr degrade` end to end, on real photos written to a temporary folder."""

import json
import math

import numpy as np
import pytest
import skimage.data
import torch
from PIL import Image

from dynsr.cli.main import main
from dynsr.io import load_tensor
from dynsr.metrics import evaluate_pair
from dynsr.ops import imresize, quantize


@pytest.fixture()
def hr_dir(tmp_path):
    folder = tmp_path / "hr"
    folder.mkdir()
    Image.fromarray(skimage.data.astronaut()[:101, :130]).save(folder / "astronaut.png")
    Image.fromarray(skimage.data.camera()[200:300, 100:250]).save(folder / "camera.png")
    return folder


def test_eval_bicubic_matches_direct_computation(hr_dir, tmp_path, capsys):
    out = tmp_path / "r.json"
    assert main(["eval", "--model", "bicubic", "--scale", "3", "--hr", str(hr_dir),
                 "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    assert [r["name"] for r in res["images"]] == ["astronaut", "camera"]
    for r in res["images"]:
        hr = load_tensor(hr_dir / f"{r['name']}.png").double()
        hr = hr[:, : hr.shape[1] // 3 * 3, : hr.shape[2] // 3 * 3]
        sr = imresize(quantize(imresize(hr, 1 / 3)), 3)
        ref = evaluate_pair(sr, hr, 3)
        assert r["psnr_y"] == pytest.approx(ref["psnr_y"], abs=1e-12)
        assert r["ssim_y"] == pytest.approx(ref["ssim_y"], abs=1e-12)
    assert res["psnr_y"] == pytest.approx(np.mean([r["psnr_y"] for r in res["images"]]))
    s = res["settings"]
    assert s["metrics"]["crop_border"] == 3 and s["model"] == "bicubic"
    assert s["degradation"]["scale"] == 3 and s["degradation"]["noise_sigma_255"] == 0
    table = capsys.readouterr().out
    assert "astronaut" in table and "mean" in table and "PSNR-Y" in table


def test_degrade_then_eval_lr_equals_on_the_fly(hr_dir, tmp_path):
    lr_dir = tmp_path / "lr"
    flags = ["--scale", "2", "--blur", "1.3", "--noise", "15", "--seed", "7"]
    assert main(["degrade", str(hr_dir), "-o", str(lr_dir), *flags]) == 0
    lr = load_tensor(lr_dir / "astronaut.png")
    assert lr.shape == (3, 50, 65)
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    assert main(["eval", "--hr", str(hr_dir), "--json", str(a), *flags]) == 0
    assert main(["eval", "--hr", str(hr_dir), "--lr", str(lr_dir), "--scale", "2",
                 "--json", str(b)]) == 0
    ra, rb = json.loads(a.read_text()), json.loads(b.read_text())
    assert math.isfinite(ra["psnr_y"]) and ra["psnr_y"] < 32  # blur + noise cost something
    # On the fly the noisy LR stays float and unclipped (the papers' protocol); the file is
    # that LR clamped and rounded to 8 bit.
    from dynsr.evaluation import Degradation, modcrop

    degradation = Degradation(2, blur=1.3, noise=15, seed=7)
    hr = modcrop(load_tensor(hr_dir / "astronaut.png").double(), 2)
    on_the_fly = degradation.apply(hr, "astronaut.png")
    assert on_the_fly.min() < 0 or on_the_fly.max() > 1  # unclipped noise
    assert not torch.equal(on_the_fly, quantize(on_the_fly))
    assert torch.equal(torch.round(quantize(on_the_fly.clamp(0, 1)) * 255),
                       torch.round(lr.double() * 255))
    assert ra["psnr_y"] != pytest.approx(rb["psnr_y"], abs=1e-6)
    # Without noise they are the same image.
    flags = ["--scale", "2", "--blur", "1.3"]
    assert main(["degrade", str(hr_dir), "-o", str(tmp_path / "clean"), *flags]) == 0
    assert main(["eval", "--hr", str(hr_dir), "--json", str(a), *flags]) == 0
    assert main(["eval", "--hr", str(hr_dir), "--lr", str(tmp_path / "clean"), "--scale", "2",
                 "--json", str(b)]) == 0
    ra, rb = json.loads(a.read_text()), json.loads(b.read_text())
    assert ra["psnr_y"] == pytest.approx(rb["psnr_y"], abs=1e-9)


def test_degrade_is_seeded_and_never_overwrites(hr_dir, tmp_path, capsys):
    one, two = tmp_path / "one", tmp_path / "two"
    for out, seed in ((one, "1"), (two, "1")):
        assert main(["degrade", str(hr_dir), "-o", str(out), "--scale", "2",
                     "--noise", "25", "--seed", seed]) == 0
    assert (one / "camera.png").read_bytes() == (two / "camera.png").read_bytes()
    before = (one / "camera.png").read_bytes()
    assert main(["degrade", str(hr_dir), "-o", str(one), "--scale", "2", "--noise", "25",
                 "--seed", "2"]) == 0
    assert (one / "camera.png").read_bytes() == before
    assert "exists" in capsys.readouterr().err
    assert main(["degrade", str(hr_dir), "-o", str(one), "--scale", "2", "--noise", "25",
                 "--seed", "2", "--overwrite"]) == 0
    assert (one / "camera.png").read_bytes() != before


def test_bad_image_is_one_line_and_others_still_measured(hr_dir, tmp_path, capsys):
    (hr_dir / "broken.png").write_bytes(b"not a png at all")
    out = tmp_path / "r.json"
    code = main(["eval", "--hr", str(hr_dir), "--scale", "2", "--json", str(out)])
    assert code == 1
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if "broken.png" in ln]
    assert len(lines) == 1 and "Traceback" not in err
    assert len(json.loads(out.read_text())["images"]) == 2


def test_user_errors_are_one_line(tmp_path, capsys):
    assert main(["eval", "--hr", str(tmp_path / "nowhere"), "--scale", "2"]) == 1
    assert main(["eval", "--model", "nonsense", "--hr", str(tmp_path), "--scale", "2"]) == 1
    assert main(["degrade", str(tmp_path), "-o", str(tmp_path / "o"), "--scale", "2",
                 "--kernel", str(tmp_path / "missing.npy")]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "unknown model 'nonsense'" in err
    assert len(err.strip().splitlines()) == 3


def test_given_kernel_file(hr_dir, tmp_path):
    k = np.zeros((5, 5))
    k[2, 2] = 1.0
    np.save(tmp_path / "delta.npy", k)
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    main(["eval", "--hr", str(hr_dir), "--scale", "2", "--json", str(a)])
    main(["eval", "--hr", str(hr_dir), "--scale", "2", "--json", str(b),
          "--kernel", str(tmp_path / "delta.npy")])
    assert json.loads(a.read_text())["psnr_y"] == json.loads(b.read_text())["psnr_y"]


def test_python_dash_m(hr_dir):
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "dynsr", "eval", "--hr", str(hr_dir), "--scale",
                        "4"], capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr
    assert "mean" in r.stdout


def test_overrides_may_follow_options(capsys):
    from pathlib import Path

    config = Path(__file__).resolve().parent.parent / "configs" / "example_bundled.yaml"
    assert main(["train", str(config), "--print-config", "train.iterations=777"]) == 0
    assert "iterations: 777" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["eval", "--hr", "x", "--scale", "2", "--bogus"])


def test_eval_of_a_learned_model_uses_given_or_shipped_weights(hr_dir, tmp_path, capsys,
                                                               monkeypatch):
    import torch
    from safetensors.torch import save_file

    from dynsr.models import create
    from dynsr.models.inference import upscale_batch

    monkeypatch.setenv("DYNSR_WEIGHTS_DIR", str(tmp_path / "no-weights"))
    assert main(["eval", "--model", "dyconvsr", "--hr", str(hr_dir), "--scale", "2"]) == 1
    assert "no trained weights for dyconvsr x2: give --weights FILE" in capsys.readouterr().err

    torch.manual_seed(7)
    model = create("dyconvsr", scale=2).eval()
    weights = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(weights))
    out = tmp_path / "r.json"
    assert main(["eval", "--model", "dyconvsr", "--weights", str(weights), "--hr",
                 str(hr_dir / "astronaut.png"), "--scale", "2", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["settings"]["weights"]["file"] == str(weights)
    hr = load_tensor(hr_dir / "astronaut.png").double()[:, :100, :130]
    lr = quantize(imresize(hr, 0.5))
    sr = upscale_batch(model, lr.unsqueeze(0).float())[0].double()
    assert result["psnr_y"] == pytest.approx(evaluate_pair(sr, hr, 2)["psnr_y"], abs=1e-9)


def test_random_div2krk_kernel_per_image(hr_dir, tmp_path, capsys):
    import torch
    from safetensors.torch import save_file

    from dynsr.degrade import degrade
    from dynsr.models import create
    from dynsr.models.inference import upscale_batch

    flags = ["--scale", "2", "--random-kernel", "div2krk", "--downsample", "direct",
             "--seed", "4"]
    assert main(["degrade", str(hr_dir), "-o", str(tmp_path / "lr"), *flags]) == 0
    kernels = {p.stem: np.load(p) for p in (tmp_path / "lr" / "kernels").glob("*.npy")}
    assert sorted(kernels) == ["astronaut", "camera"]
    a, c = kernels["astronaut"], kernels["camera"]
    assert a.shape == c.shape == (11, 11) and a.dtype == np.float32
    assert abs(a.sum() - 1) < 1e-5 and not np.allclose(a, c)
    # The LR file is the HR blurred by exactly that kernel and subsampled.
    hr = load_tensor(hr_dir / "astronaut.png").double()[:, :100, :130]
    expected = degrade(hr, 2, kernel=torch.from_numpy(a), downsample="direct", requantize=True)
    assert np.array_equal(np.asarray(load_tensor(tmp_path / "lr" / "astronaut.png")),
                          np.asarray(expected.float()))
    # Another seed, other kernels; eval on the fly equals eval of the written files.
    assert main(["degrade", str(hr_dir), "-o", str(tmp_path / "lr5"), *flags[:-1], "5"]) == 0
    assert not np.allclose(np.load(tmp_path / "lr5" / "kernels" / "astronaut.npy"), a)
    on_the_fly, files = tmp_path / "a.json", tmp_path / "b.json"
    assert main(["eval", "--hr", str(hr_dir), *flags, "--json", str(on_the_fly)]) == 0
    assert main(["eval", "--hr", str(hr_dir), "--lr", str(tmp_path / "lr"), "--scale", "2",
                 "--json", str(files)]) == 0
    assert json.loads(on_the_fly.read_text())["psnr_y"] == json.loads(files.read_text())["psnr_y"]
    # A non-blind model is told each image's own kernel, in its own convention (UDVD learnt
    # blur + bicubic; this LR is blur + direct subsampling).
    from dynsr.zeroshot.blind import udvd_kernel_from_direct
    torch.manual_seed(0)
    udvd = create("udvd-lite", scale=2).eval()
    save_file({k: v.contiguous() for k, v in udvd.state_dict().items()}, tmp_path / "u.st")
    out = tmp_path / "u.json"
    assert main(["eval", "--model", "udvd-lite", "--weights", str(tmp_path / "u.st"), "--hr",
                 str(hr_dir / "astronaut.png"), *flags, "--json", str(out)]) == 0
    lr = load_tensor(tmp_path / "lr" / "astronaut.png")
    told = udvd_kernel_from_direct(torch.from_numpy(a), 2).float()
    sr = upscale_batch(udvd, lr[None], blur=told, noise=0.0)[0].double()
    assert json.loads(out.read_text())["psnr_y"] == pytest.approx(
        evaluate_pair(sr, hr, 2)["psnr_y"], abs=1e-9)
    assert main(["eval", "--hr", str(hr_dir), "--scale", "3", "--random-kernel", "div2krk"]) == 1
    assert "exists for x2 and x4, not x3" in capsys.readouterr().err


def test_realistic_degradation_per_image(hr_dir, tmp_path, capsys):
    import torch

    from dynsr.degrade import realistic
    from dynsr.evaluation import Degradation

    flags = ["--scale", "2", "--realistic", "--seed", "3"]
    assert main(["degrade", str(hr_dir), "-o", str(tmp_path / "lr"), *flags]) == 0
    hr = load_tensor(hr_dir / "astronaut.png").double()[:, :100, :130]
    # Exactly dynsr.degrade.realistic with parameters drawn from the per-image seed.
    degradation = Degradation(2, seed=3, realistic=True)
    gen = torch.Generator().manual_seed(degradation.image_seed("astronaut.png"))
    params = realistic.sample_params(realistic.RealisticOptions(), gen)
    expected = realistic.apply(hr.float(), 2, params, gen)
    written = load_tensor(tmp_path / "lr" / "astronaut.png")
    assert torch.equal(written, expected)
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    assert main(["eval", "--hr", str(hr_dir), *flags, "--json", str(a)]) == 0
    assert main(["eval", "--hr", str(hr_dir), "--lr", str(tmp_path / "lr"), "--scale", "2",
                 "--json", str(b)]) == 0
    assert json.loads(a.read_text())["psnr_y"] == json.loads(b.read_text())["psnr_y"]
    assert main(["eval", "--hr", str(hr_dir), *flags, "--noise", "5"]) == 1
    assert "leave out --noise" in capsys.readouterr().err


def test_find_lr_knows_realsr_names(tmp_path):
    from dynsr.evaluation import find_lr

    for name in ("Canon_001_HR.png", "Canon_001_LR2.png", "Canon_001_LR3.png"):
        Image.fromarray(skimage.data.astronaut()[:8, :8]).save(tmp_path / name)
    assert find_lr(tmp_path, tmp_path / "Canon_001_HR.png", 3).name == "Canon_001_LR3.png"
    assert find_lr(tmp_path, tmp_path / "Canon_001_HR.png", 2).name == "Canon_001_LR2.png"
    with pytest.raises(ValueError, match="no LR image"):
        find_lr(tmp_path, tmp_path / "Canon_001_HR.png", 4)


def test_commands_keep_freed_memory_on_glibc():
    import platform
    import sys

    from dynsr.malloc import keep_freed_memory

    on_glibc = sys.platform == "linux" and platform.libc_ver()[0] == "glibc"
    assert keep_freed_memory() is on_glibc


def test_keep_freed_memory_opt_out_and_load_on_the_cpu(monkeypatch):
    import dynsr
    import dynsr.api
    from dynsr.malloc import keep_freed_memory

    monkeypatch.setenv("DYNSR_KEEP_FREED_MEMORY", "0")
    assert keep_freed_memory() is False
    calls = []
    monkeypatch.setattr(dynsr.api, "keep_freed_memory", lambda: calls.append(1) or True)
    dynsr.load("bicubic", 2, device="cpu")
    assert calls == [1]


def test_eval_ramp_of_blur_and_noise_tells_udvd_per_pixel(hr_dir, tmp_path):
    """UDVD's Table 3 degradation (width 0.2 -> 2, noise 5 -> 50, left to right): the LR is
    sharp and clean on the left, soft and noisy on the right, and UDVD told the ramps does
    better than UDVD told the mean level everywhere."""
    from dynsr.evaluation import Degradation
    from dynsr.evaluation.protocol import model_conditions

    hr = load_tensor(hr_dir / "astronaut.png").double()[:, :96, :129]
    ramp = Degradation(3, (0.2, 2.0), noise=(5.0, 50.0))
    lr = ramp.apply(hr, "astronaut.png")
    clean = Degradation(3, (0.2, 2.0)).apply(hr, "astronaut.png")
    sharp = Degradation(3, 0.2).apply(hr, "astronaut.png")
    soft = Degradation(3, 2.0).apply(hr, "astronaut.png")
    left, right = (..., slice(2, 8)), (..., slice(-8, -2))
    assert (clean[left] - sharp[left]).abs().mean() < 0.2 * (clean[left] - soft[left]).abs().mean()
    assert (clean[right] - soft[right]).abs().mean() < 0.2 * (
        clean[right] - sharp[right]).abs().mean()
    residual = (lr - clean) * 255
    assert 4 < residual[..., :4].std() < 8 and 44 < residual[..., -4:].std() < 54
    told = model_conditions("udvd-lite", ramp)(hr_dir / "astronaut.png", lr)
    assert told["blur"].shape == told["noise"].shape == (1, 1, 32, 43)
    assert told["blur"][0, 0, 0, 0] == pytest.approx(0.2 + 1.8 * 1 / 128, abs=1e-6)
    assert told["noise"][0, 0, 0, -1] == 50

    flags = ["--model", "udvd-lite", "--scale", "3", "--hr", str(hr_dir)]
    ramp_flags = ["--blur", "0.2:2", "--noise", "5:50"]
    on_the_fly = tmp_path / "on_the_fly.json"
    assert main(["eval", *flags, *ramp_flags, "--json", str(on_the_fly)]) == 0
    res = json.loads(on_the_fly.read_text())
    assert res["settings"]["degradation"]["noise_sigma_255"] == [5.0, 50.0]
    assert "rising linearly" in res["settings"]["degradation"]["blur"]
    # The same LR files, UDVD told the ramps or a constant (their mean) everywhere.
    lr_dir = tmp_path / "lr"
    assert main(["degrade", str(hr_dir), "-o", str(lr_dir), "--scale", "3", *ramp_flags]) == 0
    assert load_tensor(lr_dir / "camera.png").shape[-2:] == (33, 50)
    ramps, levels = tmp_path / "ramps.json", tmp_path / "levels.json"
    assert main(["eval", *flags, "--lr", str(lr_dir), *ramp_flags, "--json", str(ramps)]) == 0
    assert main(["eval", *flags, "--lr", str(lr_dir), "--blur", "1.1", "--noise", "27.5",
                 "--json", str(levels)]) == 0
    assert json.loads(ramps.read_text())["psnr_y"] > json.loads(levels.read_text())["psnr_y"]


def test_eval_ramp_flag_errors_in_one_line(hr_dir, capsys):
    with pytest.raises(SystemExit):
        main(["eval", "--model", "bicubic", "--scale", "2", "--hr", str(hr_dir),
              "--blur", "0.2:2:3"])
    assert "LEFT:RIGHT" in capsys.readouterr().err
    assert main(["eval", "--model", "bicubic", "--scale", "2", "--hr", str(hr_dir),
                 "--noise", "5:50", "--downsample", "direct"]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bicubic downsampling" in err[0]
