"""The tree a newcomer reads: every module says what it does first and stays small; folders by role."""

from __future__ import annotations

import ast

from tests.conftest import REPO

MAX_LINES = 300  # a module past this is two modules
PACKAGES = ("ser", "flows", "bench")


def modules() -> list:
    return sorted(p for pkg in PACKAGES for p in (REPO / pkg).rglob("*.py") if "__pycache__" not in p.parts)


def test_every_module_opens_with_a_docstring_and_stays_small():
    for path in modules():
        text = path.read_text()
        if not text.strip():
            continue  # an empty package marker
        assert ast.get_docstring(ast.parse(text)), f"{path.relative_to(REPO)}: no module docstring"
        assert len(text.splitlines()) <= MAX_LINES, f"{path.relative_to(REPO)}: {len(text.splitlines())} lines"


def test_the_package_is_folders_by_role_and_test_code_stays_out_of_it():
    roles = {p.name for p in (REPO / "ser").iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
    assert roles == {"cli", "data", "features", "training", "serving"}
    top = {p.stem for p in (REPO / "ser").glob("*.py")}
    # shared ground only: params (config, the corpora's sections, their dotted overrides), I/O, audio, labels, plots
    assert top == {"__init__", "__main__", "config", "corpora", "overrides", "io", "audio", "labels", "plots"}
    for path in (REPO / "ser").rglob("*.py"):
        assert "testing" not in path.stem and "benchmark" not in path.stem, path
    for sub in ("data", "features", "training", "serving"):
        assert (REPO / "tests" / "unit" / sub).is_dir(), f"tests/unit/{sub} mirrors ser/{sub}"


def test_bench_and_flows_import_without_path_tricks():
    for path in modules():
        if path.parts[-2] in ("bench", "flows") or "ser" in path.parts:
            assert "sys.path.insert" not in path.read_text(), path
