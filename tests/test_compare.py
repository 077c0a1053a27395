"""`dynsr compare`'s report folder without a browser: scores as `dynsr eval`, HR matching,
previews, the crop figure, UDVD's kernel samples, and errors that leave nothing behind.

The browser side (what a person sees and clicks) is tests/test_report_browser.py.
"""

import json

import numpy as np
import pytest
import skimage.data
import torch
from PIL import Image

from dynsr.api import load
from dynsr.cli.main import main
from dynsr.report import compare as compare_module
from dynsr.report.compare import CompareOptions, compare, find_hr, parse_models
from dynsr.report.kernels import capture_kernels, decode_taps, dynamic_blocks, encode_kernels


@pytest.fixture()
def hr_dir(tmp_path):
    folder = tmp_path / "hr"
    folder.mkdir()
    Image.fromarray(skimage.data.chelsea()[80:177, 140:239]).save(folder / "cat.png")  # odd
    Image.fromarray(skimage.data.coffee()[100:196, 200:296]).save(folder / "coffee.png")
    return folder


def _report(folder):
    return json.loads((folder / "report.json").read_text())


def _leftovers(parent):
    return [p.name for p in parent.iterdir() if p.name.startswith(".")]


def test_hr_inputs_score_as_dynsr_eval(hr_dir, tmp_path):
    out = tmp_path / "cmp"
    assert main(["compare", str(hr_dir), "--from-hr", "--models", "dyconvsr", "--precision",
                 "fp32", "--blur", "1.1", "--noise", "3", "-o", str(out)]) == 0
    pages = _report(out)["pages"]
    assert [p["name"] for p in pages] == ["cat", "coffee"]
    for model in ("bicubic", "dyconvsr"):
        scores = tmp_path / f"{model}.json"
        assert main(["eval", "--model", model, "--scale", "2", "--hr", str(hr_dir), "--blur",
                     "1.1", "--noise", "3", "--json", str(scores)]) == 0
        for row in json.loads(scores.read_text())["images"]:
            page = next(p for p in pages if p["name"] == row["name"])
            result = next(r for r in page["results"] if r["key"] == model)
            # The same protocol; compare upscales as `dynsr upscale` does (float32 images,
            # tiles, channels_last), which moves the 8-bit rounding of a few pixels.
            assert result["psnr_y"] == pytest.approx(row["psnr_y"], abs=2e-3)
            assert result["ssim_y"] == pytest.approx(row["ssim_y"], abs=2e-5)
            assert result["seconds"] > 0
    cat = pages[0]
    assert cat["sr_size"] == [98, 96] and cat["lr_size"] == [49, 48]  # modcrop of 99x97
    assert [r["key"] for r in cat["results"]] == ["lr", "bicubic", "dyconvsr", "hr"]
    assert Image.open(out / "cat" / "hr.png").size == (98, 96)
    assert (out / "index.html").is_file() and (out / "cat.html").is_file()
    assert not _leftovers(tmp_path)


def test_lr_inputs_matched_to_hr_by_name(hr_dir, tmp_path):
    lr_dir = tmp_path / "lr"
    lr_dir.mkdir()
    coffee = np.asarray(Image.open(hr_dir / "coffee.png"))
    Image.fromarray(coffee[::2, ::2]).save(lr_dir / "coffee_x2.png")
    assert find_hr(hr_dir, lr_dir / "coffee_x2.png", 2) == hr_dir / "coffee.png"
    out = tmp_path / "cmp"
    report = compare([lr_dir], parse_models("dyconvsr"), out, CompareOptions(hr_dir=hr_dir),
                     log=lambda _: None)
    page = report.pages[0]
    assert page.hr_source == str(hr_dir / "coffee.png") and page.file == "index.html"
    assert all(r.psnr_y is not None for r in page.results if r.kind == "model")
    # No HR for an LR image: said before any model runs, nothing written.
    Image.fromarray(coffee[::2, ::2]).save(lr_dir / "tea_x2.png")
    with pytest.raises(ValueError, match=r"tea_x2\.png: no HR image for it in"):
        compare([lr_dir], parse_models("dyconvsr"), tmp_path / "none",
                CompareOptions(hr_dir=hr_dir), log=lambda _: None)
    assert not (tmp_path / "none").exists() and not _leftovers(tmp_path)


