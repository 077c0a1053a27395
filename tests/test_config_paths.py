"""Configuration paths: relative to the configuration file, overrides relative to the current
folder, ``dynsr:`` inside the package; the shipped recipes found by name from any folder."""

from __future__ import annotations

from pathlib import Path

import pytest
import skimage.data
import yaml
from PIL import Image

import dynsr
from dynsr.cli.main import main
from dynsr.train.config import RECIPES_DIR, load_config
from dynsr.train.engine import train

PACKAGE = Path(dynsr.__file__).resolve().parent


def _recipe(folder: Path, **data) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    config = {"name": "paths", "model": {"name": "dyconvsr", "scale": 2},
              "data": data, "train": {"iterations": 2, "batch_size": 2, "threads": 1},
              "checkpoint": {"every": 1}, "log": {"every": 1, "progress": "never"}}
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture()
def photo(tmp_path: Path) -> Path:
    path = tmp_path / "recipes" / "photos" / "a.png"
    path.parent.mkdir(parents=True)
    Image.fromarray(skimage.data.astronaut()[:96, :96]).save(path)
    return path


def test_file_paths_are_relative_to_the_file_and_overrides_to_the_current_folder(
        tmp_path, photo, monkeypatch):
    recipe = _recipe(tmp_path / "recipes", train={"type": "hr_folder", "paths": ["photos"]},
                     val={"hr": "photos/a.png", "kernel": "k.npy"})
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    cfg = load_config(Path("..") / "recipes" / "recipe.yaml",
                      ["model.init=w.safetensors", "data.val.lr=lr"])
    assert cfg.data.train["paths"] == [str(photo.parent)]
    assert cfg.data.val.hr == [str(photo)]
    assert cfg.data.val.kernel == str(recipe.parent / "k.npy")
    assert cfg.model.init == str(elsewhere / "w.safetensors")  # as typed, from here
    assert cfg.data.val.lr == str(elsewhere / "lr")
    absolute = load_config(recipe, [f"data.val.lr={tmp_path}", "model.init=dynsr:weights/x"])
    assert absolute.data.val.lr == str(tmp_path)
    assert absolute.model.init == str(PACKAGE / "weights" / "x")


def test_a_recipe_trains_from_another_folder(tmp_path, photo, monkeypatch):
    recipe = _recipe(tmp_path / "recipes", train={"type": "hr_folder", "paths": ["photos"],
                                                  "patch_size": 32},
                     val={"hr": "photos", "every": 2})
    monkeypatch.chdir(tmp_path)
    assert main(["train", str(recipe), "--out", "run"]) == 0
    assert (tmp_path / "run" / "model.safetensors").is_file()


def test_shipped_recipes_are_found_by_name_and_point_at_existing_package_files(
        tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert RECIPES_DIR.is_dir() and (RECIPES_DIR / "example_bundled.yaml").is_file()
    cfg = load_config("example_bundled")
    assert cfg.data.train["paths"] == [str(PACKAGE / "examples" / "astronaut.png")]
    assert all(Path(p).is_file() for p in [*cfg.data.train["paths"], *cfg.data.val.hr])
    # Every recipe that starts from shipped weights names a file that is there.
    for path in RECIPES_DIR.glob("*.yaml"):
        init = yaml.safe_load(path.read_text())["model"].get("init") or ""
        if init.startswith("dynsr:"):
            assert load_config(path).model.init.startswith(str(PACKAGE / "weights"))
            assert Path(load_config(path).model.init).is_file(), path.name
    with pytest.raises(ValueError, match="nor a shipped recipe.*example_bundled"):
        load_config("no_such_recipe")


def test_the_bundled_example_trains_outside_the_repository(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["train", "example_bundled", "train.iterations=2", "data.val.every=2",
                 "data.val.at_start=false", "train.warmup=0", "--out", "example",
                 "--no-progress"]) == 0
    assert (tmp_path / "example" / "model.safetensors").is_file()


def test_a_state_saved_with_paths_relative_to_the_current_folder_resumes(
        tmp_path, photo, monkeypatch):
    # Before paths were resolved, a state held them as written, relative to the folder the
    # run started in: resumed from that folder with the file-relative recipe, it is the same
    # run (not a changed data.train.paths).
    monkeypatch.chdir(photo.parent.parent)
    raw = yaml.safe_load(_recipe(tmp_path / "recipes", train={
        "type": "hr_folder", "paths": ["photos"], "patch_size": 32}).read_text())
    raw["train"]["stop_after"] = 1
    train(raw, tmp_path / "run")
    recipe = tmp_path / "recipes" / "recipe.yaml"
    assert main(["train", str(recipe), "--out", str(tmp_path / "run"), "--resume"]) == 0
    assert (tmp_path / "run" / "model.safetensors").is_file()
