"""``dynsr eval`` run once per result: the benchmark tables' shared step."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def run_dynsr(argv: list[str]) -> None:
    """``dynsr ARGV`` as its own process (the command as documented), quiet unless it fails."""
    result = subprocess.run([sys.executable, "-m", "dynsr", *argv], capture_output=True,
                            text=True, check=False)
    if result.returncode:
        raise SystemExit(f"dynsr {' '.join(argv)} failed:\n{result.stderr.strip()}")


def cached_eval(path: Path, argv: list[str]) -> dict:
    """The JSON of ``dynsr eval ARGV --json PATH``, run only if PATH is missing."""
    if not path.exists():
        run_dynsr(["eval", *argv, "--json", str(path)])
    return json.loads(path.read_text())
