"""Every Python snippet of the documentation runs, or says that it is a fragment.

The snippets are the fenced blocks of docs/**/*.md and README.md:

* ```python blocks run in a fresh interpreter, one per page, in a temporary working directory,
  in the order of the page and in one namespace — as a reader who pastes them one after the
  other into one session would run them (a later block may use names an earlier one made);
* ```pycon blocks (``>>>`` prompts) run the same way, as doctests: the output shown is checked;
* a block whose first line is ``# fragment: <why>`` is not run: it is a signature, an excerpt
  or code that needs something the reader has and the test has not (their web request, their
  PostgreSQL server). The comment is shown to readers too;
* a block whose first line is ``# NAME.py`` is a file: the page's files are written into a
  temporary directory and pytest runs there;
* a block that only includes a file (``--8<-- "docs/examples/..."``, pymdownx.snippets) shows
  code that lives in docs/examples/, whose own tests run it (tests/integration/test_web.py,
  tests/integration/test_example_plugin.py); here the included part must exist and compile.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
EXAMPLES = DOCS / "examples"
PAGES = sorted([*DOCS.rglob("*.md"), ROOT / "README.md"])
RUNNABLE = {"python", "py", "python3", "pycon"}

FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>[^\n`]*)$")
FRAGMENT = re.compile(r"#\s*fragment\b:?(?P<why>.*)")
FILE = re.compile(r"# (?P<name>[\w.-]+\.py)")
INCLUDE = re.compile(r'--8<-- "(?P<path>[^":]+)(?::(?P<section>[\w-]+))?"')
TIMEOUT = 180


@dataclass(frozen=True)
class Block:
    page: Path
    line: int  # the line of the opening fence, 1-based
    language: str
    code: str

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT).as_posix()}:{self.line}"

    @property
    def first_line(self) -> str:
        return self.code.lstrip("\n").partition("\n")[0].strip()

    @property
    def kind(self) -> str:
        lines = [line.strip() for line in self.code.splitlines() if line.strip()]
        if lines and all(INCLUDE.fullmatch(line) for line in lines):
            return "include"
        if FRAGMENT.match(self.first_line):
            return "fragment"
        if FILE.fullmatch(self.first_line):
            return "file"
        return "doctest" if self.language == "pycon" else "run"


def blocks_of(page: Path) -> list[Block]:
    """The fenced blocks of a page, any language (indented fences included, dedented)."""
    found = []
    lines = page.read_text(encoding="utf-8").splitlines()
    index = 0
    while index < len(lines):
        opening = FENCE.match(lines[index])
        if opening is None:
            index += 1
            continue
        fence = opening["fence"]
        body: list[str] = []
        end = index + 1
        while end < len(lines):
            closing = FENCE.match(lines[end])
            if closing and closing["fence"].startswith(fence) and not closing["info"].strip():
                break
            body.append(lines[end])
            end += 1
        info = opening["info"].strip().lstrip("{").lstrip(".")
        language = re.split(r"[\s{}]", info, maxsplit=1)[0].lower() if info else ""
        code = textwrap.dedent("\n".join(body)) + "\n"
        found.append(Block(page, index + 1, language, code))
        index = end + 1
    return found


def python_blocks(page: Path) -> list[Block]:
    return [block for block in blocks_of(page) if block.language in RUNNABLE]


PAGES_TO_RUN = [
    page for page in PAGES if any(b.kind in ("run", "doctest") for b in python_blocks(page))
]
PAGES_WITH_FILES = [page for page in PAGES if any(b.kind == "file" for b in python_blocks(page))]
INCLUDES = [block for page in PAGES for block in python_blocks(page) if block.kind == "include"]


def _page_id(page: Path) -> str:
    return page.relative_to(ROOT).as_posix()


def _environment(home: Path) -> dict[str, str]:
    """The test's environment without ordercore's own settings (a developer's
    ORDERCORE_AUDIT_KEY or database URL must not change what a snippet does)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORDERCORE_")}
    env["HOME"] = str(home)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


# What runs a page: its blocks in order, in one namespace. A block is compiled with its own
# line numbers in the page, so a traceback points at the Markdown line.
SESSION = r"""
import doctest
import json
import sys

blocks = json.loads(sys.stdin.read())
namespace = {"__name__": "__main__"}
flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE | doctest.IGNORE_EXCEPTION_DETAIL
for block in blocks:
    print(f"--- {block['where']}", flush=True)
    if block["kind"] == "doctest":
        parser = doctest.DocTestParser()
        test = parser.get_doctest(
            block["code"], namespace, block["where"], block["page"], block["line"]
        )
        runner = doctest.DocTestRunner(optionflags=flags)
        result = runner.run(test, clear_globs=False)
        namespace.update(test.globs)
        if result.failed:
            sys.exit(f"{block['where']}: {result.failed} of {result.attempted} examples failed")
    else:
        code = "\n" * block["line"] + block["code"]
        exec(compile(code, block["page"], "exec"), namespace)
print("--- all blocks ran", flush=True)
"""


