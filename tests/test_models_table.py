"""`dynsr models`: the stored table of parameters and FLOPs matches the registry and fresh
counts, and listing needs neither torch nor building a model."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from dynsr.cli.main import main
from dynsr.models import available, create, get_spec
from dynsr.models.complexity import MODEL_TABLE, count_parameters, measure_model
from dynsr.upscale.manifest import find_weights

TABLE = json.loads(MODEL_TABLE.read_text())
REGENERATE = "stale: run python benchmarks/model_table.py"


def test_the_table_lists_every_registered_model_as_registered():
    assert list(TABLE["models"]) == [spec.name for spec in available()], REGENERATE
    for spec in available():
        row = TABLE["models"][spec.name]
        assert (row["summary"], row["paper"], row["non_blind"]) == (
            spec.summary, spec.paper, spec.needs_degradation), REGENERATE
        assert [int(s) for s in row["scales"]] == list(spec.scales), REGENERATE


@pytest.mark.parametrize("name", [spec.name for spec in available()])
def test_stored_parameters_are_the_models(name):
    # The network the shipped weights build (their manifest configuration), else the default.
    for scale, stored in TABLE["models"][name]["scales"].items():
        entry = find_weights(name, int(scale))
        model = create(name, scale=int(scale), **(entry.config if entry else {}))
        assert stored["parameters"] == count_parameters(model), f"{name} x{scale}: {REGENERATE}"


# Counting FLOPs runs the model: the cheap ones every time (the others take ~20 s together).
@pytest.mark.parametrize(("name", "scale"), [("bicubic", 2), ("bicubic", 3), ("bicubic", 4),
                                             ("dyconvsr", 2), ("dyconvsr", 3), ("dyconvsr", 4),
                                             ("udvd-lite", 2)])
def test_stored_flops_equal_a_fresh_count(name, scale):
    assert TABLE["models"][name]["scales"][str(scale)] == measure_model(name, scale), REGENERATE


def test_listing_reads_the_table_without_torch():
    code = ("import sys; from dynsr.cli.main import main; code = main(['models']); "
            "assert code == 0 and 'torch' not in sys.modules, sorted(sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=False)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split()[:5] == ["model", "scale", "params", "GFLOPs", "weights"]
    dyconvsr_x2 = next(line for line in lines if line.startswith("dyconvsr ") and " x2 " in line)
    assert "59,982" in dyconvsr_x2 and " 1.05 " in dyconvsr_x2 and " yes " in dyconvsr_x2


def test_measure_counts_afresh(monkeypatch, capsys):
    import dynsr.models.registry as registry

    # Two cheap models, so the fresh count takes a second; --json gives the same rows.
    monkeypatch.setattr(registry, "available", lambda: [get_spec("bicubic"),
                                                        get_spec("dyconvsr")])
    assert main(["models", "--measure", "--json"]) == 0
    measured = json.loads(capsys.readouterr().out)
    assert main(["models", "--json"]) == 0
    stored = {(r["name"], r["scale"]): r for r in json.loads(capsys.readouterr().out)["models"]}
    assert [(r["name"], r["scale"]) for r in measured["models"]] == [
        ("bicubic", 2), ("bicubic", 3), ("bicubic", 4),
        ("dyconvsr", 2), ("dyconvsr", 3), ("dyconvsr", 4)]
    for row in measured["models"]:
        assert row == stored[(row["name"], row["scale"])]
    assert measured["lr_size_for_gflops"] == [256, 256]
