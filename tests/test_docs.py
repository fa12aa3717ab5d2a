"""The docs stay true to the code: generated state diagrams and the public API list."""

from __future__ import annotations

import re
import runpy
from pathlib import Path
from typing import Any

import pytest

import ordercore
from ordercore import _state

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "gen_state_diagrams.py"
DIAGRAMS = ROOT / "docs" / "concepts" / "state-diagrams.md"

MACHINES: list[Any] = [
    _state.ORDER_MACHINE,
    _state.PAYMENT_MACHINE,
    _state.REFUND_MACHINE,
    _state.ANOMALY_MACHINE,
    _state.ISSUE_MACHINE,
]


@pytest.fixture(scope="module")
def generator() -> dict[str, Any]:
    # run_name is not "__main__", so the script only defines its functions.
    return runpy.run_path(str(SCRIPT), run_name="gen_state_diagrams")


def _mermaid_blocks(text: str) -> dict[str, str]:
    """Each machine's name -> the body of its ```mermaid block in the generated file."""
    sections = re.split(r"^### The (\w+) machine$", text, flags=re.MULTILINE)
    blocks = {}
    for name, body in zip(sections[1::2], sections[2::2], strict=True):
        match = re.search(r"^```mermaid\n(.*?)^```$", body, flags=re.MULTILINE | re.DOTALL)
        assert match, f"no mermaid block for the {name} machine"
        blocks[name] = match.group(1)
    return blocks


def test_generated_state_diagrams_are_up_to_date(generator: dict[str, Any]) -> None:
    assert DIAGRAMS.read_text(encoding="utf-8") == generator["generate"](), (
        "docs/concepts/state-diagrams.md is stale: run python scripts/gen_state_diagrams.py"
    )


def test_generation_is_deterministic(generator: dict[str, Any]) -> None:
    assert generator["generate"]() == generator["generate"]()


def test_check_flag_reports_a_stale_file(generator: dict[str, Any], tmp_path: Path) -> None:
    target = tmp_path / "state-diagrams.md"
    assert generator["main"](["--check", "--output", str(target)]) == 1  # missing
    assert generator["main"](["--output", str(target)]) == 0
    assert generator["main"](["--check", "--output", str(target)]) == 0
    target.write_text(target.read_text(encoding="utf-8") + "edited\n", encoding="utf-8")
    assert generator["main"](["--check", "--output", str(target)]) == 1


@pytest.mark.parametrize("machine", MACHINES, ids=lambda m: m.name)
def test_every_state_and_transition_is_drawn(generator: dict[str, Any], machine: Any) -> None:
    diagram = _mermaid_blocks(generator["generate"]())[machine.name]
    lines = {line.strip() for line in diagram.splitlines()}
    assert "stateDiagram-v2" in lines
    for state in machine.states:
        assert state.value in lines, f"state {state.value} is not declared"
    drawn_events = set()
    for source, moves in machine.table.items():
        for event, target in moves.items():
            assert f"{source.value} --> {target.value}: {event.value}" in lines
            drawn_events.add(event)
    arrows = [line for line in lines if "-->" in line and "[*]" not in line]
    assert len(arrows) == sum(len(moves) for moves in machine.table.values())
    for event in machine.events:
        assert event in drawn_events, f"event {event.value} leads nowhere in {machine.name}"
        assert re.search(rf": {re.escape(event.value)}$", diagram, flags=re.MULTILINE)


def test_every_machine_has_a_section_in_the_committed_file() -> None:
    blocks = _mermaid_blocks(DIAGRAMS.read_text(encoding="utf-8"))
    assert sorted(blocks) == sorted(str(m.name) for m in MACHINES)


def _isort_key(name: str) -> tuple[int, list[Any]]:
    """The order ruff's RUF022 expects: CONSTANTS, then Classes, then functions; each group in
    natural order (digit runs compare as numbers)."""
    if len(name) > 1 and name.upper() == name and any(c.isalpha() for c in name):
        group = 0
    elif name[:1].isupper():
        group = 1
    else:
        group = 2
    natural = [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]
    return group, natural


def test_public_api_all_is_sorted_and_unique() -> None:
    names = list(ordercore.__all__)
    assert len(names) == len(set(names)), "ordercore.__all__ has duplicates"
    assert names == sorted(names, key=_isort_key), (
        "ordercore.__all__ is not sorted (ruff's RUF022 order: CONSTANTS, Classes, functions)"
    )


def test_public_api_names_exist() -> None:
    missing = [name for name in ordercore.__all__ if not hasattr(ordercore, name)]
    assert not missing, f"ordercore.__all__ names missing from the package: {missing}"
    private = [name for name in ordercore.__all__ if name.startswith("_")]
    assert not private, f"private names in ordercore.__all__: {private}"


def _code_blocks(path: Path, language: str) -> list[str]:
    text = path.read_text(encoding="utf-8")
    pattern = rf"^```{language}\n(.*?)^```$"
    return re.findall(pattern, text, flags=re.MULTILINE | re.DOTALL)


def test_readme_starts_with_exactly_two_setup_commands() -> None:
    first = _code_blocks(ROOT / "README.md", r"\w*")[0]
    commands = [line for line in first.splitlines() if line.strip()]
    assert commands == [
        "python -m pip install . && ordercore demo",
        'python -m pip install -e ".[test]" && python -m pytest -n auto',
    ]


def test_quickstart_python_snippet_runs_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The snippet runs as a newcomer pastes it, and again: each run has its own database,
    nothing is left in the working directory."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ORDERCORE_AUDIT_KEY", raising=False)
    (snippet,) = _code_blocks(ROOT / "docs" / "quickstart.md", "python")
    for _ in range(2):
        namespace: dict[str, Any] = {}
        exec(compile(snippet, "docs/quickstart.md", "exec"), namespace)
        assert namespace["core"].orders.get(namespace["order"].number).status.value == "paid"
        namespace["core"].close()
    assert list(tmp_path.iterdir()) == []


def test_the_readme_documentation_paragraph_links_every_page() -> None:
    """Every page of docs/ is reachable from the README (a new page must be named there)."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    pages = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "docs").rglob("*.md"))
    assert pages
    assert [page for page in pages if f"({page})" not in readme] == []


def test_the_readme_status_table_claims_nothing_planned_that_has_a_docs_page() -> None:
    """A feature with its own concepts page is not 'planned' in the status table."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = readme[readme.index("## Status") : readme.index("## Configuration")]
    planned = [line for line in table.splitlines() if line.rstrip().endswith("| planned |")]
    concepts = [p.stem for p in (ROOT / "docs" / "concepts").glob("*.md")]
    for line in planned:
        lowered = line.lower()
        assert not any(name.replace("-", " ") in lowered for name in concepts), line
