"""The architecture holds: light commands stay light, and imports keep to their layers
(the layers and cycles themselves are import-linter's contracts, run by `make test`)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SOURCES = sorted((REPO / "pipeline").rglob("*.py")) + [REPO / "cli.py"]
HEAVY = ("torch", "torchvision", "ray")


def _modules_loaded_by(*arguments: str) -> list[str]:
    """The heavy modules a CLI command loads, run in a fresh interpreter."""
    script = (
        "import json, sys\nimport cli\n"
        f"try:\n    cli.app({list(arguments)!r})\nexcept SystemExit:\n    pass\n"
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120)
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_help_does_not_load_torch_or_ray():
    assert _modules_loaded_by("--help") == []


def test_validate_does_not_load_torch_or_ray(tmp_path, repo):
    manifest = tmp_path / "m.yaml"
    manifest.write_text(f"output_dir: out\njobs:\n  - name: a\n    input: {repo}/samples/photos\n"
                        f"    style: {repo}/samples/styles/starry_night.jpg\n")
    assert _modules_loaded_by("validate", str(manifest)) == []


def test_a_run_does_load_torch(tmp_path, repo):
    """The check above can fail: the same probe sees torch when a command needs it."""
    assert "torch" in _modules_loaded_by("info", "--device", "cpu")


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: str(p.relative_to(REPO)))
def test_no_private_names_cross_modules_and_nothing_imports_the_cli(source):
    tree = ast.parse(source.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module != "__future__":
            private = [alias.name for alias in node.names if alias.name.startswith("_") and alias.name != "__version__"]
            assert not private, f"{source.name} imports {private} from {node.module}"
        if source.name != "cli.py" and isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            assert "cli" not in names, f"{source.name} imports the CLI"


def test_only_the_engine_registry_names_an_engine():
    """Callers hold an Engine and never ask which: the engine classes are named, and built,
    only in pipeline/engine/engines.py (whose engine_for picks one)."""
    registry = REPO / "pipeline/engine/engines.py"
    naming = []
    for source in SOURCES:
        if source == registry:
            continue
        names = {node.id for node in ast.walk(ast.parse(source.read_text())) if isinstance(node, ast.Name)}
        names |= {node.attr for node in ast.walk(ast.parse(source.read_text())) if isinstance(node, ast.Attribute)}
        naming += [f"{source.relative_to(REPO)}: {name}" for name in ("OptimizerEngine", "TrainedModel") if name in names]
    assert naming == []
