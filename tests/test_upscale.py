"""dynsr upscale and dynsr.load: tiling, every kind of image, weights, bad input."""

from __future__ import annotations

import hashlib
import io
import json
import math
import warnings

import numpy as np
import pytest
import torch
from PIL import Image, ImageCms
from safetensors.torch import save_file
from skimage import data

import dynsr
from dynsr.cli.main import main
from dynsr.io import read_image, write_image
from dynsr.models import available, create
from dynsr.ops.resize import imresize
from dynsr.upscale.tiling import (
    RECEPTIVE_RADIUS,
    Tiling,
    default_overlap,
    upscale_tiled,
    upscale_with_retry,
)
from dynsr.upscale.weights import WeightsError

# A training run shares this machine: stay on one thread.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _no_shipped_weights(tmp_path_factory, monkeypatch):
    # Tests of untrained behaviour must not change when real weights land in the package.
    monkeypatch.setenv("DYNSR_WEIGHTS_DIR", str(tmp_path_factory.mktemp("no-weights")))


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float(((a.double() - b.double()) ** 2).mean())
    return math.inf if mse == 0 else 10 * math.log10(1 / mse)


def _photo_pair(size: int, scale: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """(LR, HR) float32 from scikit-image's astronaut: HR a crop, LR its bicubic downscale."""
    photo = torch.from_numpy(data.astronaut()).permute(2, 0, 1).float() / 255  # 512 x 512
    assert 60 + size * scale <= 512
    hr = photo[:, 40:40 + size * scale, 60:60 + size * scale].contiguous()
    lr = imresize(hr.double(), 1 / scale).clamp(0, 1).float()
    return lr, hr


def _seeded(name: str, scale: int = 2) -> torch.nn.Module:
    torch.manual_seed(0)
    return create(name, scale=scale).eval()


def _conditions(name: str) -> dict:
    return {"noise": 0.0} if name.startswith("udvd") else {}


# ---------------------------------------------------------------------------------------------
# tiling


@pytest.mark.parametrize("length,tile,overlap", [(100, 40, 12), (97, 24, 8), (300, 64, 44),
                                                 (41, 24, 8), (24, 24, 8), (7, 24, 8)])
def test_tile_weights_are_a_partition_of_unity(length, tile, overlap):
    tiling = Tiling(length, tile, overlap)
    scale = 3
    total = torch.zeros(scale * length, dtype=torch.float64)
    for index, (start, end) in enumerate(tiling.spans):
        assert start % 4 == 0 and end <= length
        total[scale * start:scale * end] += tiling.weights(index, scale)
    assert torch.allclose(total, torch.ones_like(total), atol=1e-6)
    assert tiling.spans[0][0] == 0 and tiling.spans[-1][1] == length


def test_default_overlap_covers_the_receptive_radius():
    for name, radius in RECEPTIVE_RADIUS.items():
        assert default_overlap(name) % 4 == 0 and default_overlap(name) >= 2 * radius + 16
    assert default_overlap("a-model-added-later") == 80  # FALLBACK_RADIUS 32: 2·32 + 16


@pytest.mark.parametrize("name,scale", [(spec.name, 2) for spec in available()]
                         + [("bicubic", 4), ("dyconvsr", 4), ("udvd-lite", 4), ("ddet", 3)])
def test_tiled_equals_untiled_for_every_model(name, scale):
    # A real photo cut into 2 x 2 tiles with the model's default overlap: the tiled result
    # is the untiled one (so no seam can show), far inside 0.01 dB. An overlap below the
    # receptive radius is not: 8 px gives up to 0.02 dB for kpn7, udvd and dyconvsr.
    overlap = default_overlap(name)
    tile = overlap + 24
    lr, hr = _photo_pair(tile + 20, scale)
    model = _seeded(name, scale)
    whole = upscale_tiled(model, lr, scale, tile=10_000, overlap=0,
                          conditions=_conditions(name))
    tiled = upscale_tiled(model, lr, scale, tile=tile, overlap=overlap,
                          conditions=_conditions(name))
    assert len(Tiling(lr.shape[-1], tile, overlap).spans) == 2
    assert tiled.shape == whole.shape == hr.shape
    assert abs(_psnr(tiled.clamp(0, 1), hr) - _psnr(whole.clamp(0, 1), hr)) < 0.01
    assert float((tiled - whole).abs().max()) < 1e-4


class _SmallMemoryModel(torch.nn.Module):
    """Bicubic that 'runs out of memory' on inputs larger than ``limit`` pixels a side."""

    def __init__(self, limit: int, message: str = "CUDA out of memory. Tried to allocate"):
        super().__init__()
        self.inner, self.limit, self.message, self.sizes = create("bicubic", 2), limit, message, []

    def forward(self, x):
        self.sizes.append(max(x.shape[-2:]))
        if max(x.shape[-2:]) > self.limit:
            raise torch.OutOfMemoryError(self.message)
        return self.inner(x)


def test_out_of_memory_retries_with_halved_tiles():
    lr, _ = _photo_pair(100)
    model = _SmallMemoryModel(limit=40)
    notes = []
    out = upscale_with_retry(
        lambda tile, overlap: upscale_tiled(model, lr, 2, tile=tile, overlap=overlap),
        128, 12, notify=notes.append)
    expected = upscale_tiled(create("bicubic", 2), lr, 2, tile=1000, overlap=0)
    assert float((out - expected).abs().max()) < 1e-6
    assert notes == ["out of memory; retrying with tile 64, overlap 12",
                     "out of memory; retrying with tile 32, overlap 12"]


def test_the_model_never_sees_more_than_a_tile():
    lr, _ = _photo_pair(150)
    model = _SmallMemoryModel(limit=10_000)
    upscale_tiled(model, lr, 2, tile=64, overlap=20)
    assert max(model.sizes) <= 64 and len(model.sizes) == 9  # 3 x 3 tiles, step 44


def test_other_runtime_errors_are_not_retried():
    lr, _ = _photo_pair(40)
    model = _SmallMemoryModel(limit=10, message="shape mismatch")
    with pytest.raises(RuntimeError, match="shape mismatch"):
        upscale_with_retry(lambda t, o: upscale_tiled(model, lr, 2, tile=t, overlap=o), 64, 8)
    assert len(model.sizes) == 1


# ---------------------------------------------------------------------------------------------
# Python API


def test_load_returns_the_same_kind():
    upscaler = dynsr.load("bicubic", scale=2, device="cpu")
    assert upscaler.name == "bicubic" and upscaler.trained and upscaler.precision == "fp32"
    rgb = data.astronaut()[:30, :20]
    out = upscaler.upscale(rgb)
    assert out.dtype == np.uint8 and out.shape == (60, 40, 3)
    gray16 = (data.camera()[:16, :18].astype(np.uint16) * 257)
    out16 = upscaler.upscale(gray16)
    assert out16.dtype == np.uint16 and out16.shape == (32, 36)
    rgba = np.random.default_rng(0).random((10, 12, 4)).astype(np.float32)
    assert upscaler.upscale(rgba).shape == (20, 24, 4)
    batch = torch.rand(2, 3, 8, 9, dtype=torch.float64)
    out_t = upscaler.upscale(batch)
    assert out_t.dtype == torch.float64 and out_t.shape == (2, 3, 16, 18)
    assert torch.allclose(out_t[1], upscaler.upscale(batch[1]))
    for mode in ("RGBA", "L", "I;16", "RGB"):
        image = Image.fromarray(rgb).convert(mode)
        result = upscaler.upscale(image)
        assert result.mode == mode and result.size == (40, 60)


def test_a_path_gives_an_image_that_keeps_the_file_properties(tmp_path):
    colour = torch.from_numpy(data.astronaut()[::16, ::16].copy()).permute(2, 0, 1) / 255.0
    write_image(tmp_path / "deep.png", colour.float(), torch.full((1, 32, 32), 0.5),
                bit_depth=16)
    result = dynsr.load("bicubic", 2, device="cpu").upscale(tmp_path / "deep.png")
    assert result.bit_depth == 16 and result.alpha.shape == (1, 64, 64)
    saved = read_image(result.save(tmp_path / "deep_x2.png"))
    assert saved.bit_depth == 16 and saved.pixels.shape == (3, 64, 64)
    assert torch.allclose(saved.alpha, torch.full((1, 64, 64), 0.5), atol=1e-4)
    la = Image.fromarray(np.dstack([data.camera()[:10, :10]] * 2), mode="LA")
    assert dynsr.load("bicubic", 3, device="cpu").upscale(la).mode == "LA"


def test_bicubic_through_the_api_is_matlab_bicubic():
    lr, _ = _photo_pair(30)
    out = dynsr.load("bicubic", 3, device="cpu").upscale(lr)
    assert torch.allclose(out, imresize(lr.double(), 3).clamp(0, 1).float(), atol=1e-6)


def test_untrained_model_warns_and_is_reproducible():
    lr, _ = _photo_pair(12)
    with pytest.warns(UserWarning, match="no trained weights for dyconvsr x2 yet"):
        first = dynsr.load("dyconvsr", 2, device="cpu", precision="fp32")
    with pytest.warns(UserWarning):
        second = dynsr.load("dyconvsr", 2, device="cpu", precision="fp32")
    assert not first.trained
    assert torch.equal(first.upscale(lr), second.upscale(lr))


def test_options_that_cannot_apply_are_refused():
    with pytest.raises(ValueError, match="fp16 is not supported on the CPU"):
        dynsr.load("bicubic", 2, device="cpu", precision="fp16")
    with pytest.raises(ValueError, match="does not take them"):
        dynsr.load("bicubic", 2, device="cpu").upscale(torch.rand(3, 8, 8), noise=5)
    with pytest.raises(TypeError, match="cannot upscale a list"):
        dynsr.load("bicubic", 2, device="cpu").upscale([1, 2])


def test_udvd_takes_blur_and_noise():
    lr, _ = _photo_pair(12)
    with pytest.warns(UserWarning):
        upscaler = dynsr.load("udvd-lite", 2, device="cpu", precision="fp32")
    plain = upscaler.upscale(lr)
    blurred = upscaler.upscale(lr, blur=1.6, noise=10.0)
    assert plain.shape == blurred.shape == (3, 24, 24)
    assert not torch.equal(plain, blurred)


def _write_weights(folder, scale=2, seed=1):
    torch.manual_seed(seed)
    model = create("dyconvsr", scale=scale)
    path = folder / f"dyconvsr_x{scale}.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return model, path


def test_shipped_weights_load_from_the_manifest_with_sha256(tmp_path):
    model, path = _write_weights(tmp_path)
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    manifest = {"version": 1, "models": {"dyconvsr": {"2": {"file": path.name, "sha256": sha}}}}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    upscaler = dynsr.load("dyconvsr", 2, device="cpu", weights_dir=tmp_path)
    assert upscaler.trained
    for key, value in model.state_dict().items():
        assert torch.equal(upscaler.model.state_dict()[key], value), key

    manifest["models"]["dyconvsr"]["2"]["sha256"] = "0" * 64
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(WeightsError, match="sha256 mismatch"):
        dynsr.load("dyconvsr", 2, device="cpu", weights_dir=tmp_path)


def test_published_training_output_loads_by_name(tmp_path, capsys, monkeypatch):
    from dynsr.hardware import describe_cpu
    from dynsr.train.engine import train
    from dynsr.upscale.weights import publish_weights

    (tmp_path / "photos").mkdir()
    Image.fromarray(data.astronaut()[:96, :96]).save(tmp_path / "photos" / "a.png")
    run = {"name": "tiny", "model": {"name": "dyconvsr", "scale": 2},
           "data": {"train": {"type": "hr_folder", "paths": str(tmp_path / "photos"),
                              "patch_size": 32},
                    "val": {"hr": [str(tmp_path / "photos")], "noise": 5, "every": 2}},
           "train": {"iterations": 2, "batch_size": 2, "threads": 1},
           "log": {"progress": "never"}}
    result = train(run, tmp_path / "run")
    shipped = tmp_path / "weights"
    # Published from the repository's root (here tmp_path): the run's absolute paths are
    # listed relative to it, so that the manifest names no machine's folders.
    monkeypatch.chdir(tmp_path)
    assert main(["publish-weights", str(tmp_path / "run" / "model.safetensors"),
                 "--weights-dir", str(shipped)]) == 0
    manifest = json.loads((shipped / "manifest.json").read_text())
    entry = manifest["models"]["dyconvsr"]["2"]
    assert entry["file"] == "dyconvsr_x2.safetensors" and entry["config"] == {}
    assert entry["sha256"] == hashlib.sha256((shipped / entry["file"]).read_bytes()).hexdigest()
    assert entry["training"]["iterations"] == 2 and entry["training"]["batch_size"] == 2
    assert entry["training"]["schedule_iterations"] == 2
    assert entry["training"]["machines"] == [describe_cpu()]  # what the wall time ran on
    assert entry["training"]["data"]["paths"] == ["photos"]
    # The validation's degradation is named with its score (no blur: MATLAB bicubic + noise).
    assert {k: v for k, v in entry["validation"].items() if k not in ("psnr_y", "ssim_y")} == {
        "data": ["photos"], "noise": 5, "seed": 0}
    upscaler = dynsr.load("dyconvsr", 2, device="cpu", precision="fp32", weights_dir=shipped)
    for key, value in result.model.state_dict().items():
        assert torch.equal(upscaler.model.state_dict()[key], value), key

    # --storage fp16: half the bytes, the metadata kept, loaded back as float32 (the values
    # rounded to float16), and the storage named in the manifest.
    half = tmp_path / "half"
    assert main(["publish-weights", str(tmp_path / "run" / "model.safetensors"),
                 "--weights-dir", str(half), "--storage", "fp16"]) == 0
    entry16 = json.loads((half / "manifest.json").read_text())["models"]["dyconvsr"]["2"]
    assert entry16["storage"] == "fp16" and "storage" not in entry
    assert entry16["training"] == entry["training"]
    size16, size32 = ((d / "dyconvsr_x2.safetensors").stat().st_size for d in (half, shipped))
    assert size16 < 0.6 * size32
    loaded = dynsr.load("dyconvsr", 2, device="cpu", precision="fp32", weights_dir=half)
    for key, value in result.model.state_dict().items():
        got = loaded.model.state_dict()[key]
        assert got.dtype == value.dtype
        assert torch.equal(got, value.half().to(value.dtype)), key

    # A damaged copy is refused with the file named; a file without metadata is not published.
    blob = bytearray((shipped / entry["file"]).read_bytes())
    blob[-1] ^= 1
    (shipped / entry["file"]).write_bytes(bytes(blob))
    with pytest.raises(WeightsError, match="dyconvsr_x2.safetensors: sha256 mismatch"):
        dynsr.load("dyconvsr", 2, device="cpu", weights_dir=shipped)
    _, bare = _write_weights(tmp_path)
    with pytest.raises(WeightsError, match="not written by dynsr train"):
        publish_weights(bare, shipped)
    assert main(["publish-weights", str(bare), "--weights-dir", str(shipped)]) == 1
    assert capsys.readouterr().err.strip().endswith("(not written by dynsr train)")


def test_weights_published_under_another_name_that_builds_the_same_network(tmp_path):
    # A udvd-lite run with channels 128 is udvd-wide: --name lists it as such, its copy's
    # metadata names udvd-wide with the configuration left to udvd-wide's defaults, and it
    # loads by that name. A name with another network is refused.
    from dynsr.models.complexity import count_parameters
    from dynsr.train.engine import train
    from dynsr.upscale.weights import publish_weights

    (tmp_path / "photos").mkdir()
    Image.fromarray(data.astronaut()[:64, :64]).save(tmp_path / "photos" / "a.png")
    cfg = {"name": "wide", "model": {"name": "udvd-lite", "scale": 2,
                                     "config": {"channels": 128, "num_residual_blocks": 1}},
           "data": {"train": {"type": "hr_folder", "paths": str(tmp_path / "photos"),
                              "patch_size": 32, "degradation": "variational"}},
           "train": {"iterations": 1, "batch_size": 1, "threads": 1},
           "log": {"progress": "never"}}
    result = train(cfg, tmp_path / "run")
    trained = tmp_path / "run" / "model.safetensors"
    shipped = tmp_path / "shipped"
    assert main(["publish-weights", str(trained), "--weights-dir", str(shipped),
                 "--name", "udvd-wide"]) == 0
    manifest = json.loads((shipped / "manifest.json").read_text())
    assert list(manifest["models"]) == ["udvd-wide"]
    entry = manifest["models"]["udvd-wide"]["2"]
    assert entry["file"] == "udvd-wide_x2.safetensors"
    assert entry["config"] == {"num_residual_blocks": 1}
    upscaler = dynsr.load("udvd-wide", 2, device="cpu", precision="fp32", weights_dir=shipped)
    for key, value in result.model.state_dict().items():
        assert torch.equal(upscaler.model.state_dict()[key], value), key
    assert count_parameters(upscaler.model) == count_parameters(
        create("udvd-lite", scale=2, channels=128, num_residual_blocks=1))
    # udvd (N = 15 by default) builds it too, told num_residual_blocks 1; dyconvsr cannot.
    assert publish_weights(trained, tmp_path / "other", name="udvd").config == {
        "num_residual_blocks": 1}
    with pytest.raises(WeightsError, match="a network dyconvsr does not build"):
        publish_weights(trained, tmp_path / "other", name="dyconvsr")


def test_a_fine_tune_lists_the_stages_it_started_from(tmp_path, monkeypatch):
    from dynsr.train.engine import train
    from dynsr.upscale.weights import publish_weights

    (tmp_path / "photos").mkdir()
    Image.fromarray(data.astronaut()[:64, :64]).save(tmp_path / "photos" / "a.png")

    def run(name, iterations, loss, init=None):
        cfg = {"name": name, "model": {"name": "dyconvsr", "scale": 2, "init": init},
               "data": {"train": {"type": "hr_folder", "paths": str(tmp_path / "photos"),
                                  "patch_size": 32}},
               "train": {"iterations": iterations, "batch_size": 2, "threads": 1,
                         "loss": loss},
               "log": {"progress": "never"}}
        train(cfg, tmp_path / name)
        return f"{name}/model.safetensors"  # relative, as recipes give model.init

    monkeypatch.chdir(tmp_path)
    first = run("first", 3, "l1")
    second = run("second", 2, "l2", init=first)
    third = run("third", 1, "l2", init=second)
    entry = publish_weights(third, tmp_path / "shipped")
    manifest = json.loads((tmp_path / "shipped" / "manifest.json").read_text())
    training = manifest["models"]["dyconvsr"]["2"]["training"]
    assert entry.name == "dyconvsr" and training["iterations"] == 1
    assert training["loss"] == "l2" and training["init"] == second
    stages = training["earlier_stages"]
    assert [(s["run"], s["iterations"], s["loss"]) for s in stages] == [
        ("first", 3, "l1"), ("second", 2, "l2")]
    assert "init" not in stages[0] and stages[1]["init"] == first
    assert all(s["wall_time_h"] >= 0 and s["machines"] for s in stages)
    # An init that is not a dynsr train file (or is gone) adds no stages.
    (tmp_path / first).unlink()
    (tmp_path / second).write_bytes(b"not safetensors")
    publish_weights(third, tmp_path / "shipped")
    manifest = json.loads((tmp_path / "shipped" / "manifest.json").read_text())
    assert "earlier_stages" not in manifest["models"]["dyconvsr"]["2"]["training"]


def test_a_trained_file_brings_its_model_config(tmp_path):
    """Weights from ``dynsr train`` carry the model's configuration: ``--weights`` builds the
    network they fit (here kpn7 on RGB, as the DDet ablation trains it), and refuses them
    for another model or scale."""
    from dynsr.cli.main import main as cli_main
    from dynsr.train.engine import train

    (tmp_path / "photos").mkdir()
    Image.fromarray(data.astronaut()[:64, :64]).save(tmp_path / "photos" / "a.png")
    run = {"name": "tiny", "model": {"name": "kpn7", "scale": 2,
                                     "config": {"in_channels": 3, "num_blocks": 1}},
           "data": {"train": {"type": "hr_folder", "paths": str(tmp_path / "photos"),
                              "patch_size": 32}},
           "train": {"iterations": 1, "batch_size": 1, "threads": 1},
           "log": {"progress": "never"}}
    result = train(run, tmp_path / "run")
    weights = tmp_path / "run" / "model.safetensors"
    upscaler = dynsr.load("kpn7", 2, device="cpu", precision="fp32", weights=weights)
    assert upscaler.model.in_channels == 3
    for key, value in result.model.state_dict().items():
        assert torch.equal(upscaler.model.state_dict()[key], value), key
    assert cli_main(["eval", "--model", "kpn7", "--weights", str(weights), "--hr",
                     str(tmp_path / "photos"), "--scale", "2"]) == 0
    assert cli_main(["upscale", str(tmp_path / "photos" / "a.png"), "-o", str(tmp_path / "up"),
                     "--model", "kpn7", "--weights", str(weights), "--precision", "fp32"]) == 0
    expected = upscaler.upscale(np.asarray(Image.open(tmp_path / "photos" / "a.png")))
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "up" / "a_x2.png")),
                                  expected)
    assert cli_main(["upscale", str(tmp_path / "photos" / "a.png"), "-o", str(tmp_path / "up"),
                     "--overwrite", "--model", "dyconvsr", "--weights", str(weights)]) == 1
    with pytest.raises(WeightsError, match="weights of kpn7 x2, not kpn7-pr x2"):
        dynsr.load("kpn7-pr", 2, device="cpu", weights=weights)
    with pytest.raises(WeightsError, match="weights of kpn7 x2, not kpn7 x3"):
        dynsr.load("kpn7", 3, device="cpu", weights=weights)


