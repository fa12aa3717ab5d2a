"""Benchmark: verifying crypto gateway notifications, against a hand-written baseline.

Timed: ``channel.parse_notification`` of a signed NOWPayments IPN (parse with ``Decimal``,
canonical JSON the JavaScript way, HMAC-SHA512, constant-time compare, the payment event
with its amounts) and of a signed Epusdt callback (sorted ``k=v`` with Go number formatting,
MD5). No network: the channels are built from the sandboxes' configurations.

Baseline, written by hand in this file with the standard library only: ``json.loads`` (floats),
``json.dumps(sort_keys=True, separators=(",", ":"))`` / a sorted join, the same HMAC or MD5
and ``hmac.compare_digest`` — what a naive integration does (and gets wrong for ``25.0``:
that is why the channels do more). Both run alternately in blocks; the report is the median
time per notification of each and their ratio.

    python benchmarks/crypto_notifications.py --n 20000

This is a benchmark, not a test: it reports figures and never fails on them.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import statistics
import time
from collections.abc import Callable
from decimal import Decimal

from ordercore.channels import Notification
from ordercore_crypto import EpusdtChannel, NowpaymentsChannel
from ordercore_crypto._epusdt import sign as epusdt_sign
from ordercore_crypto._numbers import canonical_json, parse_json
from ordercore_crypto.sandbox import EpusdtSandbox, NowpaymentsSandbox

IPN = (
    b'{"payment_id": 5077125051, "payment_status": "finished", "pay_address": "TQ5xY",'
    b' "price_amount": 27.0, "price_currency": "cny", "pay_amount": 3.75,'
    b' "actually_paid": 3.75, "pay_currency": "usdttrc20", "order_id": "O1",'
    b' "order_description": "VPN", "purchase_id": "6084744717", "outcome_amount": 3.7312,'
    b' "outcome_currency": "usdttrc20", "fee": {"currency": "usdttrc20", "depositFee": 0,'
    b' "withdrawalFee": 3.6e-05, "serviceFee": 0.01875}}'
)


def _time_block(fn: Callable[[], object], n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--block", type=int, default=1000)
    args = parser.parse_args()
    with NowpaymentsSandbox() as nps, EpusdtSandbox() as eps:
        now = NowpaymentsChannel(nps.channel_config())
        epu = EpusdtChannel(eps.channel_config())
        secret = nps.ipn_secret.encode()
        ipn_sig = hmac.new(secret, canonical_json(parse_json(IPN)).encode(), hashlib.sha512)
        ipn = Notification("nowpayments", {"x-nowpayments-sig": ipn_sig.hexdigest()}, IPN)
        params = {
            "trade_id": "T1",
            "order_id": "O1",
            "amount": Decimal("27"),
            "actual_amount": Decimal("3.75"),
            "token": "TQ5",
            "block_transaction_id": "b",
            "status": 2,
        }
        signature = epusdt_sign(params, eps.token)
        cb_body = (
            b'{"trade_id":"T1","order_id":"O1","amount":27,"actual_amount":3.75,"token":"TQ5",'
            b'"block_transaction_id":"b","status":2,"signature":"' + signature.encode() + b'"}'
        )
        callback = Notification("epusdt", {}, cb_body)
        token = eps.token

        def naive_ipn() -> bool:
            body = json.loads(IPN)
            text = json.dumps(body, sort_keys=True, separators=(",", ":"))
            mac = hmac.new(secret, text.encode(), hashlib.sha512).hexdigest()
            return hmac.compare_digest(mac, ipn_sig.hexdigest())

        def naive_epusdt() -> bool:
            body = json.loads(cb_body)
            text = "&".join(
                f"{k}={body[k]}" for k in sorted(body) if k != "signature" and body[k] != ""
            )
            mac = hashlib.md5((text + token).encode()).hexdigest()
            return hmac.compare_digest(mac, body["signature"])

        assert now.parse_notification(ipn).events, "the IPN must verify"
        assert epu.parse_notification(callback).events, "the callback must verify"
        for label, ours, baseline in (
            ("NOWPayments IPN", lambda: now.parse_notification(ipn), naive_ipn),
            ("Epusdt callback", lambda: epu.parse_notification(callback), naive_epusdt),
        ):
            mine: list[float] = []
            base: list[float] = []
            for _ in range(max(1, args.n // args.block)):
                mine.append(_time_block(ours, args.block))
                base.append(_time_block(baseline, args.block))
            m, b = statistics.median(mine), statistics.median(base)
            print(
                f"{label}: ordercore {m * 1e6:.1f} µs, baseline {b * 1e6:.1f} µs, "
                f"ratio {m / b:.2f}x (median of {len(mine)} blocks of {args.block})"
            )


if __name__ == "__main__":
    main()
