"""``python -m ordercore_crypto.sandbox``: the three sandboxes until Ctrl-C (``--help``)."""

from ordercore_crypto.sandbox import main

if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