def test_large_images_get_previews_and_a_crop_figure(hr_dir, tmp_path):
    out = tmp_path / "cmp"
    report = compare([hr_dir / "coffee.png"], parse_models("bicubic"), out,
                     CompareOptions(preview_size=128, figure=True, crop=(40, 30, 16)),
                     log=lambda _: None)
    lr, bicubic = report.pages[0].results
    assert (bicubic.full.width, bicubic.preview.width, bicubic.preview.height) == (192, 128, 128)
    assert Image.open(out / bicubic.preview.path).size == (128, 128)
    # The 96-pixel LR fits the view: the browser enlarges it, no copy is made.
    assert lr.preview.path == lr.full.path and lr.pixel == 2 and lr.full.width == 96
    # The crop figure's bicubic tile is that square of the full result, enlarged pixel for
    # pixel (zoom 14 = 224 / 16), and its LR tile the LR pixels under it.
    [figure] = report.pages[0].figures
    picture = np.asarray(Image.open(out / figure.path).convert("RGB"))
    full = np.asarray(Image.open(out / bicubic.full.path).convert("RGB"))
    zoom, pad = 14, 10
    tile = picture[pad:pad + 224, pad + 2 * (224 + pad):pad + 2 * (224 + pad) + 224]
    expected = full[30:46, 40:56].repeat(zoom, 0).repeat(zoom, 1)
    assert np.array_equal(tile, expected)
    lr_full = np.asarray(Image.open(out / lr.full.path).convert("RGB"))
    lr_tile = picture[pad:pad + 224, pad + 224 + pad:pad + 2 * 224 + pad]
    assert np.array_equal(lr_tile, lr_full[15:23, 20:28].repeat(2 * zoom, 0).repeat(2 * zoom, 1))


