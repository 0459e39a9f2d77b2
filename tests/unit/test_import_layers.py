"""Imports run one way (framestream -> streams -> processors -> schemas) and never in a circle.

The layer contracts live in pyproject.toml ([tool.importlinter]); these tests run them, and
show on a small made-up tree that a broken layer and a cycle are caught.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grimp
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("framestream", "streams", "processors", "schemas")


def import_cycles(*packages: str) -> list[list[str]]:
    """Groups of modules that import each other, directly or through others (Tarjan's SCCs)."""
    graph = grimp.build_graph(*packages)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for imported in graph.find_modules_directly_imported_by(module):
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in on_stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return cycles


def lint_imports(config: Path, cwd: Path) -> tuple[int, str]:
    """import-linter's exit status and report. In a subprocess: it reconfigures logging, which would
    silence every logger of the tests that run after it in this process."""
    command = [
        sys.executable,
        "-c",
        "import sys; from importlinter.cli import lint_imports_command; "
        "sys.argv = ['lint-imports', '--config', sys.argv[1], '--no-cache']; lint_imports_command()",
        str(config),
    ]
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    return result.returncode, result.stdout + result.stderr


def write_tree(root: Path, files: dict[str, str]) -> None:
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_the_layer_contracts_hold() -> None:
    code, report = lint_imports(REPO_ROOT / "pyproject.toml", REPO_ROOT)
    assert code == 0, report


def test_no_module_imports_itself_through_others() -> None:
    assert import_cycles(*PACKAGES) == []


@pytest.fixture
def made_up_tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Two layers, ``upper`` over ``lower``, where ``lower.b`` wrongly imports ``upper.a``."""
    write_tree(
        tmp_path,
        {
            "upper/__init__.py": "",
            "upper/a.py": "import lower.b\n",
            "lower/__init__.py": "",
            "lower/b.py": "import upper.a\n",
            "contracts.toml": '[tool.importlinter]\nroot_packages = ["upper", "lower"]\n\n'
            '[[tool.importlinter.contracts]]\nname = "upper over lower"\ntype = "layers"\n'
            'layers = ["upper", "lower"]\n',
        },
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_a_lower_layer_importing_a_higher_one_is_caught(made_up_tree: Path) -> None:
    code, report = lint_imports(made_up_tree / "contracts.toml", made_up_tree)
    assert code == 1 and "upper over lower BROKEN" in report, report


def test_a_cycle_is_caught(made_up_tree: Path) -> None:
    assert import_cycles("upper", "lower") == [["lower.b", "upper.a"]]
