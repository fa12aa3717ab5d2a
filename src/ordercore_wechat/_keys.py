"""Which platform key verifies a signature: the trust store behind ``Wechatpay-Serial``.

Two ways to trust WeChat Pay, usable together (the migration from certificates to the public
key, or a rotation, keeps several keys valid at once):

* platform-public-key mode — keys from the merchant console, named ``PUB_KEY_ID_…``;
* platform-certificate mode — certificates named by their hex serial: pinned ones
  (``platform_cert_files``) and/or the ones ``GET /v3/certificates`` returns, downloaded on
  first use and again when a signature names a serial the store does not know (at most once
  per :data:`REFRESH_INTERVAL`, so that forged serials cannot make it call WeChat in a loop).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

__all__ = ["REFRESH_INTERVAL", "PlatformKeys"]

#: The shortest time between two downloads of the certificate list.
REFRESH_INTERVAL: Final = timedelta(seconds=60)

#: Downloads the certificate list: ``(certificates by serial, problem)``.
Downloader = Callable[[], tuple[dict[str, x509.Certificate] | None, str | None]]


def _name(serial: str) -> str:
    """A certificate serial as the store keys it: upper-case hex without leading zeros
    (WeChat Pay may write them with leading zeros, or in lower case)."""
    return serial.upper().lstrip("0") or "0"


def _valid_at(certificate: x509.Certificate, now: datetime) -> bool:
    return certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc


class PlatformKeys:
    """Thread-safe; the channel keeps one for its life."""

    def __init__(
        self,
        public_keys: Mapping[str, rsa.RSAPublicKey],
        pinned: Mapping[str, x509.Certificate],
        downloader: Downloader | None,
    ) -> None:
        self._public_keys = dict(public_keys)
        self._pinned = {_name(k): v for k, v in pinned.items()}
        self._downloaded: dict[str, x509.Certificate] = {}
        self._downloader = downloader
        self._last_download: datetime | None = None
        self._lock = threading.Lock()
        #: Why the last download failed (None after a good one).
        self.last_problem: str | None = None
        self.downloads = 0

    @property
    def public_key_ids(self) -> tuple[str, ...]:
        return tuple(self._public_keys)

    def serials(self) -> tuple[str, ...]:
        """Every serial known now (key ids and certificate serials)."""
        with self._lock:
            return (*self._public_keys, *self._pinned, *self._downloaded)

    def _lookup(self, serial: str, now: datetime) -> rsa.RSAPublicKey | None:
        if serial.startswith("PUB_KEY_ID_"):
            return self._public_keys.get(serial)
        name = _name(serial)
        certificate = self._pinned.get(name) or self._downloaded.get(name)
        if certificate is None or not _valid_at(certificate, now):
            return None
        key = certificate.public_key()
        return key if isinstance(key, rsa.RSAPublicKey) else None

    def key_for(self, serial: str, now: datetime) -> rsa.RSAPublicKey | None:
        """The key named ``serial``, downloading the certificate list first when the serial
        is a certificate's that is not known yet (and no download happened in the last
        :data:`REFRESH_INTERVAL`). None: no key of that name can be trusted."""
        with self._lock:
            key = self._lookup(serial, now)
        if key is not None or serial.startswith("PUB_KEY_ID_") or self._downloader is None:
            return key
        if self.refresh(now):
            with self._lock:
                return self._lookup(serial, now)
        return None

    def refresh(self, now: datetime, *, force: bool = False) -> bool:
        """Download the certificate list now (unless one was downloaded within
        :data:`REFRESH_INTERVAL` and not ``force``); True when the store changed."""
        if self._downloader is None:
            return False
        with self._lock:
            last = self._last_download
            if not force and last is not None and abs(now - last) < REFRESH_INTERVAL:
                return False
            self._last_download = now
        certificates, problem = self._downloader()
        with self._lock:
            self.downloads += 1
            self.last_problem = problem
            if certificates is None:
                return False
            valid = {_name(s): c for s, c in certificates.items() if _valid_at(c, now)}
            changed = valid.keys() != self._downloaded.keys()
            self._downloaded = valid
            return changed