def test_udvd_kernel_samples_are_the_blocks_kernels():
    upscaler = load("udvd-lite", 2, device="cpu", precision="fp32")
    torch.manual_seed(0)
    lr = torch.rand(3, 30, 38)
    conditions = upscaler.conditions(1.0, 10.0)
    whole = capture_kernels(upscaler.model, lr, 2, conditions, name="udvd-lite", points=20)
    # Small windows (and so many window edges) give the kernels of the whole-image pass.
    windows = capture_kernels(upscaler.model, lr, 2, conditions, name="udvd-lite", points=20,
                              window=8)
    for a, b in zip(whole.kernels, windows.kernels, strict=True):
        assert torch.allclose(a, b, atol=1e-5)
    # The sampled kernel is the one the block applied at that output pixel.
    blocks = dynamic_blocks(upscaler.model)
    seen = []
    hooks = [b.register_forward_hook(
        lambda m, args, out: seen.append(m.predict_kernels(m.joint_features(*args))[0]))
        for b in blocks]
    with torch.no_grad():
        upscaler.model(lr[None], **conditions)
    for h in hooks:
        h.remove()
    i, j = 5, 13
    y, x = whole.rows[i], whole.cols[j]
    up = seen[0].view(25, 4, 30, 38)[:, (y % 2) * 2 + x % 2, y // 2, x // 2]
    assert torch.equal(whole.kernels[0][i, j].ravel(), up)
    assert torch.equal(whole.kernels[2][i, j].ravel(), seen[2][:, y, x])
    assert [b["kind"] for b in whole.blocks] == ["U", "D", "D"]
    decoded = decode_taps(encode_kernels(whole))
    for a, b in zip(decoded, whole.kernels, strict=True):
        assert np.abs(a - b.numpy()).max() <= b.abs().max().item() / 127 / 2 + 1e-6


def test_kernels_file_per_udvd_result(tmp_path):
    photo = tmp_path / "cat.png"
    Image.fromarray(skimage.data.chelsea()[100:132, 150:182]).save(photo)
    out = tmp_path / "cmp"
    assert main(["compare", str(photo), "--models", "udvd-lite,dyconvsr", "--kernels",
                 "--blur", "1.2", "--noise", "5", "-o", str(out)]) == 0
    results = _report(out)["pages"][0]["results"]
    assert [r["kernels"] for r in results] == [None, None, "cat/udvd-lite.kernels.js", None]
    size = (out / "cat" / "udvd-lite.kernels.js").stat().st_size
    assert size < 150_000
    assert '<script src="cat/udvd-lite.kernels.js"></script>' in (out / "index.html").read_text()


def test_bad_inputs_are_one_line_and_leave_nothing(tmp_path, capsys, hr_dir):
    out = tmp_path / "cmp"
    cases = [
        (["compare", str(hr_dir), "--models", "dyconvsr,nope", "-o", str(out)],
         "unknown model 'nope'"),
        (["compare", str(tmp_path / "missing.png"), "--models", "dyconvsr", "-o", str(out)],
         "missing.png: file or folder does not exist"),
        (["compare", str(hr_dir), "--models", "udvd", "-o", str(out)],
         "udvd: no trained weights for x2"),
        (["compare", str(hr_dir), "--models", "dyconvsr", "--blur", "1", "-o", str(out)],
         "none of the models uses them"),
        (["compare", str(hr_dir), "--models", "dyconvsr@nothere.safetensors", "-o", str(out)],
         "nothere.safetensors: weights file does not exist"),
    ]
    fake = tmp_path / "notes.png"
    fake.write_text("not an image")
    cases.append((["compare", str(fake), "--models", "bicubic", "-o", str(out)],
                  f"{fake}: "))
    for argv, message in cases:
        assert main(argv) == 1, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert message in err[-1] and "Traceback" not in "\n".join(err), (argv, err)
        assert not out.exists() and not _leftovers(tmp_path)

    # One unreadable image among good ones: left out and listed; the others are compared.
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    (mixed / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    (mixed / "coffee.png").write_bytes((hr_dir / "coffee.png").read_bytes())
    assert main(["compare", str(mixed), "--models", "bicubic", "-o", str(out)]) == 1
    report = _report(out)
    assert [p["name"] for p in report["pages"]] == ["coffee"]
    assert report["failures"][0].startswith(f"{mixed / 'broken.png'}: ")
    assert "broken.png" in (out / "index.html").read_text()  # the index says what is missing


def test_existing_output_is_kept_unless_overwrite_and_failures_leave_it(hr_dir, tmp_path,
                                                                        capsys, monkeypatch):
    out = tmp_path / "cmp"
    argv = ["compare", str(hr_dir / "cat.png"), "--models", "bicubic", "-o", str(out)]
    assert main(argv) == 0
    first = (out / "index.html").read_text()
    assert main(argv) == 1
    assert "use --overwrite" in capsys.readouterr().err
    # A failure while writing the new report leaves the old one whole, and no temporary
    # folder.
    def fail(*args, **kwargs):
        raise OSError("disk full")
    monkeypatch.setattr(compare_module, "write_site", fail)
    assert main([*argv, "--overwrite"]) == 1
    assert (out / "index.html").read_text() == first and not _leftovers(tmp_path)
    monkeypatch.undo()
    assert main([*argv, "--overwrite", "--models", "bicubic,dyconvsr"]) == 0
    assert [r["key"] for r in _report(out)["pages"][0]["results"]] == ["lr", "bicubic",
                                                                      "dyconvsr"]
    assert not _leftovers(tmp_path)


def test_blind_udvd_shows_the_estimated_kernel_and_noise(hr_dir, tmp_path):
    # HR inputs made noisy (sigma 20): blind UDVD is not told that and reads it off the LR.
    out = tmp_path / "cmp"
    assert main(["compare", str(hr_dir / "coffee.png"), "--from-hr", "--models",
                 "udvd-lite,dyconvsr", "--noise", "20", "--blind", "--precision", "fp32",
                 "-o", str(out)]) == 0
    results = _report(out)["pages"][0]["results"]
    udvd = next(r for r in results if r["key"] == "udvd-lite")
    other = next(r for r in results if r["key"] == "dyconvsr")
    captions = [f["caption"] for f in udvd["figures"]]
    assert len(captions) == 2 and "estimated kernel" in captions[0]
    assert "noise" in captions[1] and other["figures"] == []
    sigma = float(captions[1].split("σ ")[1].split()[0])
    assert sigma == pytest.approx(20.0, abs=5.0)
    for figure in udvd["figures"]:
        assert Image.open(out / figure["path"]).size[0] > 0
    assert main(["compare", str(hr_dir / "coffee.png"), "--models", "udvd-lite", "--blind",
                 "--noise", "5", "-o", str(tmp_path / "bad")]) == 1
