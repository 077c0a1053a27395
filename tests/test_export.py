"""Tests for dynsr.export: ONNX graphs with dynamic batch/height/width match PyTorch.

Every family is exported once and run with onnxruntime on crops of scikit-image's astronaut at
two LR sizes (24×20 with batch 2, 32×28 with batch 1): a size or batch baked into the graph
from the example input would fail the shape or value comparison. Models are small configs
of the registered ones (fewer blocks / channels) to keep the tests fast on a busy CPU.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import skimage.data
import torch
from safetensors.torch import save_file

from dynsr.cli.main import main
from dynsr.degrade import degradation_map
from dynsr.export import TOLERANCE, onnx_available, to_onnx, verify_onnx
from dynsr.models import create

SIZES = ((24, 20), (32, 28))


def astronaut(height: int, width: int, batch: int = 1) -> torch.Tensor:
    """(batch, 3, height, width) float32 crops of the astronaut photo (shifted per entry)."""
    image = skimage.data.astronaut().astype(np.float32) / 255.0
    crops = [image[60 + 9 * i:60 + 9 * i + height, 200 + 6 * i:200 + 6 * i + width]
             for i in range(batch)]
    return torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).contiguous()


def export_and_check(model: torch.nn.Module, scale: int, path: Path) -> dict:
    result = to_onnx(model, scale, path, verify=False)
    assert result.path == path and path.is_file()
    diffs = verify_onnx(path, model, sizes=SIZES, images=astronaut)
    assert set(diffs) == set(SIZES)
    assert max(diffs.values()) < TOLERANCE
    return diffs


def session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def test_onnx_extra_is_installed() -> None:
    assert onnx_available()


def test_bicubic_matches_matlab_imresize_at_any_size(tmp_path: Path) -> None:
    # Bicubic is MATLAB imresize, computed polyphase in the graph; x3 also checks odd phases.
    for scale in (2, 3):
        path = tmp_path / f"bicubic_x{scale}.onnx"
        export_and_check(create("bicubic", scale=scale), scale, path)
    # Tiny inputs mirror their borders more than once: still MATLAB's result.
    model = create("bicubic", scale=3)
    diffs = verify_onnx(path, model, sizes=((2, 1), (1, 3)), images=astronaut)
    assert max(diffs.values()) < TOLERANCE


def test_graph_axes_are_symbolic(tmp_path: Path) -> None:
    path = tmp_path / "bicubic.onnx"
    to_onnx("bicubic", 2, path, verify=False)
    graph = onnx.load(str(path)).graph
    (lr,) = graph.input
    dims = [d.dim_param or d.dim_value for d in lr.type.tensor_type.shape.dim]
    assert dims == ["batch", 3, "height", "width"]
    out_dims = [d.dim_param or d.dim_value for d in graph.output[0].type.tensor_type.shape.dim]
    assert out_dims == ["batch", 3, "out_height", "out_width"]


@pytest.mark.parametrize(("name", "scale"), [
    ("ddet", 2), ("ddet-rgb", 3), ("ddet-release", 4), ("kpn7", 2), ("kpn7-pr-cdm", 3),
])
def test_ddet_variants(tmp_path: Path, name: str, scale: int) -> None:
    # Sizes not multiples of 4 exercise the trunk's padding; the bicubic pre-upscale is in
    # the graph, so the input is the LR image.
    torch.manual_seed(0)
    model = create(name, scale=scale, num_blocks=1)
    export_and_check(model, scale, tmp_path / f"{name}.onnx")


def test_dyconvsr(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = create("dyconvsr", scale=2)
    # Make the dynamic-conv branch matter: random init leaves the output close to the skip.
    with torch.no_grad():
        model.tail.weight.mul_(20.0)
        model.dynamic.fc2.weight.mul_(50.0)  # peaked attention: the banks differ per sample
    path = tmp_path / "dyconvsr.onnx"
    export_and_check(model, 2, path)
    # Odd sides (padding to even sizes inside the graph) at batch 3.
    diffs = verify_onnx(path, model, sizes=((27, 21), (9, 3)),
                        images=lambda h, w, b: astronaut(h, w, 3 if b > 1 else 1))
    assert max(diffs.values()) < TOLERANCE


def test_udvd_with_degradation_map_input(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = create("udvd-lite", scale=4, channels=8, num_residual_blocks=1)  # UUDD: 2 U blocks
    path = tmp_path / "udvd.onnx"
    export_and_check(model, 4, path)
    names = [i.name for i in session(path).get_inputs()]
    assert names == ["lr", "degradation_map"]
    # The documented way to build the map: dynsr.degrade.degradation_map, batch 1 broadcast.
    lr = astronaut(20, 16, batch=2)
    dmap = degradation_map(width=2.0, noise_sigma=10.0, size=(20, 16))
    (sr,) = session(path).run(None, {"lr": lr.numpy(), "degradation_map": dmap.numpy()})
    with torch.no_grad():
        expected = model(lr, blur=2.0, noise=10.0)
    assert sr.shape == (2, 3, 80, 64)
    assert np.abs(sr - expected.numpy()).max() < TOLERANCE


def test_export_by_name_with_weights_and_default_verification(tmp_path: Path) -> None:
    torch.manual_seed(3)
    trained = create("dyconvsr", scale=3)
    with torch.no_grad():
        trained.tail.weight.mul_(10.0)
    weights = tmp_path / "dyconvsr_x3.safetensors"
    save_file({k: v.contiguous() for k, v in trained.state_dict().items()}, str(weights))
    path = tmp_path / "named.onnx"
    result = to_onnx("dyconvsr", 3, path, weights=weights)
    assert len(result.max_abs_diff) == 2 and max(result.max_abs_diff.values()) < TOLERANCE
    lr = astronaut(24, 20)
    (sr,) = session(path).run(None, {"lr": lr.numpy()})
    with torch.no_grad():
        expected = trained.eval()(lr)
    assert np.abs(sr - expected.numpy()).max() < TOLERANCE


def test_refuses_mismatched_scale(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="scale"):
        to_onnx(create("bicubic", scale=2), 3, tmp_path / "x.onnx")
    assert not list(tmp_path.iterdir())


def test_cli_export(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "bicubic.onnx"
    assert main(["export", "bicubic", "--scale", "2", "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert out.is_file() and "onnxruntime matches PyTorch" in printed
    # Never overwrites unless asked.
    assert main(["export", "bicubic", "--scale", "2", "-o", str(out)]) == 1
    assert "exists" in capsys.readouterr().err
    assert main(["export", "bicubic", "--scale", "2", "-o", str(out), "--overwrite",
                 "--no-verify", "--opset", "18"]) == 0
    assert onnx.load(str(out)).opset_import[0].version == 18


def test_every_registered_model_has_an_onnx_adapter() -> None:
    from dynsr.models import available, onnx_adapter

    for spec in available():
        model = create(spec.name, scale=2).eval()
        adapter = onnx_adapter(model)
        assert adapter.input_names[0] == "lr"
        inputs = adapter.inputs(astronaut(8, 8))
        assert len(inputs) == len(adapter.input_names)
        with torch.no_grad():
            assert adapter.reference(*inputs).shape == (1, 3, 16, 16)


def test_export_goes_through_the_registry_hook(tmp_path: Path) -> None:
    # A model class of its own: exported only once it registers an adapter, and the exporter
    # uses the adapter's graph, inputs and reference (here: a doubling, traced as is).
    from dynsr.models import OnnxAdapter, register_onnx

    class Doubling(torch.nn.Module):
        scale = 2

        def forward(self, lr: torch.Tensor) -> torch.Tensor:
            return torch.nn.functional.interpolate(lr, scale_factor=2, mode="nearest")

    with pytest.raises(ValueError, match="does not support Doubling"):
        to_onnx(Doubling(), 2, tmp_path / "d.onnx", verify=False)
    calls = []

    @register_onnx(Doubling)
    def doubling_onnx(model: Doubling) -> OnnxAdapter:
        calls.append(model)
        return OnnxAdapter(model, reference=lambda lr: model(lr))

    result = to_onnx(Doubling(), 2, tmp_path / "d.onnx", verify=True)
    assert calls and result.input_names == ("lr",) and max(result.max_abs_diff.values()) == 0
    with pytest.raises(ValueError, match="registered twice"):
        register_onnx(Doubling)(doubling_onnx)


def test_exporter_imports_no_model_internals() -> None:
    import ast

    import dynsr.export

    tree = ast.parse(Path(dynsr.export.__file__).read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert not {m for m in imported if m and m.startswith("dynsr.models.")}, imported
