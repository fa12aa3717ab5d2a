"""``python -m ordercore_wechat.sandbox``: a sandbox by hand."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ordercore.testing import wait_for_interrupt

from ._sandbox import MODES, WechatSandbox

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run a sandbox until Ctrl-C, with its key files written to ``--dir`` and the matching
    ``[channels.wechat]`` table printed, for trying a host application by hand."""
    parser = argparse.ArgumentParser(
        prog="python -m ordercore_wechat.sandbox", description=main.__doc__
    )
    parser.add_argument("--dir", default="wechat-sandbox", help="where to write the key files")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--notify-url", default=None, help="the host's /callbacks/wechat URL")
    parser.add_argument("--mode", choices=sorted(MODES), default="public_key")
    args = parser.parse_args(argv)
    sandbox = WechatSandbox(host=args.host, port=args.port, mode=args.mode)
    with sandbox:
        try:  # the ready line is printed inside: Ctrl-C right after it is a clean stop
            print(sandbox.config_table(args.dir, notify_url=args.notify_url), flush=True)
            print(
                f"# WeChat Pay sandbox on {sandbox.url}; pay a trade at "
                f"{sandbox.url}/cashier/<out_trade_no>; Ctrl-C to stop",
                file=sys.stderr,
                flush=True,
            )
            wait_for_interrupt()
        except KeyboardInterrupt:
            pass
    return 0
