"""The layout's rules, read from the source with ``ast`` (docs/architecture.md):

* no import circle among the modules of ``src/`` — counting every import that runs (at module
  level or inside a function), not those under ``if TYPE_CHECKING:``, which are annotations;
* a domain module imports only the standard library's pure parts, attrs and other domain
  modules: no SQLAlchemy, no adapter, no use case, no I/O, and it never reads the clock;
* no module over 700 lines (the Alembic migrations aside).

Each rule is also run against a small made-up tree, so that a checker that finds nothing
cannot pass by accident.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"
PACKAGES = ("ordercore", "ordercore_alipay", "ordercore_wechat", "ordercore_crypto")
MAX_LINES = 700

#: The pure modules: every capability's domain and the shared values they build on.
DOMAIN = frozenset(
    {
        "ordercore._actor",
        "ordercore._errors",
        "ordercore._money",
        "ordercore._state",
        "ordercore._outbox",
        "ordercore._audit.chain",
        "ordercore._orders.domain",
        "ordercore._orders.amounts",
        "ordercore._orders.pricing",
        "ordercore._orders.listing",
        "ordercore._orders.wallet",
        "ordercore._payments.domain",
        "ordercore._refunds.domain",
        "ordercore._anomalies.domain",
        "ordercore._reports.stats",
    }
)

#: What a domain module may import from outside ordercore.
PURE_IMPORTS = frozenset(
    {
        "__future__",
        "attrs",
        "base64",
        "binascii",
        "builtins",
        "collections",
        "dataclasses",
        "datetime",
        "decimal",
        "difflib",
        "enum",
        "functools",
        "hashlib",
        "hmac",
        "itertools",
        "json",
        "math",
        "re",
        "string",
        "struct",
        "types",
        "typing",
        "warnings",
        "zoneinfo",
    }
)

#: Calls that read the clock: a domain module is handed the time instead.
CLOCK_CALLS = frozenset({"now", "utcnow", "today", "time", "monotonic", "perf_counter"})


# ----------------------------------------------------------------------------- reading
def modules(root: Path, packages: Iterable[str]) -> dict[str, Path]:
    """Every module under ``root`` by dotted name (a package by its ``__init__``)."""
    found: dict[str, Path] = {}
    for package in packages:
        base = root / package
        if not base.is_dir():
            continue
        for path in base.rglob("*.py"):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST, *, runtime_only: bool) -> Iterator[ast.Import | ast.ImportFrom]:
    """The import statements of ``tree``, skipping ``if TYPE_CHECKING:`` bodies when asked."""
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
            continue
        if runtime_only and isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))


def imported(
    name: str, path: Path, known: Mapping[str, Path], *, runtime_only: bool = True
) -> set[str]:
    """The modules ``name`` imports: known modules resolved exactly (``from pkg import mod``
    names the module ``pkg.mod``), others by their full dotted name."""
    is_package = path.name == "__init__.py"
    package = name if is_package else name.rpartition(".")[0]
    out: set[str] = set()
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in _imports(tree, runtime_only=runtime_only):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
            continue
        if node.level:
            base = package.split(".")
            base = base[: len(base) - (node.level - 1)]
            target = ".".join([*base, node.module] if node.module else base)
        else:
            target = node.module or ""
        for alias in node.names:
            sub = f"{target}.{alias.name}"
            out.add(sub if sub in known else target)
    out.discard(name)
    return out


def graph(root: Path, packages: Iterable[str]) -> dict[str, set[str]]:
    known = modules(root, packages)
    return {
        name: {dep for dep in imported(name, path, known) if dep in known}
        for name, path in known.items()
    }


def cycles(edges: Mapping[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    counter = 0

    def visit(start: str) -> None:
        nonlocal counter
        work: list[tuple[str, Iterator[str]]] = [(start, iter(sorted(edges.get(start, ()))))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def impurities(name: str, path: Path, known: Mapping[str, Path]) -> list[str]:
    """Why the domain module ``name`` is not pure (empty when it is). Imports under
    ``TYPE_CHECKING`` count here too: a domain module does not even name an adapter."""
    problems = []
    for dep in sorted(imported(name, path, known, runtime_only=False)):
        top = dep.partition(".")[0]
        if dep in known or top in PACKAGES:
            if dep not in DOMAIN:
                problems.append(f"imports {dep}, which is not a domain module")
        elif top not in PURE_IMPORTS:
            problems.append(f"imports {dep}")
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in CLOCK_CALLS
            and isinstance(node.func.value, (ast.Name, ast.Attribute))
            and (
                node.func.value.id
                if isinstance(node.func.value, ast.Name)
                else node.func.value.attr
            )
            in {"datetime", "date", "time"}
        ):
            problems.append(f"reads the clock (line {node.lineno})")
    return problems


# ----------------------------------------------------------------------------- the rules
def test_there_is_no_import_circle_in_src() -> None:
    edges = graph(SRC, PACKAGES)
    assert len(edges) > 50  # the walk found the tree
    assert cycles(edges) == []


def test_domain_modules_are_pure() -> None:
    known = modules(SRC, PACKAGES)
    assert set(known) >= DOMAIN, sorted(DOMAIN - set(known))
    problems = {name: impurities(name, known[name], known) for name in sorted(DOMAIN)}
    assert {name: why for name, why in problems.items() if why} == {}


def test_no_module_is_over_700_lines() -> None:
    too_long = {
        name: n
        for name, path in modules(SRC, PACKAGES).items()
        if "migrations" not in path.parts
        and (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert too_long == {}


def test_adapters_are_imported_by_no_domain_or_capability_module_at_run_time() -> None:
    """Use cases name the unit of work for type checking only; ``_core`` is the one place that
    builds the adapters."""
    edges = graph(SRC, PACKAGES)
    capability = ("ordercore._orders", "ordercore._payments", "ordercore._refunds")
    capability += ("ordercore._anomalies", "ordercore._risk", "ordercore._reports")
    capability += ("ordercore._audit",)
    offenders = {
        name: sorted(d for d in deps if d.startswith("ordercore.adapters"))
        for name, deps in edges.items()
        if name.startswith(capability) or name in DOMAIN
    }
    assert {name: deps for name, deps in offenders.items() if deps} == {}


# ----------------------------------------------------------------------------- the checker
def _tree(tmp_path: Path, files: Mapping[str, str]) -> Path:
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return tmp_path


def test_the_checker_finds_a_circle_through_relative_and_lazy_imports(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "ordercore/__init__.py": "",
            "ordercore/a.py": "from .b import x\n",
            "ordercore/b.py": "def f():\n    from ordercore import c\n",
            "ordercore/c.py": "from . import a\n",
            "ordercore/d.py": "from ordercore.a import x\n",
        },
    )
    assert cycles(graph(root, ["ordercore"])) == [["ordercore.a", "ordercore.b", "ordercore.c"]]


def test_the_checker_ignores_type_checking_imports(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "ordercore/__init__.py": "",
            "ordercore/a.py": "from ordercore import b\n",
            "ordercore/b.py": (
                "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ordercore import a\n"
            ),
        },
    )
    assert cycles(graph(root, ["ordercore"])) == []


def test_the_checker_finds_impure_domain_code(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "ordercore/__init__.py": "",
            "ordercore/_money.py": (
                "import sqlalchemy\nfrom datetime import datetime\n"
                "from typing import TYPE_CHECKING\n"
                "if TYPE_CHECKING:\n    from ordercore.adapters import uow\n"
                "def f():\n    return datetime.now()\n"
            ),
            "ordercore/adapters/__init__.py": "",
            "ordercore/adapters/uow.py": "",
        },
    )
    known = modules(root, ["ordercore"])
    assert impurities("ordercore._money", known["ordercore._money"], known) == [
        "imports ordercore.adapters.uow, which is not a domain module",
        "imports sqlalchemy",
        "reads the clock (line 7)",
    ]


@pytest.mark.parametrize("module", sorted(DOMAIN))
def test_every_domain_module_is_named_in_docs_architecture(module: str) -> None:
    text = (SRC.parent / "docs" / "architecture.md").read_text(encoding="utf-8")
    short = module.removeprefix("ordercore.").replace(".", "/")
    assert f"{short}.py" in text or f"{short}/" in text, module
