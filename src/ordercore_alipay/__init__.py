"""Alipay channel plugin for ordercore (RSA2: face-to-face QR, page and wap pay).

Registered through the ``ordercore`` entry-point group. The channel itself arrives with the
payment engine; this package only reserves the name and the entry point for now.
"""

__all__: list[str] = []
