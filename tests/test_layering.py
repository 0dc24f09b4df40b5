"""The service half stays free of torch and of the training package."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from tests.assets import REPO


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_app_never_imports_torch_or_training() -> None:
    for path in (REPO / "app").rglob("*.py"):
        forbidden = _imported_modules(path) & {"torch", "training", "torchvision"}
        assert not forbidden, f"{path.relative_to(REPO)} imports {forbidden}"


def test_serving_loads_no_torch() -> None:
    probe = (
        "import sys, faceverify.cli, app.main, app.server; "
        "faceverify.cli.build_parser(); "
        "sys.exit('torch' in sys.modules or 'training.build' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, f"serving imports loaded torch: {done.stderr}"
