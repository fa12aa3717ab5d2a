"""``python -m ordercore_alipay.sandbox``: run a sandbox until Ctrl-C (``--help``)."""

from ordercore_alipay.sandbox._cli import main

if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
