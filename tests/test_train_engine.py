"""The training engine: config schema, schedules, EMA, losses, end-to-end runs and resuming.

Training data are crops of scikit-image's bundled photos written to a temporary folder; the
models are the real ones (DyConvSR at its size, UDVD and DDet shrunk by config).
"""

from __future__ import annotations

import csv
import json
import math
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import skimage.data
import torch
import yaml
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from dynsr.cli.main import main
from dynsr.cli.main import main as cli_main
from dynsr.evaluation import Degradation
from dynsr.hardware import describe_cpu
from dynsr.metrics import evaluate_pair
from dynsr.models import create
from dynsr.models.inference import upscale_batch
from dynsr.models.udvd import multistage_targets
from dynsr.ops import imresize, quantize
from dynsr.train.config import (
    TrainConfig,
    apply_overrides,
    config_from_dict,
    config_to_dict,
    load_config,
)
from dynsr.train.datasets import build_dataset
from dynsr.train.ema import EMA
from dynsr.train.engine import train
from dynsr.train.forward import TrainingForward
from dynsr.train.losses import charbonnier_loss, sr_loss
from dynsr.train.schedule import learning_rate
from dynsr.train.state import load_state


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """Two training photos and one validation photo (PNG, 8-bit RGB)."""
    root = tmp_path_factory.mktemp("photos")
    (root / "train").mkdir()
    (root / "val").mkdir()
    Image.fromarray(skimage.data.astronaut()[::2, ::2]).save(root / "train" / "astronaut.png")
    Image.fromarray(skimage.data.coffee()[::2, ::2]).save(root / "train" / "coffee.png")
    Image.fromarray(skimage.data.chelsea()[60:188, 100:228]).save(root / "val" / "chelsea.png")
    return root


def small_config(photos, **train_keys) -> dict:
    """DyConvSR x2 on 32-pixel patches, batch 4; one thread so a busy machine stays fast."""
    return {
        "name": "tiny",
        "model": {"name": "dyconvsr", "scale": 2},
        "data": {"train": {"type": "hr_folder", "paths": str(photos / "train"),
                           "patch_size": 32}},
        "train": {"iterations": 12, "batch_size": 4, "lr": 2e-3, "threads": 1, **train_keys},
        "checkpoint": {"every": 4},
        "log": {"every": 2, "progress": "never"},
    }


# ------------------------------------------------------------------------------------------
# configuration


def test_unknown_keys_are_named_with_their_path(photos):
    cfg = small_config(photos)
    cfg["train"]["lerning_rate"] = 1e-3
    with pytest.raises(ValueError, match=r"^train\.lerning_rate: unknown key"):
        config_from_dict(cfg)
    cfg = small_config(photos)
    cfg["data"]["val"] = {"hr": "x", "evry": 5}
    with pytest.raises(ValueError, match=r"^data\.val\.evry: unknown key"):
        config_from_dict(cfg)
    with pytest.raises(ValueError, match=r"^model\.scale: required key missing"):
        config_from_dict({**small_config(photos), "model": {"name": "dyconvsr"}})