def test_a_model_without_weights_names_its_shipped_relatives(tmp_path):
    from dynsr.upscale.weights import weights_hint

    entry = {"file": "x.safetensors", "sha256": "0" * 64}
    manifest = {"version": 1, "models": {"ddet-rgb": {"2": entry, "4": entry},
                                         "ddet-release": {"2": entry}, "kpn7": {"2": entry}}}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    assert weights_hint("ddet", 2, tmp_path) == " (shipped: ddet-release, ddet-rgb x2)"
    assert weights_hint("ddet", 3, tmp_path) == ""
    assert weights_hint("kpn7-pr", 2, tmp_path) == " (shipped: kpn7 x2)"
    assert weights_hint("udvd", 2, tmp_path / "nowhere") == ""
    with pytest.warns(UserWarning, match=r"no trained weights for ddet x4 yet \(shipped: "
                                         r"ddet-rgb x4\)"):
        dynsr.load("ddet", 4, device="cpu", weights_dir=tmp_path)


def test_weights_file_given_directly_and_env_folder(tmp_path, monkeypatch):
    _, path = _write_weights(tmp_path)
    assert dynsr.load("dyconvsr", 2, device="cpu", weights=path).trained
    with pytest.raises(WeightsError, match="do not fit"):
        dynsr.load("dyconvsr", 3, device="cpu", weights=path)
    # An empty folder ships nothing: the model runs untrained, with the warning.
    monkeypatch.setenv("DYNSR_WEIGHTS_DIR", str(tmp_path / "none"))
    with pytest.warns(UserWarning, match="no trained weights"):
        assert not dynsr.load("dyconvsr", 2, device="cpu").trained


