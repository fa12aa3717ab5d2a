"""A local Alipay gateway, for tests and development: no account, no network.

:class:`AlipaySandbox` is an HTTP server on loopback (standard library, one thread per
connection) that answers ``alipay.trade.precreate``, ``page.pay``, ``wap.pay``, ``query``,
``refund``, ``fastpay.refund.query`` and ``close`` the way Alipay's gateway does: it verifies
each request's RSA2 signature with the application's public key, keeps trades in memory and
signs its answers with a key pair of its own (``{"alipay_trade_xxx_response": {...},
"sign": "..."}``). The test (or the developer) plays the buyer:

* :meth:`~AlipaySandbox.scan` — the buyer scans the QR code: the trade now exists
  (before that, query and close answer ``40004 ACQ.TRADE_NOT_EXIST``, as Alipay does);
* :meth:`~AlipaySandbox.pay` — the buyer pays: the trade is ``TRADE_SUCCESS`` and a signed
  form notification is POSTed to the trade's ``notify_url``;
  :meth:`~AlipaySandbox.finish` sends ``TRADE_FINISHED``,
  :meth:`~AlipaySandbox.notify_refund` a refund notification;
* :meth:`~AlipaySandbox.notification` builds any notification without changing a trade —
  duplicates, out of order, tampered after signing, in GBK, signed with another key — and
  :meth:`~AlipaySandbox.deliver` POSTs it;
* :meth:`~AlipaySandbox.fail_next` makes the next call of a method time out, drop the
  connection, answer ``20000``, HTTP 500, a bad signature, an unsigned error or a ``40004``
  — after doing the work (``apply=True``: only the answer is lost) or not.

Refunds are idempotent per ``out_request_no`` (a repeat answers ``fund_change: "N"`` and
refunds nothing; :attr:`~AlipaySandbox.refunds_made` counts real ones) and never exceed the
paid total. Opening a QR code's content (or a page/H5 checkout URL) in a browser shows a
cashier page with a *Pay* button, so a host application can be tried by hand:
``python -m ordercore_alipay.sandbox --help``.

::

    with AlipaySandbox() as sandbox:
        config = sandbox.channel_config(notify_url="http://127.0.0.1:8000/callbacks/alipay")
        core = OrderCore.from_url(url, channels={"alipay": config})
        started = core.payments.start(number, channel="alipay", method="qr", actor=actor)
        sandbox.pay(started.attempt.out_trade_no)   # the notification reaches notify_url
"""

from __future__ import annotations

from ordercore_alipay.sandbox._cli import main
from ordercore_alipay.sandbox._records import (
    DEFAULT_APP_ID,
    DEFAULT_SELLER_ID,
    FAULTS,
    SandboxError,
    SandboxNotification,
    SandboxRefund,
    SandboxTrade,
    generate_key,
)
from ordercore_alipay.sandbox._sandbox import AlipaySandbox

__all__ = [
    "DEFAULT_APP_ID",
    "DEFAULT_SELLER_ID",
    "FAULTS",
    "AlipaySandbox",
    "SandboxError",
    "SandboxNotification",
    "SandboxRefund",
    "SandboxTrade",
    "generate_key",
    "main",
]