def test_yaml_types_overrides_and_errors(photos, tmp_path):
    path = tmp_path / "run.yaml"
    raw = small_config(photos)
    raw["train"]["lr"] = "LR"  # replaced by the text below: YAML must read 1e-4 as a float
    path.write_text(yaml.safe_dump(raw).replace("lr: LR", "lr: 1e-4"))
    cfg = load_config(path)
    assert cfg.train.lr == 1e-4 and isinstance(cfg.train.lr, float)
    assert cfg.train.schedule == "cosine" and cfg.train.ema_decay is None  # defaults

    cfg = load_config(path, ["train.lr=2e-4", "data.train.patch_size=64", "train.iterations=1e3",
                             "train.milestones=[100, 200]", "train.ema_decay=0.999",
                             "model.config.temperature_schedule=anneal",
                             "data.val.hr=somewhere", "train.multistage=false"])
    assert cfg.train.lr == 2e-4
    assert cfg.data.train["patch_size"] == 64
    assert cfg.train.iterations == 1000 and isinstance(cfg.train.iterations, int)
    assert cfg.train.milestones == [100, 200]
    assert cfg.train.ema_decay == 0.999
    assert cfg.model.config == {"temperature_schedule": "anneal"}
    # A path given as an override is relative to the current folder (tests/test_config_paths.py).
    assert cfg.data.val.hr == [str(Path.cwd() / "somewhere")] and cfg.data.val.every == 1000
    assert cfg.train.multistage is False

    for override, message in [
        ("train.bogus=1", r"train\.bogus: unknown key"),
        ("train.batch_size=four", r"train\.batch_size: expected an integer, got 'four'"),
        ("train.loss=l3", r"train\.loss: expected l1 \| l2 \| charbonnier, got 'l3'"),
        ("train.multistage=maybe", r"train\.multistage: expected"),
        ("train.ema_decay=1.5", r"train\.ema_decay: must be in \(0, 1\)"),
        ("train.lr", r"expected dotted\.key=value"),
    ]:
        with pytest.raises(ValueError, match=message):
            load_config(path, [override])
    with pytest.raises(ValueError, match=r"train\.lr is not a mapping"):
        apply_overrides({"train": {"lr": 1.0}}, ["train.lr.x=1"])


# ------------------------------------------------------------------------------------------
# schedules, EMA, losses


def test_learning_rate_schedules():
    warm = TrainConfig(iterations=100, lr=1e-3, schedule="constant", warmup=4)
    assert [learning_rate(warm, i) for i in range(6)] == pytest.approx(
        [2.5e-4, 5e-4, 7.5e-4, 1e-3, 1e-3, 1e-3])

    step = TrainConfig(iterations=100, lr=1e-3, schedule="step", milestones=[10, 20], gamma=0.5)
    assert learning_rate(step, 9) == 1e-3
    assert learning_rate(step, 10) == 5e-4
    assert learning_rate(step, 19) == 5e-4
    assert learning_rate(step, 20) == 2.5e-4

    cos = TrainConfig(iterations=22, lr=1e-3, schedule="cosine", warmup=1, min_lr=1e-5)
    assert learning_rate(cos, 0) == pytest.approx(1e-3)  # last warm-up step reaches lr
    assert learning_rate(cos, 1) == pytest.approx(1e-3)
    assert learning_rate(cos, 11) == pytest.approx((1e-3 + 1e-5) / 2)  # half way
    assert learning_rate(cos, 21) == pytest.approx(1e-5)  # the last step
    assert all(learning_rate(cos, i) > learning_rate(cos, i + 1) for i in range(1, 21))


def test_ema_averages_parameters_and_copies_buffers():
    torch.manual_seed(0)
    model = torch.nn.BatchNorm1d(3)  # has parameters and buffers
    model.weight.data.normal_()
    ema = EMA(model, decay=0.9)
    assert [ema.decay_at(n) for n in (0, 10, 80, 81, 1000)] == pytest.approx(
        [0.1, 0.55, 0.9, 0.9, 0.9])  # (1 + n) / (10 + n) until the decay is reached
    for step, expected_decay in ((0, 0.1), (500, 0.9)):
        before = ema.module.weight.detach().clone()
        model.weight.data.add_(1.0)
        model.running_mean.fill_(float(step))
        ema.update(model, step)
        mixed = expected_decay * before + (1 - expected_decay) * model.weight
        assert torch.allclose(ema.module.weight, mixed, atol=1e-6)
        assert torch.equal(ema.module.running_mean, model.running_mean)
    assert not ema.module.training and not ema.module.weight.requires_grad


