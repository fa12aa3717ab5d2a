"""WeChat Pay API v3 channel plugin for ordercore (Native QR, H5; AES-256-GCM callbacks).

Registered through the ``ordercore`` entry-point group. The channel itself arrives with the
payment engine; this package only reserves the name and the entry point for now.
"""

__all__: list[str] = []
