"""The package's layering: data flows one way (io → degrade → model → metrics → evaluation),
the command line only parses and prints and nothing imports it, operators stay pure."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "dynsr"


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def _modules(*folders: Path) -> list[Path]:
    return [p for folder in folders for p in sorted(folder.rglob("*.py"))]


def test_nothing_outside_the_command_line_imports_it():
    entry = PACKAGE / "__main__.py"  # `python -m dynsr` is the command line
    offenders = {str(p.relative_to(ROOT)): sorted(m for m in _imports(p)
                                                   if m.startswith("dynsr.cli"))
                 for p in _modules(PACKAGE, ROOT / "benchmarks")
                 if PACKAGE / "cli" not in p.parents and p != entry}
    assert not {k: v for k, v in offenders.items() if v}


def test_lower_layers_do_not_import_higher_ones():
    higher = {
        # native kernels sit under ops: they know tensors' memory, nothing of the methods.
        "native": ("dynsr.ops", "dynsr.io", "dynsr.degrade", "dynsr.models", "dynsr.metrics",
                   "dynsr.evaluation", "dynsr.train", "dynsr.zeroshot", "dynsr.upscale"),
        "ops": ("dynsr.io", "dynsr.degrade", "dynsr.models", "dynsr.metrics",
                "dynsr.evaluation", "dynsr.train", "dynsr.zeroshot", "dynsr.upscale"),
        "io": ("dynsr.degrade", "dynsr.models", "dynsr.metrics", "dynsr.evaluation",
               "dynsr.train", "dynsr.zeroshot"),
        "metrics": ("dynsr.models", "dynsr.evaluation", "dynsr.train", "dynsr.zeroshot"),
        "models": ("dynsr.evaluation", "dynsr.train", "dynsr.export"),
    }
    for layer, forbidden in higher.items():
        for path in _modules(PACKAGE / layer):
            bad = sorted(m for m in _imports(path) if m.startswith(forbidden))
            assert not bad, f"{path.relative_to(ROOT)} imports {bad}"
