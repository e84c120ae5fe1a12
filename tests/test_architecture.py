"""The import contracts of `make lint` catch a worker that loads the web framework, or an edge that loads the
control plane (docs/architecture.md)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=tree, env=env, capture_output=True, text=True,
                          timeout=120)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    for package in ("shared", "control_plane", "edge"):
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    return tmp_path


def test_the_tree_as_it_is_keeps_every_contract(tree: Path) -> None:
    done = lint_imports(tree)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize(("module", "line", "contract"), [
    ("control_plane/ingest/worker.py", "import starlette.responses", "the ingest worker imports only shared"),
    ("control_plane/webhooks/dispatcher.py", "import control_plane.api.app", "the webhook dispatcher imports only"),
    ("edge/lookup.py", "import control_plane", "the edge imports only shared"),
    ("shared/resolve.py", "import starlette", "shared imports neither side"),
    ("control_plane/jobs/worker.py", "import control_plane.api.http", "the export/import job worker imports"),
    ("control_plane/services/qr_codes.py", "import starlette.requests", "services are below HTTP"),
    ("control_plane/api/routes/qr_groups.py", "import control_plane.api.routes.qr_codes", "route modules are"),
    ("control_plane/dashboard/visit.py", "import control_plane.api.routes.qr_codes",
     "the dashboard calls the services as the API does"),
])
def test_a_forbidden_import_breaks_the_lint(tree: Path, module: str, line: str, contract: str) -> None:
    path = tree / module
    path.write_text(path.read_text() + f"\n{line}  # noqa\n")
    done = lint_imports(tree)
    assert done.returncode != 0
    assert f"{contract}" in done.stdout and "BROKEN" in done.stdout
