"""The layering of docs/architecture.md, enforced: import-linter contracts, every engine module
placed in a stage, no function-level imports of project modules, no references outside the project."""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

from evorl_core.store.rundir import layout_text

ROOT = Path(__file__).resolve().parents[1]
ENGINE = ROOT / "evorl_core"


def _contracts() -> list[dict]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]


def test_import_contracts_are_kept():
    lint = Path(sys.executable).with_name("lint-imports")
    proc = subprocess.run([str(lint)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "0 broken" in proc.stdout


def _layer_names(container: str) -> set[str]:
    for contract in _contracts():
        if contract["type"] == "layers" and contract["containers"] == [container]:
            return {name.strip() for layer in contract["layers"] for name in layer.split("|")}
    raise AssertionError(f"no layers contract for {container}")


def test_every_engine_module_has_a_stage():
    """A new module or family must be placed in a layers contract, or it could import anything:
    every top-level module and family of the engine, and every module of each family."""
    modules = {p.stem for p in ENGINE.glob("*.py") if p.stem != "__init__"}
    modules |= {p.name for p in ENGINE.iterdir() if (p / "__init__.py").exists()}
    assert modules == _layer_names("evorl_core")
    for family in ("agents", "data", "deploy", "evaluation", "store", "system", "training"):
        inner = {p.stem for p in (ENGINE / family).glob("*.py") if p.stem != "__init__"}
        assert inner == _layer_names(f"evorl_core.{family}"), family
    # modes: every mode folder and the interface, kept apart by one contract
    modes = {p.stem for p in (ENGINE / "modes").glob("*.py") if p.stem != "__init__"}
    modes |= {p.name for p in (ENGINE / "modes").iterdir() if (p / "__init__.py").exists()}
    assert modes == _layer_names("evorl_core.modes")


def test_modules_stay_readable():
    """No engine module over 500 lines, no UI module or page over 400."""
    long = [f"{p.relative_to(ROOT)}: {n}" for p in ENGINE.rglob("*.py")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > 500]
    long += [f"{p.relative_to(ROOT)}: {n}" for p in [*(ROOT / "evorl_ui").rglob("*.py"), *(ROOT / "pages").glob("*.py")]
             if (n := len(p.read_text(encoding="utf-8").splitlines())) > 400]
    assert long == []


def test_every_ui_package_module_has_a_layer():
    """The dashboard's presenters and charts packages keep their internal order the same way."""
    for package in ("presenters", "charts"):
        modules = {p.stem for p in (ROOT / "evorl_ui" / package).glob("*.py") if p.stem != "__init__"}
        assert modules == _layer_names(f"evorl_ui.{package}"), package


def _function_level_project_imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for fn in ast.walk(tree):
        if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for node in ast.walk(fn):
            if isinstance(node, ast.ImportFrom) and (node.level > 0 or (node.module or "").startswith("evorl")):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
            elif isinstance(node, ast.Import) and any(a.name.startswith("evorl") for a in node.names):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    return found


def test_no_function_level_imports_of_project_modules():
    """Lazy imports hid an import cycle once; project modules are imported at the top."""
    files = [*ENGINE.rglob("*.py"), *(ROOT / "pages").glob("*.py"), *(ROOT / "evorl_ui").rglob("*.py")]
    offenders = [hit for path in files for hit in _function_level_project_imports(path)]
    assert offenders == []


def test_code_and_docs_cite_only_project_files():
    files = [*ENGINE.rglob("*.py"), *(ROOT / "pages").glob("*.py"), *(ROOT / "evorl_ui").rglob("*.py"),
             *(ROOT / "docs").glob("*.md"), ROOT / "README.md", *(ROOT / "tests").glob("*.py")]
    marker = "DESIGN" + ".md"  # split so that this file does not cite it either
    assert [str(p.relative_to(ROOT)) for p in files if marker in p.read_text(encoding="utf-8")] == []


def test_the_readme_lists_the_run_directory_layout_of_the_code():
    """The run-directory layout is written once (store.rundir.LAYOUT); the README's block is it."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert layout_text() in readme
