"""The operator's path, end to end: a configuration file with a ``[channels.alipay]`` table and
PEM key files, ``ordercore serve`` running as a real process, ``ordercore orders pay --channel
alipay --method qr`` printing the QR code, the sandbox paying, its signed notification reaching
the served endpoint over HTTP, and ``ordercore orders show`` reporting the order paid."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alipay_kit import ADMIN
from click.testing import CliRunner

from helpers import Backend, FakeClock
from ordercore import Money
from ordercore.cli import cli
from ordercore_alipay.sandbox import AlipaySandbox


def console_script() -> Path:
    path = Path(sys.executable).parent / ("ordercore.exe" if os.name == "nt" else "ordercore")
    if not path.exists():
        pytest.fail("the ordercore console script is not installed (pip install -e .)")
    return path


class Served:
    """``ordercore serve --port 0`` as a subprocess; ``url`` once it listens."""

    def __init__(self, config: Path, cwd: Path) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ORDERCORE_")}
        env["PYTHONUNBUFFERED"] = "1"
        self.process = subprocess.Popen(
            [str(console_script()), "--config", str(config), "serve", "--port", "0"],
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
def served_config(
    backend: Backend, clock: FakeClock, sandbox: AlipaySandbox, tmp_path: Path
) -> Iterator[tuple[Path, Served]]:
    # The database, migrated, with a customer and a product (through the library).
    core = backend.core(clock)
    core.customers.add(name="Li Lei", email="li@example.com", actor=ADMIN)
    core.products.add(sku="VPN-1M", name="VPN 月卡", price=Money.of("27.00", "CNY"), actor=ADMIN)
    core.close()
    config = tmp_path / "ordercore.toml"
    head = [f"database_url = {json.dumps(backend.url)}"]
    if backend.schema:
        head.append(f"schema = {json.dumps(backend.schema)}")
    table = sandbox.config_table(tmp_path / "alipay-keys")
    config.write_text("\n".join(head) + "\n\n" + table, encoding="utf-8")
    served = Served(config, tmp_path)
    try:
        # Now that the endpoint's address is known, the operator adds it as notify_url.
        with config.open("a", encoding="utf-8") as fh:
            fh.write(f"notify_url = {json.dumps(served.url + '/callbacks/alipay')}\n")
        yield config, served
    finally:
        served.stop()


def ordercore(config: Path, *args: str) -> Any:
    result = CliRunner().invoke(
        cli,
        ["--config", str(config), *args, "--json"],
        env={"ORDERCORE_DATABASE_URL": None, "ORDERCORE_CONFIG": None},
    )
    assert result.exit_code == 0, f"{args}: {result.stderr!r} {result.exception!r}"
    return json.loads(result.stdout)


def test_orders_pay_with_alipay_qr_and_the_served_notification(
    served_config: tuple[Path, Served], sandbox: AlipaySandbox
) -> None:
    config, served = served_config
    order = ordercore(config, "orders", "create", "--customer", "1", "--item", "VPN-1M:1")
    number = order["number"]
    assert order["amounts"]["payable"] == "27.00"

    attempt = ordercore(config, "orders", "pay", number, "--channel", "alipay", "--method", "qr")

    assert attempt["channel"] == "alipay"
    assert attempt["status"] == "pending"
    no = attempt["out_trade_no"]
    assert attempt["checkout"]["kind"] == "qr"
    assert attempt["checkout"]["content"] == f"{sandbox.url}/cashier/{no}"
    assert sandbox.trade(no).notify_url == f"{served.url}/callbacks/alipay"

    sandbox.pay(no)  # the buyer pays; Alipay notifies the served endpoint

    (delivery,) = sandbox.deliveries
    assert delivery[1:] == (200, b"success")
    shown = ordercore(config, "orders", "show", number)
    assert shown["status"] == "paid"
    assert shown["amounts"]["paid"] == "27.00"
    listed = ordercore(config, "callbacks", "list")
    assert [(c["channel"], c["status"]) for c in listed["items"]] == [("alipay", "applied")]


def test_the_whole_path_pay_activate_partly_refund_and_the_refund_notification(
    served_config: tuple[Path, Served], sandbox: AlipaySandbox
) -> None:
    """Issue 6's full path over real HTTP: `orders pay --channel alipay --method qr` against
    the sandbox, the sandbox pays and notifies `ordercore serve`, the order is paid and
    activated; a partial refund through the sandbox whose answer is lost (`20000`) is
    settled by Alipay's refund notification to the served endpoint; the state is
    consistent everywhere and the refund was made once."""
    config, _served = served_config
    number = ordercore(config, "orders", "create", "--customer", "1", "--item", "VPN-1M:1")[
        "number"
    ]
    no = ordercore(config, "orders", "pay", number, "--channel", "alipay", "--method", "qr")[
        "out_trade_no"
    ]
    sandbox.pay(no)
    ordercore(config, "jobs", "run")  # activation (auto mode, no host hook: done at once)
    assert ordercore(config, "orders", "show", number)["status"] == "completed"

    sandbox.fail_next("alipay.trade.refund", "20000")  # refunded, but the answer says unknown
    refund = ordercore(
        config,
        "refunds", "request", number, "--amount", "10.00", "--destination", "original",
        "--reason", "one week unused",
    )  # fmt: skip
    refund_id = refund["id"]
    assert refund["status"] == "requested"
    approved = ordercore(config, "refunds", "approve", refund_id)
    assert approved["status"] == "unknown"
    assert sandbox.trade(no).refunded == Money.of("10.00", "CNY")  # the money went out once

    sandbox.notify_refund(no, refund_id)  # Alipay's refund notification, to `serve`
    assert sandbox.deliveries[-1][1:] == (200, b"success")

    shown = ordercore(config, "refunds", "show", refund_id)
    assert shown["status"] == "succeeded"
    order = ordercore(config, "orders", "show", number)
    assert order["status"] == "completed"  # a partial refund keeps the status
    assert order["amounts"]["paid"] == "27.00"
    assert order["amounts"]["refunded"] == "10.00"
    callbacks = ordercore(config, "callbacks", "list")["items"]
    assert sorted(c["status"] for c in callbacks) == ["applied", "applied"]
    # A retry now is refused (the refund is final), and the platform holds one refund.
    result = CliRunner().invoke(
        cli,
        ["--config", str(config), "refunds", "retry", refund_id],
        env={"ORDERCORE_DATABASE_URL": None, "ORDERCORE_CONFIG": None},
    )
    assert result.exit_code == 1
    assert "cannot retry when succeeded" in result.stderr
    trade = sandbox.trade(no)
    assert [r.out_request_no for r in trade.refunds] == [refund_id]
    assert trade.refunded == Money.of("10.00", "CNY")
    assert ordercore(config, "audit", "verify")["ok"] is True


def test_the_sandbox_by_hand_prints_a_working_table(tmp_path: Path) -> None:
    import signal

    import tomllib

    from ordercore._payments.channel_config import channel_config
    from ordercore_alipay import AlipayChannel

    process = subprocess.Popen(
        [sys.executable, "-m", "ordercore_alipay.sandbox", "--dir", str(tmp_path / "keys")],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
    )
    try:
        assert process.stderr is not None
        ready = process.stderr.readline()
        assert ready.startswith("# Alipay sandbox on http://127.0.0.1:")
        process.send_signal(signal.SIGINT)
        stdout, _ = process.communicate(timeout=20)
    finally:
        if process.poll() is None:  # pragma: no cover
            process.kill()
            process.wait(timeout=10)
    assert process.returncode == 0
    table = tomllib.loads(stdout)["channels"]["alipay"]
    assert table["gateway_url"] == ready.split()[-4].rstrip(";") + "/gateway.do"
    channel = AlipayChannel(channel_config("alipay", table))
    assert channel.app_id == "2021000000000001"
