"""Crypto gateways channel plugin for ordercore (BTCPay, Epusdt, NOWPayments, Coinbase).

Registered through the ``ordercore`` entry-point group. The channel itself arrives with the
payment engine; this package only reserves the name and the entry point for now.
"""

__all__: list[str] = []