def test_losses_and_udvd_multistage():
    a, b = torch.zeros(1, 3, 4, 4), torch.full((1, 3, 4, 4), 0.5)
    assert charbonnier_loss(a, b).item() == pytest.approx(0.5, abs=1e-5)
    assert charbonnier_loss(a, a).item() == pytest.approx(1e-3)

    torch.manual_seed(0)
    model = create("udvd", scale=4, channels=8, num_residual_blocks=1)  # UUDD: 2h, 4h, 4h, 4h
    lr, hr = torch.rand(2, 3, 6, 6), torch.rand(2, 3, 24, 24)
    forward = TrainingForward(model, needs_degradation=True, multistage=True)
    outputs = forward(lr, blur=torch.tensor([0.5, 2.0]), noise=torch.tensor([0.0, 10.0]))
    assert [tuple(o.shape[-2:]) for o in outputs] == [(12, 12), (24, 24), (24, 24), (24, 24)]
    expected = sum(torch.nn.functional.l1_loss(o, t)
                   for o, t in multistage_targets(hr, outputs))
    loss = sr_loss(outputs, hr, torch.nn.functional.l1_loss, multistage=True)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    only_last = sr_loss(outputs, hr, torch.nn.functional.l1_loss, multistage=False)
    assert only_last.item() == pytest.approx(
        torch.nn.functional.l1_loss(outputs[-1], hr).item(), rel=1e-6)
    assert loss.item() > only_last.item()


def test_prescaled_batches_use_the_ddet_core():
    torch.manual_seed(0)
    model = create("ddet-rgb", scale=2, num_blocks=1, channels=16, predictor_channels=8)
    x = torch.rand(1, 3, 16, 16)
    forward = TrainingForward(model, needs_degradation=False, multistage=False)
    assert torch.equal(forward(x, prescaled=True)[0], model.forward_prescaled(x))
    assert forward(x[..., :8, :8], prescaled=False)[0].shape == (1, 3, 16, 16)


# ------------------------------------------------------------------------------------------
# end to end


