"""The operator's path, end to end over HTTP: a configuration file with a ``[channels.wechat]``
table and key files, ``ordercore serve`` running as a real process, ``ordercore orders pay
--channel wechat --method native`` printing the QR code, the sandbox paying, its encrypted,
signed notification reaching the served endpoint (three times: paid once), activation, a
partial refund answered PROCESSING that completes only on REFUND.SUCCESS, forged
notifications refused with nothing applied and an inbox record each; and the sandbox run by
hand (``python -m ordercore_wechat.sandbox``)."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from wechat_kit import ADMIN, channel_from_table, make_sandbox

from helpers import Backend, FakeClock
from ordercore import Money
from ordercore.cli import cli
from ordercore_wechat import WechatChannel
from ordercore_wechat.sandbox import WechatSandbox

ACCEPTED = (204, b"")
FORGERIES = ["stale", "signtest", "bad_tag", "unknown_serial", "unsigned", "tampered"]


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
def served(
    backend: Backend, clock: FakeClock, tmp_path: Path
) -> Iterator[tuple[Path, WechatSandbox, Served]]:
    # The database, migrated, with a customer and a product (through the library).
    core = backend.core(clock)
    core.customers.add(name="Li Lei", email="li@example.com", actor=ADMIN)
    core.products.add(sku="VPN-1M", name="VPN 月卡", price=Money.of("27.00", "CNY"), actor=ADMIN)
    core.close()
    with make_sandbox() as sandbox:
        config = tmp_path / "ordercore.toml"
        head = [f"database_url = {json.dumps(backend.url)}"]
        if backend.schema:
            head.append(f"schema = {json.dumps(backend.schema)}")
        table = sandbox.config_table(tmp_path / "wechat-keys")
        config.write_text("\n".join(head) + "\n\n" + table, encoding="utf-8")
        server = Served(config, tmp_path)
        try:
            # Now that the endpoint's address is known, the operator adds it as notify_url.
            with config.open("a", encoding="utf-8") as fh:
                fh.write(f"notify_url = {json.dumps(server.url + '/callbacks/wechat')}\n")
            yield config, sandbox, server
        finally:
            server.stop()


def ordercore(config: Path, *args: str) -> Any:
    from click.testing import CliRunner

    result = CliRunner().invoke(
        cli,
        ["--config", str(config), *args, "--json"],
        env={"ORDERCORE_DATABASE_URL": None, "ORDERCORE_CONFIG": None},
    )
    assert result.exit_code == 0, f"{args}: {result.stderr!r} {result.exception!r}"
    return json.loads(result.stdout)


def test_pay_by_qr_through_the_cli_a_processing_partial_refund_and_forgeries(
    served: tuple[Path, WechatSandbox, Served],
) -> None:
    config, sandbox, server = served
    number = ordercore(config, "orders", "create", "--customer", "1", "--item", "VPN-1M:1")[
        "number"
    ]
    attempt = ordercore(
        config, "orders", "pay", number, "--channel", "wechat", "--method", "native"
    )
    assert (attempt["channel"], attempt["status"]) == ("wechat", "pending")
    no = attempt["out_trade_no"]
    assert attempt["checkout"]["kind"] == "qr"
    assert attempt["checkout"]["content"].startswith("weixin://wxpay/bizpayurl?pr=")
    assert sandbox.trade(no).notify_url == f"{server.url}/callbacks/wechat"
    assert str(sandbox.trade(no).total) == "27.00 CNY"

    sent = sandbox.pay(no)  # the payer pays; WeChat notifies `ordercore serve`
    assert sandbox.deliver(sent) == ACCEPTED  # and again,
    assert sandbox.deliver(sent) == ACCEPTED  # and again

    assert [d[1:] for d in sandbox.deliveries] == [ACCEPTED] * 3
    shown = ordercore(config, "orders", "show", number)
    assert (shown["status"], shown["amounts"]["paid"]) == ("paid", "27.00")
    listed = ordercore(config, "callbacks", "list")["items"]
    assert sorted(c["status"] for c in listed) == ["applied", "duplicate", "duplicate"]
    ordercore(config, "jobs", "run")  # activation (auto mode, no host hook: done at once)
    assert ordercore(config, "orders", "show", number)["status"] == "completed"

    sandbox.refund_processing = True
    refund = ordercore(
        config,
        "refunds", "request", number, "--amount", "10.00", "--destination", "original",
        "--reason", "one week unused",
    )  # fmt: skip
    refund_id = refund["id"]
    assert ordercore(config, "refunds", "approve", refund_id)["status"] == "processing"
    assert ordercore(config, "refunds", "check", refund_id)["status"] == "processing"
    assert ordercore(config, "orders", "show", number)["amounts"]["refunded"] == "0.00"

    sandbox.settle_refund(refund_id)  # REFUND.SUCCESS, to `serve`

    assert sandbox.deliveries[-1][1:] == ACCEPTED
    assert ordercore(config, "refunds", "show", refund_id)["status"] == "succeeded"
    order = ordercore(config, "orders", "show", number)
    assert order["status"] == "completed"  # a partial refund keeps the status
    assert (order["amounts"]["paid"], order["amounts"]["refunded"]) == ("27.00", "10.00")
    (made,) = sandbox.trade(no).refunds
    assert (made.out_refund_no, str(made.amount), made.status) == (
        refund_id,
        "10.00 CNY",
        "SUCCESS",
    )
    assert sandbox.refunds_made == 1

    # Forged notifications for a second order: refused, nothing applied, each one kept.
    second = ordercore(config, "orders", "create", "--customer", "1", "--item", "VPN-1M:1")[
        "number"
    ]
    no2 = ordercore(config, "orders", "pay", second, "--channel", "wechat", "--method", "native")[
        "out_trade_no"
    ]
    sandbox.pay(no2, deliver=False)
    for fault in FORGERIES:
        status, body = sandbox.deliver(sandbox.notification(no2, fault=fault))
        assert status == 400
        assert json.loads(body)["code"] == "FAIL"
    assert ordercore(config, "orders", "show", second)["status"] == "pending"
    listed = ordercore(config, "callbacks", "list")["items"]
    assert sorted(c["status"] for c in listed).count("rejected") == len(FORGERIES)
    assert sandbox.deliver(sandbox.notification(no2)) == ACCEPTED
    assert ordercore(config, "orders", "show", second)["status"] == "paid"
    assert ordercore(config, "audit", "verify")["ok"] is True


def test_the_sandbox_by_hand_prints_a_working_table(tmp_path: Path) -> None:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib

    process = subprocess.Popen(
        [sys.executable, "-m", "ordercore_wechat.sandbox", "--dir", str(tmp_path / "keys")],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
    )
    try:
        assert process.stderr is not None
        ready = process.stderr.readline()
        assert ready.startswith("# WeChat Pay sandbox on http://127.0.0.1:")
        process.send_signal(signal.SIGINT)
        stdout, _ = process.communicate(timeout=20)
    finally:
        if process.poll() is None:  # pragma: no cover
            process.kill()
            process.wait(timeout=10)
    assert process.returncode == 0
    table = tomllib.loads(stdout)["channels"]["wechat"]
    assert table["gateway_url"] == ready.split()[5].rstrip(";")
    assert table["platform_public_key_id"].startswith("PUB_KEY_ID_")
    channel = channel_from_table(table)
    assert isinstance(channel, WechatChannel)
    assert (channel.mchid, channel.appid) == ("1900000109", "wxd678efh567hg6787")
    assert channel.settings.apiv3_key == Path(table["apiv3_key_file"]).read_bytes()
