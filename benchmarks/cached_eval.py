"""``dynsr eval`` run once per result: the benchmark tables' shared step."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

from dynsr.cli.main import main as dynsr_main


def cached_eval(path: Path, argv: list[str]) -> dict:
    """The JSON of ``dynsr eval ARGV --json PATH``, run (quietly) only if PATH is missing."""
    if not path.exists():
        argv = ["eval", *argv, "--json", str(path)]
        with contextlib.redirect_stdout(io.StringIO()):
            if dynsr_main(argv):
                raise SystemExit(f"dynsr eval failed: {' '.join(argv)}")
    return json.loads(path.read_text())
