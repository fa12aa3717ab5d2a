"""Fixtures of the end-to-end suite: the ``ordercore`` command driven as a user drives it.

Most tests go through :class:`click.testing.CliRunner` (fast, in-process, stdout and stderr
kept apart); a few run the installed console script as a real subprocess to prove the entry
point, the exit codes and that errors reach stderr. Every test gets its own SQLite file in
``tmp_path`` (a copy of a template database that was upgraded once per session) and a clean
environment: no ``ORDERCORE_*`` variable of the caller leaks in.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import sqlite3
import subprocess
import sys
import sysconfig
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from helpers import copy_sqlite as copy_database
from ordercore.cli import cli

ENV_VARS = ("ORDERCORE_DATABASE_URL", "ORDERCORE_CONFIG", "ORDERCORE_AUDIT_KEY", "ORDERCORE_DEBUG")
SCRIPT_NAME = "ordercore.exe" if os.name == "nt" else "ordercore"


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def assert_one_error(
    result: Result | subprocess.CompletedProcess[str], code: int | None = None
) -> str:
    """The run failed the way a user should see it: non-zero exit, nothing on stdout, no
    traceback, and exactly one ``error:`` sentence on stderr (click's usage lines may precede
    it for usage errors, exit 2). Returns that sentence."""
    if isinstance(result, subprocess.CompletedProcess):
        exit_code, stdout, stderr = result.returncode, result.stdout, result.stderr
    else:
        exit_code, stdout, stderr = result.exit_code, result.stdout, result.stderr
        # CliRunner bypasses main()'s last-resort handler: anything but SystemExit here is an
        # exception that escaped the command's own error handling.
        assert isinstance(result.exception, SystemExit), (
            f"unhandled {result.exception!r}; stderr: {stderr}"
        )
    assert exit_code != 0, f"expected a failure, got exit 0; stdout: {stdout}"
    if code is not None:
        assert exit_code == code, f"exit {exit_code}, expected {code}; stderr: {stderr}"
    assert "Traceback" not in stderr
    assert "Traceback" not in stdout
    assert stdout.strip() == "", f"an error printed to stdout: {stdout!r}"
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    errors = [line for line in lines if line.lower().startswith("error:")]
    assert len(errors) == 1, f"expected one error line on stderr, got: {stderr!r}"
    if exit_code != 2:  # not a click usage error: the sentence is all there is
        assert len(lines) == 1, f"expected one line on stderr, got: {stderr!r}"
    sentence = errors[0].split(":", 1)[1].strip()
    assert len(sentence) > 10, f"not a sentence: {sentence!r}"
    return sentence


class OC:
    """The ``ordercore`` command on one database (given by ``ORDERCORE_DATABASE_URL``), run
    in-process with CliRunner; ``config`` is passed as ``ORDERCORE_CONFIG``."""

    def __init__(self, db_path: Path, config: Path | None = None) -> None:
        self.db_path = db_path
        self.url = sqlite_url(db_path)
        self.config = config
        self.runner = CliRunner()

    def run(self, *args: Any, env: Mapping[str, str | None] | None = None) -> Result:
        base: dict[str, str | None] = {"ORDERCORE_DATABASE_URL": self.url}
        if self.config is not None:
            base["ORDERCORE_CONFIG"] = str(self.config)
        return self.runner.invoke(cli, [str(a) for a in args], env={**base, **(env or {})})

    def ok(self, *args: Any, env: Mapping[str, str | None] | None = None) -> str:
        result = self.run(*args, env=env)
        assert result.exit_code == 0, (
            f"ordercore {' '.join(map(str, args))} exited {result.exit_code}: "
            f"{result.stderr!r} {result.exception!r}"
        )
        assert "Traceback" not in result.stderr
        return result.stdout

    def json(self, *args: Any, env: Mapping[str, str | None] | None = None) -> Any:
        out = self.ok(*args, "--json", env=env)
        return json.loads(out)

    def fail(
        self, *args: Any, code: int | None = 1, env: Mapping[str, str | None] | None = None
    ) -> str:
        """Run, expect a clean failure, return the error sentence."""
        return assert_one_error(self.run(*args, env=env), code)

    def sql(self, statement: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Run SQL on the database file directly (as someone with a sqlite3 shell would)."""
        conn = sqlite3.connect(self.db_path)
        try:
            with conn:
                return conn.execute(statement, params).fetchall()
        finally:
            conn.close()