def test_end_to_end_training_improves_and_writes_everything(photos, tmp_path):
    raw = small_config(photos, iterations=30, ema_decay=0.8, warmup=2)
    raw["data"]["val"] = {"hr": str(photos / "val"), "every": 10, "at_start": True}
    raw["log"]["every"] = 5
    out = tmp_path / "run"
    result = train(raw, out)
    assert result.completed and result.iteration == 30

    for name in ("config.yaml", "state.pt", "log.csv", "summary.json", "model.safetensors",
                 "best.safetensors"):
        assert (out / name).is_file(), name
    assert config_to_dict(load_config(out / "config.yaml")) == \
        config_to_dict(config_from_dict(raw))

    with open(out / "log.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["iteration"]) for r in rows] == [0, 5, 10, 15, 20, 25, 30]
    assert rows[0]["loss"] == "" and all(float(r["it_per_s"]) > 0 for r in rows[1:])
    assert float(rows[-1]["loss"]) < float(rows[1]["loss"])
    psnrs = [float(r["val_psnr_y"]) for r in rows if r["val_psnr_y"]]
    assert len(psnrs) == 4 and psnrs[-1] > psnrs[1] > psnrs[0]  # untrained, 10, 20, 30

    summary = json.loads((out / "summary.json").read_text())
    assert summary["completed"] and summary["iteration"] == 30
    assert summary["machines"] == [describe_cpu()]  # the wall time names its machine
    assert summary["best"]["psnr_y"] == pytest.approx(max(psnrs), abs=1e-4)
    assert [v["iteration"] for v in summary["validation"]] == [0, 10, 20, 30]

    with safe_open(str(out / "model.safetensors"), "pt") as f:
        meta = f.metadata()
    assert meta["model"] == "dyconvsr" and meta["scale"] == "2" and meta["weights"] == "ema"
    assert meta["iterations"] == "30" and float(meta["wall_time_s"]) > 0
    assert yaml.safe_load(meta["config"])["train"]["ema_decay"] == 0.8
    assert json.loads(meta["model_config"]) == {}

    # The exported weights are the validated (EMA) weights, and validation measures exactly
    # as `dynsr eval` does: bicubic LR rounded to 8 bit, SR rounded, Y, crop = scale.
    weights = load_file(out / "model.safetensors")
    assert all(torch.equal(weights[k], v) for k, v in result.ema_model.state_dict().items())
    model = create("dyconvsr", scale=2)
    model.load_state_dict(weights)
    model.eval()
    hr = torch.from_numpy(skimage.data.chelsea()[60:188, 100:228]).permute(2, 0, 1) / 255.0
    hr = hr.double()
    lr = quantize(imresize(hr, 0.5))
    assert torch.equal(lr, Degradation(2).apply(hr, "chelsea.png"))
    sr = upscale_batch(model, lr.unsqueeze(0).float())[0].double()
    assert float(meta["val_psnr_y"]) == pytest.approx(evaluate_pair(sr, hr, 2)["psnr_y"],
                                                      abs=1e-9)
    assert psnrs[-1] == pytest.approx(float(meta["val_psnr_y"]), abs=1e-4)


def test_model_init_starts_from_given_weights(photos, tmp_path):
    torch.manual_seed(123)
    start = create("dyconvsr", scale=2)
    save_file({k: v.contiguous() for k, v in start.state_dict().items()}, tmp_path / "a.st")
    raw = small_config(photos, iterations=1, lr=1e-12)
    raw["model"]["init"] = str(tmp_path / "a.st")
    train(raw, tmp_path / "run")
    after = load_file(tmp_path / "run" / "model.safetensors")
    for key, value in start.state_dict().items():
        assert torch.allclose(after[key], value, atol=1e-9), key
    # Weights of another scale do not fit: named, before any training.
    other = create("dyconvsr", scale=4)
    save_file({k: v.contiguous() for k, v in other.state_dict().items()}, tmp_path / "b.st")
    raw["model"]["init"] = str(tmp_path / "b.st")
    with pytest.raises(ValueError, match=r"model\.init: .*b\.st: weights do not fit"):
        train(raw, tmp_path / "run2")
    # Not strict: the x2 weights start a x4 model wherever name and shape fit.
    raw = small_config(photos, iterations=1, lr=1e-12)
    raw["model"] = {"name": "dyconvsr", "scale": 4, "init": str(tmp_path / "a.st"),
                    "init_strict": False}
    raw["data"]["train"]["patch_size"] = 32
    train(raw, tmp_path / "run3")
    after = load_file(tmp_path / "run3" / "model.safetensors")
    fitting = [k for k, v in start.state_dict().items() if after[k].shape == v.shape]
    assert "head.weight" in fitting and "tail.weight" not in fitting
    for key in fitting:
        assert torch.allclose(after[key], start.state_dict()[key], atol=1e-9), key


def test_validation_on_realistic_pairs_is_dynsr_eval_realistic(photos, tmp_path):
    raw = small_config(photos, iterations=2)
    raw["data"]["val"] = {"hr": str(photos / "val"), "realistic": True, "seed": 3}
    train(raw, tmp_path / "run")
    meta_psnr = json.loads((tmp_path / "run" / "summary.json").read_text())["best"]["psnr_y"]
    out = tmp_path / "r.json"
    assert cli_main(["eval", "--model", "dyconvsr", "--weights",
                     str(tmp_path / "run" / "model.safetensors"), "--hr", str(photos / "val"),
                     "--scale", "2", "--realistic", "--seed", "3", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["psnr_y"] == pytest.approx(meta_psnr, abs=1e-4)
    raw["data"]["val"]["noise"] = 5.0
    with pytest.raises(ValueError, match="realistic draws its own"):
        train(raw, tmp_path / "run2")


def _weights(path) -> dict[str, torch.Tensor]:
    return load_file(path)


def _assert_same_state(a, b) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


RESUME_KEYS = {"iterations": 12, "ema_decay": 0.9, "warmup": 3, "grad_clip": 0.05,
               "precision": "bf16", "schedule": "step", "milestones": [8], "gamma": 0.5}


@pytest.fixture(scope="module")
def uninterrupted(photos, tmp_path_factory):
    out = tmp_path_factory.mktemp("uninterrupted")
    train(small_config(photos, **RESUME_KEYS), out)
    return out


def _sigterm_at(iteration: int):
    """An ``on_trainer`` hook sending this process SIGTERM right after ``iteration``."""
    def hook(trainer):
        step = trainer.optimizer_step

        def step_then_signal():
            step()
            if trainer.iteration == iteration:
                signal.raise_signal(signal.SIGTERM)
        trainer.optimizer_step = step_then_signal
    return hook


def test_resume_equals_uninterrupted_run(photos, uninterrupted, tmp_path):
    out = tmp_path / "split"
    # Four sessions, each ended differently: stop_after, time limit, SIGTERM, completion.
    first = train(small_config(photos, **RESUME_KEYS, stop_after=4), out)
    assert not first.completed and first.iteration == 4
    assert not (out / "model.safetensors").exists()
    assert load_state(out / "state.pt")["iteration"] == 4

    with pytest.raises(ValueError, match="already holds a run"):
        train(small_config(photos, **RESUME_KEYS), out)
    with pytest.raises(ValueError, match=r"differs from the saved run in train\.lr"):
        train(small_config(photos, **{**RESUME_KEYS, "lr": 1e-3}), out, resume=True)

    second = train(small_config(photos, **RESUME_KEYS, time_limit=1e-9), out, resume=True)
    assert second.iteration == 5 and load_state(out / "state.pt")["iteration"] == 5
    handler = signal.getsignal(signal.SIGTERM)
    third = train(small_config(photos, **RESUME_KEYS), out, resume=True,
                  on_trainer=_sigterm_at(8))
    assert third.iteration == 8 and load_state(out / "state.pt")["iteration"] == 8
    assert signal.getsignal(signal.SIGTERM) is handler  # the training's handler is gone

    last = train(small_config(photos, **RESUME_KEYS), out, resume=True)
    assert last.completed and last.iteration == 12
    # Bit-identical weights, EMA weights and optimiser moments.
    _assert_same_state(_weights(uninterrupted / "model.safetensors"),
                       _weights(out / "model.safetensors"))
    a, b = load_state(uninterrupted / "state.pt"), load_state(out / "state.pt")
    _assert_same_state(a["model"], b["model"])
    for pa, pb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values(),
                      strict=True):
        _assert_same_state(pa, pb)
    # The log reads as one run (rows of the stops included).
    with open(out / "log.csv", newline="") as f:
        assert [int(r["iteration"]) for r in csv.DictReader(f)] == [2, 4, 5, 6, 8, 10, 12]


def test_a_run_resumed_on_another_machine_lists_both(photos, tmp_path, monkeypatch):
    out = tmp_path / "run"
    train(small_config(photos, **RESUME_KEYS, stop_after=4), out)
    other = {**describe_cpu(), "model": "another CPU"}
    monkeypatch.setattr("dynsr.train.engine.describe_cpu", lambda: other)
    train(small_config(photos, **RESUME_KEYS, stop_after=8), out, resume=True)
    train(small_config(photos, **RESUME_KEYS), out, resume=True)  # same machine again
    summary = json.loads((out / "summary.json").read_text())
    assert summary["completed"] and summary["machines"] == [describe_cpu(), other]
    assert load_state(out / "state.pt")["machines"] == [describe_cpu(), other]


def test_a_run_resumed_from_its_state_alone_keeps_its_best_weights(photos, tmp_path):
    # Only state.pt travels between machines; the best weights must come back with it
    # even when no later validation beats them.
    raw = small_config(photos, iterations=8, ema_decay=0.9)
    raw["data"]["val"] = {"hr": str(photos / "val"), "every": 4}
    out = tmp_path / "run"
    train({**raw, "train": {**raw["train"], "stop_after": 4}}, out)
    written = (out / "best.safetensors").read_bytes()
    (out / "best.safetensors").unlink()
    state = load_state(out / "state.pt")
    state["best"]["psnr_y"] = 1e9  # nothing validated later can beat it
    torch.save(state, out / "state.pt")
    assert train(raw, out, resume=True).completed
    assert (out / "best.safetensors").read_bytes() == written
    assert load_state(out / "state.pt")["best_file"].numpy().tobytes() == written


def test_a_state_saved_before_newer_config_keys_existed_resumes(photos, tmp_path):
    # A run started by an older dynsr saved a configuration without keys added since
    # (model.init, train.multistage, ...): those take their defaults, not "changed".
    out = tmp_path / "run"
    train(small_config(photos, iterations=6, stop_after=2), out)
    state = load_state(out / "state.pt")
    del state["config"]["model"]["init"], state["config"]["model"]["init_strict"]
    del state["config"]["train"]["multistage"]
    torch.save(state, out / "state.pt")
    done = train(small_config(photos, iterations=6), out, resume=True)
    assert done.completed and done.iteration == 6
    # A key that is really different is still refused.
    state = load_state(out / "state.pt")
    del state["config"]["model"]["init"]
    state["config"]["train"]["lr"] = 0.5
    torch.save(state, out / "state.pt")
    with pytest.raises(ValueError, match=r"differs from the saved run in train\.lr"):
        train(small_config(photos, iterations=8), out, resume=True, reschedule=True)


def test_reschedule_changes_the_length_on_resume_and_says_so(photos, tmp_path):
    out = tmp_path / "run"
    train(small_config(photos, iterations=8, schedule="cosine", stop_after=4), out)
    with pytest.raises(ValueError, match=r"differs from the saved run in train\.iterations"):
        train(small_config(photos, iterations=6, schedule="cosine"), out, resume=True)
    with pytest.raises(ValueError, match="not past the saved iteration 4"):
        train(small_config(photos, iterations=4, schedule="cosine"), out, resume=True,
              reschedule=True)
    with pytest.raises(ValueError, match=r"train\.lr"):  # only the length may change
        train(small_config(photos, iterations=6, schedule="cosine", lr=1e-3), out,
              resume=True, reschedule=True)
    done = train(small_config(photos, iterations=6, schedule="cosine"), out, resume=True,
                 reschedule=True)
    assert done.completed and done.iteration == 6
    change = [{"iteration": 4, "from": 8, "to": 6}]
    assert json.loads((out / "summary.json").read_text())["schedule_changes"] == change
    state = load_state(out / "state.pt")
    assert state["schedule_changes"] == change
    # From iteration 4 on, the learning rate is the 6-iteration schedule's.
    assert state["scheduler"]["lr"] == pytest.approx(
        learning_rate(config_from_dict(small_config(photos, iterations=6,
                                                    schedule="cosine")).train, 6))


KILLER = textwrap.dedent("""
    import os, signal, sys
    from dynsr.train.engine import train
    from dynsr.train.config import load_config

    def kill_at_7(trainer):
        step = trainer.optimizer_step
        def step_then_maybe_die():
            step()
            if trainer.iteration == 7:  # after the checkpoint at 4, mid-way to the next
                os.kill(os.getpid(), signal.SIGKILL)
        trainer.optimizer_step = step_then_maybe_die

    train(load_config(sys.argv[1]), sys.argv[2], on_trainer=kill_at_7)
""")


def test_killed_process_resumes_to_the_same_weights(photos, uninterrupted, tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(small_config(photos, **RESUME_KEYS)))
    out = tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", KILLER, str(config), str(out)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert load_state(out / "state.pt")["iteration"] == 4
    assert not (out / "model.safetensors").exists()

    with open(out / "log.csv", newline="") as f:  # the killed session logged up to 6
        assert [int(r["iteration"]) for r in csv.DictReader(f)] == [2, 4, 6]

    assert main(["train", str(config), "--out", str(out), "--resume"]) == 0
    _assert_same_state(_weights(uninterrupted / "model.safetensors"),
                       _weights(out / "model.safetensors"))
    with open(out / "log.csv", newline="") as f:  # rows after the checkpoint were redone
        assert [int(r["iteration"]) for r in csv.DictReader(f)] == [2, 4, 6, 8, 10, 12]


# ------------------------------------------------------------------------------------------
# other models and data kinds, the command line


def test_udvd_on_variational_data_and_ddet_on_realsr_pairs(photos, tmp_path):
    udvd = small_config(photos, iterations=2, batch_size=2, ema_decay=0.5)
    udvd["model"] = {"name": "udvd", "scale": 2,
                     "config": {"channels": 8, "num_residual_blocks": 1}}
    udvd["data"]["train"].update(patch_size=24, degradation="variational",
                                 degradation_options={"spatially_variant": 0.5})
    udvd["data"]["val"] = {"hr": str(photos / "val"), "blur": 1.3, "noise": 15}
    result = train(udvd, tmp_path / "udvd")
    assert result.completed and math.isfinite(result.last_loss)
    assert math.isfinite(result.best_psnr_y)

    pairs = tmp_path / "realsr"
    pairs.mkdir()
    photo = torch.from_numpy(skimage.data.astronaut()[:96, :96]).permute(2, 0, 1) / 255.0
    hr = photo.double()
    lr_up = quantize(imresize(quantize(imresize(hr, 0.5)), 2))
    for name, image in (("a_HR.png", hr), ("a_LR2.png", lr_up)):
        array = (image * 255).round().byte().permute(1, 2, 0).numpy()
        Image.fromarray(array).save(pairs / name)
    ddet = small_config(photos, iterations=2, batch_size=2)
    ddet["model"] = {"name": "ddet-rgb", "scale": 2,
                     "config": {"num_blocks": 1, "channels": 16, "predictor_channels": 8}}
    ddet["data"]["train"] = {"type": "paired_realsr", "paths": str(pairs), "patch_size": 32}
    result = train(ddet, tmp_path / "ddet")
    assert result.completed and math.isfinite(result.last_loss)


def test_command_line(photos, tmp_path, capsys):
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(small_config(photos)))
    assert main(["train", str(config), "train.iterations=3", "--print-config"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["train"]["iterations"] == 3 and printed["train"]["optimizer"] == "adam"

    out = tmp_path / "out"
    assert main(["train", str(config), "train.iterations=3", "--out", str(out)]) == 0
    assert (out / "model.safetensors").is_file()
    capsys.readouterr()
    assert main(["train", str(config), "train.lernrate=3", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "train.lernrate: unknown key" in err and len(err.strip().splitlines()) == 1


RECIPES = sorted((Path(__file__).resolve().parent.parent / "configs").glob("*.yaml"))


def test_recipes_are_valid(tmp_path):
    """Every shipped config passes the schema, builds its model, and its data.train mapping
    builds a data set (its paths pointed at a temporary image, not at the machine's data)."""
    assert len(RECIPES) >= 22
    big = tmp_path / "hr"
    big.mkdir()
    photo = skimage.data.astronaut()[:300, :300]
    Image.fromarray(photo).save(big / "a.png")
    for path in RECIPES:
        text = path.read_text()
        assert text.startswith("# ") and "Time" in text, f"{path.name}: header comment"
        cfg = load_config(path)
        assert cfg.name == path.stem
        create(cfg.model.name, scale=cfg.model.scale, **cfg.model.config)
        data = dict(cfg.data.train)
        if data["type"] == "paired_realsr" and "hr" in data:  # two folders, same file names
            data["hr"] = data["lr"] = str(big / "a.png")
        elif data["type"] == "paired_realsr":
            realsr = tmp_path / f"realsr{cfg.model.scale}"
            realsr.mkdir(exist_ok=True)
            Image.fromarray(photo).save(realsr / "a_HR.png")
            Image.fromarray(photo).save(realsr / f"a_LR{cfg.model.scale}.png")
            data["paths"] = str(realsr)
        else:
            data["paths"] = str(big / "a.png")
        build_dataset(data, cfg.model.scale, cfg.train.seed)
        if path.stem.endswith("_cpu"):
            assert cfg.train.threads is None and cfg.train.workers == 0, path.name
