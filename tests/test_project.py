"""The README's commands are the ones CI runs."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()
    command = ci[-1]
    assert "pytest" in command
    assert command in (ROOT / "README.md").read_text()


def test_bundled_examples_are_shipped():
    examples = ROOT / "dynsr" / "examples"
    assert sorted(p.name for p in examples.glob("*.png")) == ["astronaut.png", "coffee.png"]
