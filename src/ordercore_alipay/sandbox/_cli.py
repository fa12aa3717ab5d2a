"""``python -m ordercore_alipay.sandbox``: a sandbox run by hand (see ``__main__.py``)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ordercore.testing import wait_for_interrupt
from ordercore_alipay.sandbox._sandbox import AlipaySandbox


def main(argv: Sequence[str] | None = None) -> int:
    """Run a sandbox until Ctrl-C, with its key files written to ``--dir`` and the matching
    ``[channels.alipay]`` table printed, for trying a host application by hand."""
    parser = argparse.ArgumentParser(
        prog="python -m ordercore_alipay.sandbox", description=main.__doc__
    )
    parser.add_argument("--dir", default="alipay-sandbox", help="where to write the key files")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--notify-url", default=None, help="the host's /callbacks/alipay URL")
    parser.add_argument("--cert-mode", action="store_true", help="answer in certificate mode")
    args = parser.parse_args(argv)
    sandbox = AlipaySandbox(host=args.host, port=args.port, cert_mode=args.cert_mode)
    with sandbox:
        try:  # the ready line is printed inside: Ctrl-C right after it is a clean stop
            print(sandbox.config_table(args.dir, notify_url=args.notify_url), flush=True)
            print(f"# Alipay sandbox on {sandbox.url}; Ctrl-C to stop", file=sys.stderr, flush=True)
            wait_for_interrupt()
        except KeyboardInterrupt:
            pass
    return 0