def script_path() -> Path:
    """The installed ``ordercore`` console script of this interpreter's environment."""
    candidates = [
        Path(sys.executable).parent / SCRIPT_NAME,
        Path(sysconfig.get_path("scripts")) / SCRIPT_NAME,
    ]
    for candidate in candidates:
        if candidate.exists():
            return candidate
    found = shutil.which("ordercore")
    if found:
        return Path(found)
    pytest.fail("the ordercore console script is not installed (pip install -e .)")


def run_script(
    *args: Any, cwd: Path, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the installed ``ordercore`` command in a subprocess with a clean environment."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("ORDERCORE_")}
    base["PYTHONIOENCODING"] = "utf-8"
    base["COLUMNS"] = "200"
    return subprocess.run(
        [str(script_path()), *map(str, args)],
        cwd=cwd,
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=60,
        check=False,
    )


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No ORDERCORE_* setting of the caller's shell, and a working directory of our own (the
    default database ``sqlite:///ordercore.db`` would land there)."""
    for var in ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="session")
def _template_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A database upgraded once per session (per xdist worker); tests get copies of it."""
    path = tmp_path_factory.mktemp("template") / "template.db"
    result = CliRunner().invoke(cli, ["--database-url", sqlite_url(path), "db", "upgrade"])
    assert result.exit_code == 0, result.stderr
    return path


@pytest.fixture
def fresh_oc(tmp_path: Path) -> OC:
    """The command on an empty, not yet upgraded database file."""
    return OC(tmp_path / "fresh.db")


@pytest.fixture
def oc(tmp_path: Path, _template_db: Path) -> OC:
    """The command on an upgraded, empty database of this test's own."""
    path = tmp_path / "ordercore-test.db"
    copy_database(_template_db, path)
    return OC(path)


# ------------------------------------------------------------------------------ the shop
#: The settings file of the shop fixture (``--config`` / ``ORDERCORE_CONFIG``).
SHOP_CONFIG = """\
timezone = "Asia/Shanghai"
points_rate = "0.01"
payment_timeout_minutes = 30

[channels.fakepay]
fee_percent = "0.6"
fee_borne_by = "customer"
"""

#: What the shop fixture holds: customer ids, e-mails and external references.
LI, HAN, WANG = 1, 2, 3
LI_EMAIL, LI_REF = "lilei@example.com", "u-1001"
WANG_REF = "u-3003"

#: The commands that fill the shop (split like a shell would).
SHOP_SETUP = [
    f"customers add --name 'Li Lei' --email {LI_EMAIL} --external-ref {LI_REF}",
    "customers add --name 'Han Meimei' --email han@example.com --phone '+86 138 0000 0000'",
    f"customers add --name 'Wang Wu' --email wang@example.com --external-ref {WANG_REF}",
    "products add --sku VPN-1M --name 'VPN, 1 month' --price 30.00 --currency CNY"
    " --spec duration=30d --spec traffic=200GB --tier 3:10",
    "products add --sku VPN-12M --name 'VPN, 12 months' --price 288.00 --currency CNY"
    " --stock 5 --spec duration=365d",
    "products add --sku OLD-1M --name 'Retired plan' --price 10.00 --currency CNY --inactive",
    "products add --sku JP-1M --name 'Tokyo node' --price 1000 --currency JPY",
    "coupons add --code WELCOME20 --percent 20 --max-discount 50 --limit-total 3"
    " --limit-per-customer 1",
    "coupons add --code FIVE --amount 5.00 --min-amount 20 --product VPN-1M",
    f"wallet credit {LI_EMAIL} --amount 100.00 --reason top-up",
    f"wallet credit {LI_REF} --points 1000 --reason 'welcome gift'",
    # writes queue audit entries; seal them into the chain (the job runner does it too)
    "audit seal",
]


@pytest.fixture(scope="session")
def _shop_template(tmp_path_factory: pytest.TempPathFactory, _template_db: Path) -> Path:
    directory = tmp_path_factory.mktemp("shop")
    (directory / "ordercore.toml").write_text(SHOP_CONFIG, encoding="utf-8")
    path = directory / "shop.db"
    copy_database(_template_db, path)
    shop = OC(path, directory / "ordercore.toml")
    for command in SHOP_SETUP:
        shop.ok(*shlex.split(command))
    return directory


@pytest.fixture
def shop(tmp_path: Path, _shop_template: Path) -> OC:
    """An upgraded database with three customers, four products, two coupons and a funded
    wallet, used with the shop's settings file (time zone Asia/Shanghai, points at 0.01,
    30-minute payment deadline, channel ``fakepay`` with a 0.6 % fee borne by the customer)."""
    config = tmp_path / "ordercore.toml"
    shutil.copyfile(_shop_template / "ordercore.toml", config)
    path = tmp_path / "shop.db"
    copy_database(_shop_template / "shop.db", path)
    return OC(path, config)
