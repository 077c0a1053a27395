"""`dynsr score`: existing SR results scored by dynsr eval's protocol, matched by name."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import skimage.data
from PIL import Image

from dynsr.cli.main import main
from dynsr.evaluation import match_by_name, modcrop
from dynsr.io import load_tensor, write_image
from dynsr.metrics import evaluate_pair
from dynsr.ops import imresize, quantize


@pytest.fixture()
def hr_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "HR"
    folder.mkdir()
    # Odd sizes: --scale crops them to a multiple of the scale, as benchmarks do.
    Image.fromarray(skimage.data.astronaut()[100:171, 150:233]).save(folder / "astronaut.png")
    Image.fromarray(skimage.data.coffee()[50:111, 200:281]).save(folder / "coffee.png")
    return folder


def _bicubic_sr(hr_path: Path, scale: int):
    hr = modcrop(load_tensor(hr_path).double(), scale)
    return quantize(imresize(quantize(imresize(hr, 1 / scale)), scale)), hr


def test_score_equals_eval_on_the_saved_sr(hr_dir, tmp_path, capsys):
    # dynsr eval's own SR images, saved and scored again: the same numbers.
    assert main(["eval", "--model", "bicubic", "--scale", "2", "--hr", str(hr_dir),
                 "--save-sr", str(tmp_path / "SR"), "--json", str(tmp_path / "e.json")]) == 0
    for path in (tmp_path / "SR").iterdir():  # another tool's names
        path.rename(path.with_name(f"{path.stem}_x2_bicubic.png"))
    assert main(["score", str(tmp_path / "SR"), str(hr_dir), "--scale", "2",
                 "--json", str(tmp_path / "s.json")]) == 0
    evaluated = json.loads((tmp_path / "e.json").read_text())
    scored = json.loads((tmp_path / "s.json").read_text())
    assert scored["psnr_y"] == pytest.approx(evaluated["psnr_y"], abs=1e-12)
    assert scored["ssim_y"] == pytest.approx(evaluated["ssim_y"], abs=1e-12)
    assert [r["name"] for r in scored["images"]] == ["astronaut", "coffee"]
    assert scored["images"][0]["sr"].endswith("astronaut_x2_bicubic.png")
    settings = scored["settings"]
    assert settings["metrics"]["crop_border"] == 2 and settings["scale"] == 2
    assert settings["failed_images"] == 0 and "cpu" in settings and "date" in settings
    assert "mean" in capsys.readouterr().out


def test_crop_is_given_or_the_scale(hr_dir, tmp_path, capsys):
    sr_dir = tmp_path / "SR"
    sr, hr = _bicubic_sr(hr_dir / "astronaut.png", 3)
    write_image(sr_dir / "astronaut.png", sr)
    for flags, crop in ((["--scale", "3"], 3), (["--scale", "3", "--crop", "0"], 0),
                        (["--scale", "3", "--crop", "7"], 7)):
        out = tmp_path / f"{crop}.json"
        assert main(["score", str(sr_dir), str(hr_dir / "astronaut.png"), *flags,
                     "--json", str(out)]) == 0
        assert json.loads(out.read_text())["psnr_y"] == pytest.approx(
            evaluate_pair(sr, hr, crop)["psnr_y"], abs=1e-12)
    capsys.readouterr()
    # No crop and no scale: the numbers would not be comparable, so nothing is guessed.
    assert main(["score", str(sr_dir), str(hr_dir)]) == 1
    assert capsys.readouterr().err.strip() == (
        "dynsr score: error: give --crop N (the scale, by convention) or --scale S")
    # Without --scale an HR of another size is not cropped: a clear line, nothing written.
    out = tmp_path / "none.json"
    assert main(["score", str(sr_dir), str(hr_dir), "--crop", "3", "--json", str(out)]) == 1
    err = capsys.readouterr().err
    assert "does not match HR" in err and "give the scale" in err and not out.exists()


def test_names_are_matched_to_the_longest_hr_name(tmp_path):
    hr = [tmp_path / "img.png", tmp_path / "img_1.png", tmp_path / "baby.png",
          tmp_path / "bird.png", tmp_path / "head.png"]
    sr = [tmp_path / "sr" / n for n in ("img_x2.png", "img_1_x2.png", "baby.png",
                                        "baby_x2.png", "bird_a.png", "bird_b.png",
                                        "head2.png", "other.png")]
    pairs, problems = match_by_name(sr, hr)
    assert [(h.stem, s.stem) for h, s in pairs] == [
        ("img", "img_x2"), ("img_1", "img_1_x2"), ("baby", "baby")]  # the exact name wins
    assert problems == [f"{tmp_path / 'bird.png'}: several SR images named after it "
                        "(bird_a.png, bird_b.png)",
                        f"{tmp_path / 'head.png'}: no SR image named after it"]
    with pytest.raises(ValueError, match="HR images share names"):
        match_by_name(sr, [tmp_path / "a" / "x.png", tmp_path / "b" / "x.png"])


def test_bad_and_missing_files_are_one_line_each_and_the_rest_is_scored(hr_dir, tmp_path,
                                                                        capsys):
    sr_dir = tmp_path / "SR"
    sr, hr = _bicubic_sr(hr_dir / "astronaut.png", 2)
    write_image(sr_dir / "astronaut.png", sr)
    (sr_dir / "coffee.png").write_bytes(b"not an image")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(hr_dir / "lonely.png")
    out = tmp_path / "s.json"
    assert main(["score", str(sr_dir), str(hr_dir), "--scale", "2", "--json", str(out)]) == 1
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 2
    assert err[0] == f"dynsr score: skipped: {hr_dir / 'lonely.png'}: no SR image named after it"
    assert err[1].startswith(f"dynsr score: skipped: {sr_dir / 'coffee.png'}: ")
    result = json.loads(out.read_text())
    assert [r["name"] for r in result["images"]] == ["astronaut"]
    assert result["settings"]["failed_images"] == 2
    assert result["psnr_y"] == pytest.approx(evaluate_pair(sr, hr, 2)["psnr_y"], abs=1e-12)
    # Nothing to score: one line, no file.
    assert main(["score", str(tmp_path / "missing"), str(hr_dir), "--scale", "2"]) == 1
    assert "missing" in capsys.readouterr().err


def test_sixteen_bit_sr_is_rounded_to_eight_bit_as_eval_does(hr_dir, tmp_path):
    sr, hr = _bicubic_sr(hr_dir / "coffee.png", 2)
    noisy = (sr + 0.001).clamp(0, 1)  # between 8-bit levels: 16 bit keeps it, scoring rounds
    write_image(tmp_path / "SR" / "coffee.png", noisy, bit_depth=16)
    out = tmp_path / "s.json"
    assert main(["score", str(tmp_path / "SR"), str(hr_dir / "coffee.png"), "--scale", "2",
                 "--json", str(out)]) == 0
    expected = evaluate_pair(load_tensor(tmp_path / "SR" / "coffee.png").double(), hr, 2)
    assert json.loads(out.read_text())["psnr_y"] == pytest.approx(expected["psnr_y"],
                                                                  abs=1e-12)
