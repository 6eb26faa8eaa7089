"""The package is the pipeline: a stage imports only the stages before it, and inside a stage's package a module
imports only the modules before it (the orders the package docstrings give)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import stackcube

PACKAGE = Path(stackcube.__file__).parent

SHARED = (
    *("_version", "_hrefs", "_share", "_text", "settings", "errors", "_remedies", "options"),
    *("_band_index", "_bbox", "_keywords", "_georef", "_physical", "_progress", "_retry", "_sync", "_workers"),
)
"""Used by every stage; they import nothing of a stage."""
STAGES = (
    ("search",),
    ("assets",),
    ("tiff",),
    ("bands", "projection"),
    ("sources",),
    ("grid",),
    ("plan",),
    ("union",),
    ("cube", "extend"),
    ("store",),
    ("quicklook", "engine", "tiles", "stac"),
    ("api",),
    ("refresh", "verify", "stack", "regrid", "credentials"),
    ("demo",),
    ("cli",),
)
"""The stages in the order they run, then what presents their results. A tuple holds stages of one rank: refresh
and verify call each other (``refresh_cube(check_etags=True)`` verifies, ``verify_cube(fix=True)`` refreshes), the
import cycle broken by a function-level import in ``stackcube.refresh``."""
INSIDE = {
    "tiff": (
        "_model",
        ("_geo", "_decode", "_standard"),
        "_ifd",
        "_parse",
        "_source",
        "_read",
        "_probe",
        "_codec",
        "_zarr",
    ),
    "search": ("_query", "_fetch", "_static", "_parquet", "_since", "_search"),
    "union": ("_plan", "_order", "_lay", "_array"),
    "store": (
        "containers",
        "repo",
        "layout",
        "nodes",
        "coords",
        "guard",
        "scratch",
        ("stored", "tiles"),
        ("write", "read"),
        "append",
    ),
    "cli": ("_exit", "_commands", "_parser", "__main__"),
}
"""Each package's modules in order; a tuple holds siblings that do not import each other."""


def rank(module: str) -> int:
    """0 for shared modules, then 1, 2, ... in stage order."""
    top = module.split(".")[1] if module.startswith("stackcube.") else module
    if top in SHARED:
        return 0
    return next(i for i, names in enumerate(STAGES, 1) if top in names)


def imports(path: Path) -> set[str]:
    """Every ``stackcube`` module a file imports, at the top or inside a function (not under TYPE_CHECKING)."""
    tree = ast.parse(path.read_text())
    typing_only = _typing_only(tree)
    found = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("stackcube"):
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("stackcube"))
    return {name for name in found if _exists(name)}


def _typing_only(tree: ast.Module) -> set[int]:
    """The nodes under ``if TYPE_CHECKING:`` (imports there cost nothing at run time)."""
    return {
        id(node)
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
        for node in ast.walk(block)
    }


def _exists(module: str) -> bool:
    parts = module.split(".")[1:]
    return bool(parts) and (PACKAGE.joinpath(*parts).with_suffix(".py").exists() or PACKAGE.joinpath(*parts).is_dir())


def modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if p.name != "__init__.py" or p.parent != PACKAGE)


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_a_stage_imports_only_earlier_stages(path: Path) -> None:
    here = ".".join(("stackcube", *path.relative_to(PACKAGE).with_suffix("").parts)).removesuffix(".__init__")
    later = sorted(m for m in imports(path) if rank(m) > rank(here))
    assert not later, f"{here} imports later stages: {later}"


@pytest.mark.parametrize("package", sorted(INSIDE))
def test_inside_a_stage_modules_import_only_earlier_ones(package: str) -> None:
    order: dict[str, int] = {}
    for i, entry in enumerate(INSIDE[package]):
        for name in entry if isinstance(entry, tuple) else (entry,):
            order[name] = i
    assert set(order) == {p.stem for p in (PACKAGE / package).glob("*.py")} - {"__init__"}
    for name, position in order.items():
        used = {
            m.split(".")[2] for m in imports(PACKAGE / package / f"{name}.py") if m.startswith(f"stackcube.{package}.")
        }
        later = sorted(u for u in used if order.get(u, -1) >= position and u != name)
        assert not later, f"stackcube.{package}.{name} imports {later}, which come after it"


def test_only_the_store_imports_icechunk() -> None:
    for path in modules():
        if path.parent.name == "store":
            continue
        tree = ast.parse(path.read_text())
        guarded = _typing_only(tree)
        names = {
            alias.name
            for node in ast.walk(tree)
            if isinstance(node, ast.Import) and id(node) not in guarded
            for alias in node.names
        }
        names |= {
            node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and id(node) not in guarded
        }
        assert not any(str(n).split(".")[0] == "icechunk" for n in names), path
