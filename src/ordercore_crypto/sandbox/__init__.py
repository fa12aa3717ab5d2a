"""Local crypto gateways, for tests, the demo and development: no account, no chain.

Each sandbox is an HTTP server on loopback (standard library) with its invoices in memory,
answering the API its channel calls and sending webhooks signed the gateway's way:

* :class:`BtcpaySandbox` — BTCPay Server's Greenfield invoices and payment methods, webhooks
  with ``BTCPay-Sig`` (indented JSON, several per payment, as BTCPay sends them);
* :class:`EpusdtSandbox` — Epusdt's ``create-transaction`` and ``check-status``, callbacks
  signed MD5 (or HMAC-SHA256, a fork) with numbers written the Go way;
* :class:`NowpaymentsSandbox` — NOWPayments' ``/v1/payment``, IPNs with numbers written as a
  Python sender would (``25.0``, ``3.6e-05``) and signed over the canonical JSON.

The test (or the developer) plays the payer: ``pay(out_trade_no)`` pays exactly what was
locked, ``pay(out_trade_no, coins)`` under- or overpays, ``pay(..., late=True)`` pays after
the invoice expired (BTCPay, NOWPayments); ``webhook``/``callback``/``ipn`` build a
notification without changing anything — with ``secret=``/``token=`` a forged one — and
``deliver`` POSTs it; ``fail_next("http500" | "drop" | "timeout")`` breaks the next API call.
``python -m ordercore_crypto.sandbox`` runs the three until Ctrl-C.
"""

from __future__ import annotations

from ._base import FAULTS, GatewaySandbox, SandboxError, SandboxNotification
from ._btcpay import BtcpayInvoice, BtcpaySandbox
from ._epusdt import EpusdtSandbox, EpusdtTrade, epusdt_signature
from ._nowpayments import NowpaymentsPayment, NowpaymentsSandbox, python_style

__all__ = [
    "FAULTS",
    "BtcpayInvoice",
    "BtcpaySandbox",
    "EpusdtSandbox",
    "EpusdtTrade",
    "GatewaySandbox",
    "NowpaymentsPayment",
    "NowpaymentsSandbox",
    "SandboxError",
    "SandboxNotification",
    "epusdt_signature",
    "main",
    "python_style",
]


def main(argv: list[str] | None = None) -> int:
    """Run the three sandboxes until Ctrl-C, write their secret files to ``--dir`` and print
    the ``[channels.*]`` tables that point at them."""
    import argparse
    import sys
    from pathlib import Path

    from ordercore.testing import wait_for_interrupt

    parser = argparse.ArgumentParser(
        prog="python -m ordercore_crypto.sandbox", description=main.__doc__
    )
    parser.add_argument("--dir", default="crypto-sandbox", help="where to write the secret files")
    parser.add_argument("--notify-base", default=None, help="the host's URL before /callbacks/NAME")
    args = parser.parse_args(argv)
    sandboxes = [BtcpaySandbox(), EpusdtSandbox(), NowpaymentsSandbox()]
    for sandbox in sandboxes:
        sandbox.start()
    try:
        for sandbox in sandboxes:
            notify = f"{args.notify_base}/callbacks/{sandbox.name}" if args.notify_base else None
            print(sandbox.config_table(Path(args.dir), notify_url=notify), flush=True)
        print("# crypto sandboxes running; Ctrl-C to stop", file=sys.stderr, flush=True)
        wait_for_interrupt()
    except KeyboardInterrupt:
        pass
    finally:
        for sandbox in sandboxes:
            sandbox.stop()
    return 0
