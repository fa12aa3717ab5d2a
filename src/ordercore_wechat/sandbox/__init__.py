"""A local WeChat Pay API v3 gateway, for tests and development: no account, no network.

:class:`WechatSandbox` is an HTTP server on loopback (standard library, one thread per
connection) that answers the endpoints the ``wechat`` channel calls — ``POST
/v3/pay/transactions/native`` and ``/h5``, the query by ``out-trade-no``, close, ``POST
/v3/refund/domestic/refunds``, the refund query and ``GET /v3/certificates`` — the way WeChat
Pay does: it verifies each request's ``Authorization`` signature with the merchant's key,
keeps trades and refunds in memory, and signs every answer with a platform key pair of its own
(public-key mode, ``PUB_KEY_ID_…``, or certificate mode, a certificate served encrypted with
the APIv3 key). The test (or the developer) plays the payer:

* :meth:`~WechatSandbox.pay` — the payer pays: ``SUCCESS``, and an encrypted, signed
  ``TRANSACTION.SUCCESS`` notification is POSTed to the trade's ``notify_url``;
* :meth:`~WechatSandbox.notification` / :meth:`~WechatSandbox.refund_notification` build any
  notification without sending it — with changed fields, a stale timestamp, a
  ``WECHATPAY/SIGNTEST/`` signature, a broken GCM tag, an unknown serial, no signature, a body
  changed after signing — and :meth:`~WechatSandbox.deliver` POSTs it (again and again, in
  any order);
* ``refund_processing = True`` makes refunds answer ``PROCESSING``;
  :meth:`~WechatSandbox.settle_refund` ends one and sends ``REFUND.SUCCESS``/``ABNORMAL``/
  ``CLOSED``;
* :meth:`~WechatSandbox.fail_next` makes the next call of an endpoint time out, drop the
  connection, answer 500, answer unsigned, badly signed, ``SIGNTEST``-signed, stale, signed
  by an unknown key, or a signed 4xx error — after doing the work or not;
* :meth:`~WechatSandbox.rotate` adds a platform key and signs with it from then on.

``python -m ordercore_wechat.sandbox --help`` runs one by hand.

::

    with WechatSandbox() as sandbox:
        config = sandbox.channel_config(notify_url="http://127.0.0.1:8000/callbacks/wechat")
        core = OrderCore.from_url(url, channels={"wechat": config})
        started = core.payments.start(number, channel="wechat", method="native", actor=actor)
        sandbox.pay(started.attempt.out_trade_no)   # the notification reaches notify_url
"""

from __future__ import annotations

from ._main import main
from ._model import (
    ENDPOINTS,
    FAULTS,
    NOTIFICATION_FAULTS,
    SandboxError,
    SandboxNotification,
    SandboxRefund,
    SandboxTrade,
)
from ._sandbox import DEFAULT_APPID, DEFAULT_MCHID, MODES, WechatSandbox, generate_key

__all__ = [
    "DEFAULT_APPID",
    "DEFAULT_MCHID",
    "ENDPOINTS",
    "FAULTS",
    "MODES",
    "NOTIFICATION_FAULTS",
    "SandboxError",
    "SandboxNotification",
    "SandboxRefund",
    "SandboxTrade",
    "WechatSandbox",
    "generate_key",
    "main",
]