def _python(
    tmp_path: Path, *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """This interpreter with ``args``, in ``tmp_path`` with the snippets' environment."""
    return subprocess.run(
        [sys.executable, *args],
        input=stdin,
        cwd=tmp_path,
        env=_environment(tmp_path),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


@pytest.mark.parametrize("page", PAGES_TO_RUN, ids=_page_id)
def test_the_python_snippets_of_a_page_run(page: Path, tmp_path: Path) -> None:
    blocks = [
        {"where": b.where, "page": str(b.page), "line": b.line, "kind": b.kind, "code": b.code}
        for b in python_blocks(page)
        if b.kind in ("run", "doctest")
    ]
    done = _python(tmp_path, "-c", SESSION, stdin=json.dumps(blocks))
    assert done.returncode == 0, f"{_page_id(page)}:\n{done.stdout}\n{done.stderr}"
    assert done.stdout.rstrip().endswith("--- all blocks ran"), done.stdout


@pytest.mark.parametrize("page", PAGES_WITH_FILES, ids=_page_id)
def test_the_files_of_a_page_pass_their_tests(page: Path, tmp_path: Path) -> None:
    files = [b for b in python_blocks(page) if b.kind == "file"]
    names = [FILE.fullmatch(b.first_line)["name"] for b in files]  # type: ignore[index]
    assert len(set(names)) == len(names), f"{_page_id(page)}: a file is shown twice"
    assert any(name.startswith("test_") for name in names), f"{_page_id(page)}: no test file"
    for name, block in zip(names, files, strict=True):
        (tmp_path / name).write_text(block.code, encoding="utf-8")
    done = _python(tmp_path, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"\b\d+ passed\b", done.stdout), done.stdout


def _included(block: Block) -> list[tuple[str, str]]:
    """(reference, included text) for each include line of a block."""
    parts = []
    for line in block.code.split("\n"):
        match = INCLUDE.fullmatch(line.strip())
        if match is None:
            continue
        path = ROOT / match["path"]
        assert path.is_file(), f"{block.where}: {match['path']} does not exist"
        text = path.read_text(encoding="utf-8")
        if match["section"]:
            start, end = f"--8<-- [start:{match['section']}]", f"--8<-- [end:{match['section']}]"
            assert start in text, f"{block.where}: no {start} in {match['path']}"
            assert end in text, f"{block.where}: no {end} in {match['path']}"
            text = text[text.index(start) : text.index(end)].partition("\n")[2]
            text = text.rpartition("\n")[0] + "\n"
        parts.append((match.group(0), text))
    return parts


@pytest.mark.parametrize("block", INCLUDES, ids=lambda b: b.where)
def test_an_included_snippet_exists_and_compiles(block: Block) -> None:
    for reference, text in _included(block):
        assert reference.startswith('--8<-- "docs/examples/'), (
            f"{block.where}: include code from docs/examples/, where its own tests run it"
        )
        compile(textwrap.dedent(text), reference, "exec")


def test_every_example_file_compiles() -> None:
    files = sorted(EXAMPLES.rglob("*.py"))
    assert files
    for path in files:
        compile(path.read_text(encoding="utf-8"), str(path), "exec")


def test_every_fragment_says_why() -> None:
    fragments = [b for page in PAGES for b in python_blocks(page) if b.kind == "fragment"]
    assert fragments
    for block in fragments:
        match = FRAGMENT.match(block.first_line)
        assert match is not None
        why = match["why"].strip()
        assert block.first_line.startswith("# fragment: "), (
            f"{block.where}: write the marker as '# fragment: <why>'"
        )
        assert len(why) >= 10, f"{block.where}: say why this block is not run"


def test_the_collector_sees_every_kind_of_block() -> None:
    """The runner is not vacuous: it finds blocks of each kind, and every Python block of the
    docs is one of them."""
    kinds: dict[str, int] = {}
    for page in PAGES:
        for block in python_blocks(page):
            kinds[block.kind] = kinds.get(block.kind, 0) + 1
    assert set(kinds) == {"run", "doctest", "fragment", "file", "include"}, kinds
    assert kinds["run"] >= 20, kinds


def test_the_block_parser(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "Text\n\n```python\nx = 1\n```\n\n- item\n\n    ```python\n    # fragment: needs y\n"
        "    y\n    ```\n\n````markdown\n```python\nnot a block\n```\n````\n\n"
        '```python title="a.py"\n--8<-- "docs/examples/a.py:part"\n```\n\n'
        "```pycon\n>>> 1 + 1\n2\n```\n\n```sh\nls\n```\n",
        encoding="utf-8",
    )
    found = blocks_of(page)
    assert [(b.line, b.language, b.kind) for b in found] == [
        (3, "python", "run"),
        (9, "python", "fragment"),
        (14, "markdown", "run"),
        (20, "python", "include"),
        (24, "pycon", "doctest"),
        (29, "sh", "run"),
    ]
    assert found[0].code == "x = 1\n"
    assert found[1].code == "# fragment: needs y\ny\n"
    assert found[2].code == "```python\nnot a block\n```\n"