# ---------------------------------------------------------------------------------------------
# every kind of image, through the command


def _run(capsys, *argv):
    # Image handling is tested with the exact bicubic model unless a test names another;
    # the default model has its own test.
    argv = [str(a) for a in argv]
    if "--model" not in argv:
        argv += ["--model", "bicubic"]
    code = main(["upscale", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_alpha_is_kept_and_transparent_colour_does_not_bleed(tmp_path, capsys):
    rgba = np.zeros((40, 48, 4), np.uint8)
    rgba[..., :3] = (0, 255, 0)  # garish colour under the transparent half
    rgba[20:, :, :3] = 128
    rgba[20:, :, 3] = 255
    Image.fromarray(rgba).save(tmp_path / "sprite.png")
    code, _, err = _run(capsys, tmp_path / "sprite.png", "-o", tmp_path / "out")
    assert code == 0, err
    out = np.asarray(Image.open(tmp_path / "out" / "sprite_x2.png"))
    assert Image.open(tmp_path / "out" / "sprite_x2.png").mode == "RGBA"
    assert out.shape == (80, 96, 4)
    assert out[:36, :, 3].max() == 0 and out[44:, :, 3].min() == 255
    visible = out[..., 3] > 0
    # Premultiplied: every visible pixel is the grey, with no green fringe at the edge.
    assert np.abs(out[visible][:, :3].astype(int) - 128).max() <= 1


def test_gray_stays_gray_and_16_bit_stays_16_bit(tmp_path, capsys):
    camera = data.camera()[::8, ::8]
    Image.fromarray(camera).save(tmp_path / "gray.png")
    dark = camera.astype(np.uint16) * 16  # a dark 16-bit image: every value < 4096 (6 %)
    Image.fromarray(dark).save(tmp_path / "dark16.png")
    assert read_image(tmp_path / "dark16.png").bit_depth == 16
    colour16 = torch.from_numpy(data.astronaut()[::8, ::8].copy()).permute(2, 0, 1) / 255.0
    write_image(tmp_path / "colour16.png", colour16 * 0.01, bit_depth=16)
    code, _, err = _run(capsys, tmp_path, "-o", tmp_path / "out")
    assert code == 0, err
    gray = read_image(tmp_path / "out" / "gray_x2.png")
    assert gray.pixels.shape == (1, 128, 128) and gray.bit_depth == 8
    out_dark = read_image(tmp_path / "out" / "dark16_x2.png")
    assert out_dark.bit_depth == 16 and out_dark.pixels.shape[0] == 1
    samples = np.asarray(Image.open(tmp_path / "out" / "dark16_x2.png")).astype(int)
    # Neither stretched nor cut to 8 bits: the same dark range, with 16-bit steps.
    assert 3500 < samples.max() < 4600 and np.unique(samples).size > 1000
    out_colour = read_image(tmp_path / "out" / "colour16_x2.png")
    assert out_colour.bit_depth == 16 and out_colour.pixels.shape == (3, 128, 128)
    assert 0.008 < float(out_colour.pixels.max()) < 0.0125  # 1 % of full scale, as given


def test_16_bit_tiff_in_and_out_and_avif_out(tmp_path, capsys):
    from PIL import features

    colour16 = torch.from_numpy(data.astronaut()[::8, ::8].copy()).permute(2, 0, 1) / 255.0
    write_image(tmp_path / "in" / "deep.tif", colour16 * 0.01, bit_depth=16)
    code, _, err = _run(capsys, tmp_path / "in", "-o", tmp_path / "out", "--ext", "tif")
    assert code == 0, err
    out = read_image(tmp_path / "out" / "deep_x2.tif")
    assert out.bit_depth == 16 and out.pixels.shape == (3, 128, 128)
    assert 0.008 < float(out.pixels.max()) < 0.0125  # 16-bit steps of a dark image kept
    code, _, err = _run(capsys, tmp_path / "in", "-o", tmp_path / "out", "--ext", "avif")
    if features.check("avif"):
        assert code == 0, err
        assert read_image(tmp_path / "out" / "deep_x2.avif").pixels.shape == (3, 128, 128)
        assert "16-bit image written as 8-bit .avif" in err
    else:
        assert code == 1 and "without AVIF support" in err


def test_exif_orientation_is_applied_and_icc_kept(tmp_path, capsys):
    photo = Image.fromarray(data.coffee()[::8, ::8])  # 75 x 50, wider than tall
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    photo.save(tmp_path / "rotated.jpg", exif=exif.tobytes(), quality=95)
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    photo.save(tmp_path / "profiled.png", icc_profile=icc)
    code, _, err = _run(capsys, tmp_path, "-o", tmp_path / "out")
    assert code == 0, err
    rotated = Image.open(tmp_path / "out" / "rotated_x2.png")
    assert rotated.size == (100, 150)  # displayed upright: tall
    assert rotated.getexif().get(0x0112) in (None, 1)
    assert Image.open(tmp_path / "out" / "profiled_x2.png").info.get("icc_profile") == icc


# ---------------------------------------------------------------------------------------------
# bad input and failure


def _good_images(folder, count=2):
    folder.mkdir(parents=True, exist_ok=True)
    photo = data.astronaut()[::8, ::8]
    for i in range(count):
        Image.fromarray(np.roll(photo, i * 7, axis=1)).save(folder / f"good{i}.png")


def test_bad_files_fail_alone_with_one_line_each(tmp_path, capsys):
    folder = tmp_path / "in"
    _good_images(folder)
    (folder / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 50)
    buffer = io.BytesIO()
    Image.fromarray(data.astronaut()[::8, ::8]).save(buffer, format="PNG")
    (folder / "truncated.png").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    (folder / "empty.jpg").write_bytes(b"")
    out = tmp_path / "out"
    code, stdout, err = _run(capsys, folder, tmp_path / "missing.png", "-o", out)
    assert code == 1
    assert sorted(p.name for p in out.iterdir()) == ["good0_x2.png", "good1_x2.png"]
    failures = [line for line in err.splitlines() if "failed:" in line]
    assert len(failures) == 4
    for name in ("corrupt.png", "truncated.png", "empty.jpg", "missing.png"):
        assert sum(name in line for line in failures) == 1, name
    assert "Traceback" not in err
    assert "upscaled 2 images" in stdout and "4 failed" in stdout


def test_no_partial_output_when_writing_fails(tmp_path, capsys):
    rgba = np.full((16, 16, 4), 200, np.uint8)
    rgba[:8, :, 3] = 0
    Image.fromarray(rgba).save(tmp_path / "alpha.png")
    code, _, err = _run(capsys, tmp_path / "alpha.png", "-o", tmp_path / "out", "--ext", "jpg")
    assert code == 1 and "alpha.png" in err and "alpha" in err.splitlines()[-1]
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_existing_outputs_are_kept_unless_overwrite(tmp_path, capsys):
    _good_images(tmp_path / "in", 1)
    out = tmp_path / "out"
    out.mkdir()
    (out / "good0_x2.png").write_bytes(b"keep me")
    code, stdout, err = _run(capsys, tmp_path / "in", "-o", out)
    assert code == 0 and "1 skipped" in stdout and "exists" in err
    assert (out / "good0_x2.png").read_bytes() == b"keep me"
    code, _, _ = _run(capsys, tmp_path / "in", "-o", out, "--overwrite")
    assert code == 0 and read_image(out / "good0_x2.png").pixels.shape == (3, 128, 128)


def test_input_is_never_replaced(tmp_path, capsys):
    _good_images(tmp_path, 1)
    before = (tmp_path / "good0.png").read_bytes()
    code, _, err = _run(capsys, tmp_path / "good0.png", "--suffix", "", "--ext", "same",
                        "--overwrite")
    assert code == 1 and "would replace the input" in err
    assert (tmp_path / "good0.png").read_bytes() == before


def test_recursive_keeps_the_folder_structure(tmp_path, capsys):
    _good_images(tmp_path / "in" / "a" / "b", 1)
    _good_images(tmp_path / "in", 1)
    code, _, err = _run(capsys, tmp_path / "in", "--recursive", "-o", tmp_path / "out",
                        "--suffix=-big", "--ext", "webp")
    assert code == 0, err
    assert (tmp_path / "out" / "a" / "b" / "good0-big.webp").is_file()
    assert (tmp_path / "out" / "good0-big.webp").is_file()


def test_command_line_refusals_are_one_line(tmp_path, capsys):
    _good_images(tmp_path, 1)
    code, _, err = _run(capsys, tmp_path, "--device", "cpu", "--precision", "fp16")
    assert code == 1 and "fp16 is not supported on the CPU" in err
    assert len(err.strip().splitlines()) == 1
    code, _, err = _run(capsys, tmp_path, "--noise", "5")
    assert code == 1 and "does not use them" in err
    if not torch.cuda.is_available():
        code, _, err = _run(capsys, tmp_path, "--device", "cuda")
        assert code == 1 and "CUDA is not available" in err
    code, _, err = _run(capsys, tmp_path, "--model", "no-such-model")
    assert code == 1 and "unknown model 'no-such-model'" in err


def test_udvd_noise_map_from_an_image_file(tmp_path, capsys):
    _good_images(tmp_path / "in", 1)
    Image.fromarray(np.full((64, 64), 10, np.uint8)).save(tmp_path / "noise.png")
    code, _, err = _run(capsys, tmp_path / "in", "-o", tmp_path / "out", "--model",
                        "udvd-lite", "--noise", tmp_path / "noise.png", "--blur", "1.2",
                        "--precision", "fp32")
    assert code == 0, err
    assert "no trained weights for udvd-lite x2 yet" in err
    assert read_image(tmp_path / "out" / "good0_x2.png").pixels.shape == (3, 128, 128)


def test_udvd_blur_maps_from_npy_and_wrong_sized_maps(tmp_path, capsys):
    _good_images(tmp_path / "in", 1)
    np.save(tmp_path / "widths.npy", np.linspace(0.2, 2.0, 64 * 64).reshape(64, 64))
    np.save(tmp_path / "small.npy", np.ones((10, 10)))
    code, _, err = _run(capsys, tmp_path / "in", "-o", tmp_path / "out", "--model",
                        "udvd-lite", "--blur", tmp_path / "widths.npy", "--precision", "fp32",
                        "--tile", "40")
    assert code == 0, err
    assert "overlap 20 instead of" in err  # small tiles: said, not refused
    code, _, err = _run(capsys, tmp_path / "in", "-o", tmp_path / "out2", "--model",
                        "udvd-lite", "--blur", tmp_path / "small.npy")
    failures = [line for line in err.splitlines() if "failed:" in line]
    assert code == 1 and len(failures) == 1
    assert "good0.png" in failures[0] and "10x10, the image 64x64" in failures[0]
    assert not (tmp_path / "out2").exists()


class _OverflowingModel(torch.nn.Module):
    """Nearest-neighbour x2 that overflows (inf) under autocast, like fp16 activations can."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(()))

    def forward(self, x):
        out = torch.nn.functional.interpolate(x, scale_factor=2) * self.weight
        return out * math.inf if torch.is_autocast_enabled("cpu") else out


def test_non_finite_reduced_precision_tiles_are_redone_in_fp32():
    lr, _ = _photo_pair(20)
    out = upscale_tiled(_OverflowingModel(), lr, 2, tile=12, overlap=4, precision="bf16")
    expected = torch.nn.functional.interpolate(lr[None], scale_factor=2)[0]
    assert torch.isfinite(out).all() and torch.allclose(out, expected, atol=1e-6)


def test_debug_shows_the_traceback(tmp_path, capsys):
    (tmp_path / "bad.png").write_bytes(b"not an image")
    code, _, err = _run(capsys, tmp_path / "bad.png", "--debug")
    assert code == 1 and "Traceback" in err and "bad.png" in err


def test_same_extension_and_kernel_file(tmp_path, capsys):
    Image.fromarray(data.coffee()[::8, ::8]).save(tmp_path / "cup.jpg", quality=95)
    np.savetxt(tmp_path / "k.txt", np.outer([1, 2, 1], [1, 2, 1]))
    code, _, err = _run(capsys, tmp_path / "cup.jpg", "--ext", "same", "--model", "udvd-lite",
                        "--kernel", tmp_path / "k.txt", "--precision", "fp32")
    assert code == 0, err
    out = read_image(tmp_path / "cup_x2.jpg")
    assert out.pixels.shape == (3, 100, 150)


def test_default_model_is_trained_dyconvsr(tmp_path, capsys, recwarn, monkeypatch):
    monkeypatch.delenv("DYNSR_WEIGHTS_DIR")  # the package's own weights
    assert dynsr.api.DEFAULT_MODEL == "dyconvsr"
    for scale in (2, 3, 4):
        up = dynsr.load(scale=scale, device="cpu")
        assert up.name == "dyconvsr" and up.trained, scale
    assert not [w for w in recwarn if "no trained weights" in str(w.message)]
    # Through the command, with no option but the file: a real upscale, better than bicubic.
    hr = data.astronaut()[100:292, 150:342]
    lr = Image.fromarray(hr).resize((96, 96), Image.BICUBIC)
    lr.save(tmp_path / "photo.png")
    assert main(["upscale", str(tmp_path / "photo.png")]) == 0
    sr = read_image(tmp_path / "photo_x2.png").pixels.double()
    bicubic = imresize(read_image(tmp_path / "photo.png").pixels.double(), 2)
    truth = torch.from_numpy(hr.copy()).permute(2, 0, 1).double() / 255
    from dynsr.metrics import evaluate_pair
    assert evaluate_pair(sr, truth, 2)["psnr_y"] > evaluate_pair(bicubic.clamp(0, 1), truth,
                                                                 2)["psnr_y"]


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_trained_dyconvsr_tiles_exactly_with_whole_image_attention(scale, monkeypatch):
    # Trained kernels are mixed by an attention pooled over the whole image: each tile gets
    # the whole image's attention (computed in bands), so tiles equal the untiled result.
    monkeypatch.delenv("DYNSR_WEIGHTS_DIR")  # the package's own weights
    up = dynsr.load("dyconvsr", scale, device="cpu", precision="fp32")
    assert up.trained
    model = up.model
    lr = torch.from_numpy(data.astronaut()[:203, :301].copy()).permute(2, 0, 1).float() / 255
    context = model.global_context(lr, band=16)
    torch.testing.assert_close(context["attention"], model.kernel_attention(lr[None]),
                               rtol=0, atol=1e-6)
    whole = upscale_tiled(model, lr, scale, tile=10_000)
    tiled = upscale_tiled(model, lr, scale, tile=96, overlap=default_overlap("dyconvsr"))
    assert len(Tiling(lr.shape[-1], 96, default_overlap("dyconvsr")).spans) > 2
    assert float((tiled - whole).abs().max()) < 1e-5


def test_device_may_name_a_cuda_index(tmp_path, capsys, monkeypatch):
    from dynsr.api import resolve_device

    Image.fromarray(data.astronaut()[:16, :16]).save(tmp_path / "a.png")
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="device must be auto, cpu, cuda, cuda:N or mps"):
        resolve_device("cuda:x")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="device cuda:1: CUDA is not available"):
            resolve_device("cuda:1")
        # The command takes cuda:N and says the same in one line.
        code, _, err = _run(capsys, tmp_path / "a.png", "--device", "cuda:1")
        assert code == 1
        assert err.strip().endswith("device cuda:1: CUDA is not available on this machine")
    # On a machine with one GPU (as torch reports it), cuda:0 is it and cuda:1 is not there.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert resolve_device("cuda:0") == torch.device("cuda", 0)
    with pytest.raises(ValueError, match=r"cuda:1: this machine has 1 CUDA device \(cuda:0"):
        resolve_device("cuda:1")
    code, _, err = _run(capsys, tmp_path / "a.png", "--device", "gpu")
    assert code == 1 and "device must be auto, cpu, cuda, cuda:N or mps, got 'gpu'" in err


def test_before_after_picture(tmp_path, capsys):
    from dynsr.ops import quantize
    from dynsr.upscale.before_after import DIVIDER, before_after

    Image.fromarray(data.astronaut()[:40, :30]).save(tmp_path / "a.png")
    code, _, err = _run(capsys, tmp_path / "a.png", "-o", tmp_path / "out", "--before-after")
    assert code == 0, err
    assert "before/after in" in err
    picture = read_image(tmp_path / "out" / "a_x2_before_after.png")
    sr = read_image(tmp_path / "out" / "a_x2.png").pixels
    assert picture.pixels.shape == (3, 80, 2 * 60 + DIVIDER)
    assert torch.equal(picture.pixels[..., 60 + DIVIDER:], sr)  # the result, right
    lr = read_image(tmp_path / "a.png").pixels.double()
    left = quantize(imresize(lr, size=(80, 60)).clamp(0, 1)).float()
    assert torch.allclose(picture.pixels[..., :60], left, atol=1 / 255 + 1e-6)
    assert torch.equal(picture.pixels[..., 60:60 + DIVIDER], torch.ones(3, 80, DIVIDER))
    # Wide results are cropped to a viewable picture; the channels must agree.
    wide = before_after(torch.rand(1, 8, 600), torch.rand(1, 16, 1200), max_width=404)
    assert wide.shape == (1, 16, 404)
    with pytest.raises(ValueError, match="LR has 3 channels, SR 1"):
        before_after(torch.rand(3, 8, 8), torch.rand(1, 16, 16))


def test_one_tile_and_8_bit_arrays_take_the_lean_path_with_the_same_result():
    """A frame that fits one tile skips the blending buffers, and a uint8 array comes back
    through 8-bit samples: the same image as the tiled float path, within one level where
    float32 and float64 round a tie differently."""
    frame = data.astronaut()[100:220, 150:310]  # (120, 160, 3) uint8
    whole = dynsr.load("dyconvsr", 2, precision="fp32")
    assert whole.tile == 1024  # DyConvSR's default tile
    tiled = dynsr.load("dyconvsr", 2, precision="fp32", tile=96)
    lean = whole.upscale(frame)
    assert lean.dtype == np.uint8 and lean.shape == (240, 320, 3)
    colour = torch.from_numpy(frame.copy()).permute(2, 0, 1).float() / 255
    float_tiled, _ = tiled.upscale_planes(colour, None)
    reference = np.floor(float_tiled.permute(1, 2, 0).double().numpy() * 255 + 0.5)
    difference = np.abs(lean.astype(np.float64) - reference)
    assert difference.max() <= 1 and (difference > 0).mean() < 1e-3
    grey = whole.upscale(frame[..., 1])
    assert grey.shape == (240, 320) and grey.dtype == np.uint8
    frame16 = frame.astype(np.uint16) * 257
    deep = whole.upscale(frame16)
    assert deep.dtype == np.uint16 and np.abs(deep.astype(np.int64) // 257 - lean).max() <= 1


def test_dyconvsr_defaults_to_its_fused_fp32_path_on_every_cpu(monkeypatch):
    import dynsr.api as api

    for has_bf16 in (True, False):
        monkeypatch.setattr(api, "cpu_supports_bf16", lambda has_bf16=has_bf16: has_bf16)
        cpu = torch.device("cpu")
        assert api.default_precision(cpu, "dyconvsr") == "fp32"
        assert api.default_precision(cpu, "ddet") == ("bf16" if has_bf16 else "fp32")
        assert api.default_precision(cpu) == ("bf16" if has_bf16 else "fp32")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            assert dynsr.load("dyconvsr", 2, device="cpu").precision == "fp32"
