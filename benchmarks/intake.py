"""Benchmark: the cost of callback intake (issue 12) per notification, against the step it
replaced, in the same run.

Timed per notification, on the headers a platform really sends (a WeChat Pay notification:
its five ``Wechatpay-*`` headers and a dozen ordinary ones) and on a flood (95 headers of
60 KB, what the probe sent):

* **intake** — ``keep_headers`` (the channel's headers kept, secret ones redacted, a summary
  of the rest) plus ``event_problem`` (every field of the parsed event checked against its
  column), what ``handle_callback`` now does;
* **baseline** — the hand-written step it replaced: lower-case every header and redact four
  names (the old ``_redact``), no field check;
* **stored** — the bytes of the headers JSON each writes to the inbox.

Both run alternately in blocks; the figures are medians of the blocks. A callback costs
about 5 to 12 ms (``benchmarks/callbacks.py``): compare the difference with that.

    python benchmarks/intake.py
    python benchmarks/intake.py --blocks 50 --per-block 2000
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable, Mapping

from ordercore import Money
from ordercore._config import REDACTED_HEADERS
from ordercore._payments.intake import event_problem, keep_headers
from ordercore.channels import PaymentEvent

_OLD_REDACTED = frozenset({"authorization", "cookie", "proxy-authorization", "x-api-key"})
_WECHAT = frozenset(
    {
        "wechatpay-timestamp",
        "wechatpay-nonce",
        "wechatpay-signature",
        "wechatpay-serial",
        "wechatpay-signature-type",
        "content-type",
    }
)

REAL = {
    "Host": "shop.example",
    "User-Agent": "Mozilla/4.0",
    "Content-Type": "application/json",
    "Content-Length": "913",
    "Accept": "*/*",
    "Connection": "keep-alive",
    "Pragma": "no-cache",
    "Wechatpay-Nonce": "fdasfwqewlkja484w",
    "Wechatpay-Serial": "5157F09EFDC096DE15EBE81A47057A72",
    "Wechatpay-Signature": "cVdYvDgm0kWwDB1m6nX+Ijt3EPvG0lmMJxaF3V3HW4Ua8XkHhcYB" * 3,
    "Wechatpay-Signature-Type": "WECHATPAY2-SHA256-RSA2048",
    "Wechatpay-Timestamp": "1554208460",
    "X-Forwarded-For": "203.0.113.7",
    "X-Forwarded-Proto": "https",
    "X-Real-Ip": "203.0.113.7",
    "X-Request-Id": "3b2f0a1c-9d7e-4e5f-8a6b-1c2d3e4f5a6b",
    "Authorization": "Bearer not-from-wechat",
}
FLOOD = {**REAL, **{f"X-Flood-{i}": "v" * 60_000 for i in range(95)}}
EVENT = PaymentEvent(
    "20261124083015123A5NJF-1",
    True,
    Money.of("27.00", "CNY"),
    "4200000985202611241234567890",
    "SUCCESS",
    merchant_id="1900000109",
    event_id="EV-2026-11-24-000001",
)


def baseline(headers: Mapping[str, str]) -> str:
    stored = {
        k.lower(): ("[redacted]" if k.lower() in _OLD_REDACTED else str(v))
        for k, v in headers.items()
    }
    return json.dumps(stored, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def intake(headers: Mapping[str, str]) -> str:
    kept = keep_headers(headers, needed=_WECHAT, secret=REDACTED_HEADERS)
    assert event_problem(EVENT) is None
    stored: dict[str, object] = dict(kept.stored)
    if kept.summary is not None:
        stored["@summary"] = kept.summary
    return json.dumps(stored, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _block(step: Callable[[Mapping[str, str]], str], headers: Mapping[str, str], n: int) -> float:
    started = time.perf_counter()
    for _ in range(n):
        step(headers)
    return (time.perf_counter() - started) / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--blocks", type=int, default=30)
    parser.add_argument("--per-block", type=int, default=1000)
    args = parser.parse_args()
    print(f"{args.blocks} blocks of {args.per_block}; medians of the blocks")
    print(f"{'headers':<10} {'intake µs':>10} {'baseline µs':>12} {'ratio':>6} {'stored':>16}")
    for name, headers, per_block in (
        ("real", REAL, args.per_block),
        ("flood", FLOOD, max(1, args.per_block // 100)),
    ):
        ours, theirs = [], []
        for _ in range(args.blocks):
            ours.append(_block(intake, headers, per_block))
            theirs.append(_block(baseline, headers, per_block))
        mine, base = statistics.median(ours), statistics.median(theirs)
        sizes = f"{len(intake(headers)):,} / {len(baseline(headers)):,} B"
        print(f"{name:<10} {mine * 1e6:>10.1f} {base * 1e6:>12.1f} {mine / base:>6.2f} {sizes:>16}")


if __name__ == "__main__":
    main()
