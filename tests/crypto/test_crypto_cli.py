"""The operator's path, per gateway, end to end: a configuration file with the gateway's
``[channels.NAME]`` table and secret files, ``ordercore serve`` running as a real process,
``ordercore orders pay N --channel NAME`` printing the address and the locked coin amount,
the sandbox's notifications reaching the served endpoint over HTTP, and ``orders show``,
``callbacks list`` and ``anomalies list`` reporting what happened: a genuine payment pays
once, a forgery is refused and kept, an underpayment pays nothing and an overpayment pays,
each with its anomaly."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from crypto_kit import ADMIN, OK, Gateway

from helpers import Backend, FakeClock
from ordercore import Money
from ordercore.cli import cli


class Served:
    """``ordercore serve --port 0`` as a subprocess; ``url`` once it listens."""

    def __init__(self, config: Path, cwd: Path) -> None:
        script = Path(sys.executable).parent / "ordercore"
        if not script.exists():
            pytest.fail("the ordercore console script is not installed (pip install -e .)")
        env = {k: v for k, v in os.environ.items() if not k.startswith("ORDERCORE_")}
        env["PYTHONUNBUFFERED"] = "1"
        self.process = subprocess.Popen(
            [str(script), "--config", str(config), "serve", "--port", "0"],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.stderr: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        self.url = self._wait_for_url()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.stderr.append(line)
            self.lines.put(line)

    def _wait_for_url(self) -> str:
        while True:
            try:
                line = self.lines.get(timeout=30)
            except queue.Empty:
                self.stop()
                pytest.fail(f"ordercore serve did not start: {''.join(self.stderr)}")
            if line.startswith("serving POST "):
                return line.split()[2].split("/callbacks/")[0]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:  # pragma: no cover
                self.process.kill()
                self.process.wait(timeout=10)


@pytest.fixture
def served(
    backend: Backend, clock: FakeClock, gateway: Gateway, tmp_path: Path
) -> Iterator[tuple[Path, Served]]:
    core = backend.core(clock)
    core.customers.add(name="Li Lei", email="li@example.com", actor=ADMIN)
    core.products.add(sku="VPN-1M", name="VPN 月卡", price=Money.of("27.00", "CNY"), actor=ADMIN)
    core.close()
    config = tmp_path / "ordercore.toml"
    head = [f"database_url = {json.dumps(backend.url)}"]
    if backend.schema:
        head.append(f"schema = {json.dumps(backend.schema)}")
    table = gateway.sandbox.config_table(tmp_path / "secrets")
    config.write_text("\n".join(head) + "\n\n" + table, encoding="utf-8")
    process = Served(config, tmp_path)
    try:
        # Now that the endpoint's address is known, the operator adds it as notify_url
        # (BTCPay: the store's webhook URL).
        notify = f"{process.url}/callbacks/{gateway.name}"
        with config.open("a", encoding="utf-8") as fh:
            fh.write(f"notify_url = {json.dumps(notify)}\n")
        if hasattr(gateway.sandbox, "webhook_url"):
            gateway.sandbox.webhook_url = notify
        yield config, process
    finally:
        process.stop()


def ordercore(config: Path, *args: str) -> Any:
    result = CliRunner().invoke(
        cli,
        ["--config", str(config), *args, "--json"],
        env={"ORDERCORE_DATABASE_URL": None, "ORDERCORE_CONFIG": None},
    )
    assert result.exit_code == 0, f"{args}: {result.stderr!r} {result.exception!r}"
    return json.loads(result.stdout)


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_orders_pay_through_each_gateway_over_http(
    served: tuple[Path, Served], gateway: Gateway
) -> None:
    config, process = served
    name = gateway.name
    numbers = [
        ordercore(config, "orders", "create", "--customer", "1", "--item", "VPN-1M:1")["number"]
        for _ in range(3)
    ]
    attempts = [ordercore(config, "orders", "pay", n, "--channel", name) for n in numbers]
    for attempt in attempts:
        assert attempt["channel"] == name
        assert attempt["status"] == "pending"
        checkout = attempt["checkout"]
        assert checkout["kind"] == "address"
        assert checkout["content"]
        locked = gateway.locked(attempt["out_trade_no"])
        assert checkout["coin_amount"].split()[0] == str(
            Money.of(locked, checkout["coin_amount"].split()[1]).amount
        )
    exact, under, over = (a["out_trade_no"] for a in attempts)

    # A forgery first: refused with a 4xx, kept in the inbox, nothing paid.
    assert gateway.deliver(gateway.forged(exact))[0] == 400
    (rejected,) = ordercore(config, "callbacks", "list", "--status", "rejected")["items"]
    assert rejected["channel"] == name
    assert rejected["reason"].startswith("bad_signature")

    # The genuine payment pays once, however often it is delivered.
    sent = gateway.pay(exact)
    for notification in sent:
        assert gateway.deliver(notification) == OK
    shown = ordercore(config, "orders", "show", numbers[0])
    assert shown["status"] == "paid"
    assert shown["amounts"]["paid"] == "27.00"
    assert len([e for e in shown["history"] if e["event"] == "pay"]) == 1

    # Underpaid: nothing paid, an anomaly. Overpaid: paid, an anomaly for the excess.
    gateway.pay(under, (gateway.locked(under) / 2).quantize(Decimal("0.000001")))
    gateway.pay(over, gateway.locked(over) + Decimal("0.000001"))
    assert ordercore(config, "orders", "show", numbers[1])["status"] == "pending"
    assert ordercore(config, "orders", "show", numbers[2])["status"] == "paid"
    anomalies = ordercore(config, "anomalies", "list")["items"]
    kinds = sorted((a["kind"], a["out_trade_no"]) for a in anomalies)
    assert kinds == sorted([("underpayment", under), ("overpayment", over)])
    assert process.process.poll() is None
