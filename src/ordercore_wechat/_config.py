"""``[channels.wechat]``: every setting checked once, when the channel is built.

Anything wrong raises :class:`~ordercore.ConfigurationError` naming the setting; ordercore
then disables this channel only.
"""

from __future__ import annotations

import ipaddress
import re
import urllib.parse
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from attrs import frozen
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from ordercore import ConfigurationError
from ordercore.channels import ChannelConfig

from . import _crypto
from ._transport import Transport, UrllibTransport

__all__ = [
    "DEFAULT_GATEWAY_URL",
    "DEFAULT_REFUND_DEADLINE_DAYS",
    "DEFAULT_TIMEOUT_SECONDS",
    "H5_TYPES",
    "WechatSettings",
    "read_settings",
]

#: WeChat Pay's API host (``api2.mch.weixin.qq.com`` is its backup).
DEFAULT_GATEWAY_URL: Final = "https://api.mch.weixin.qq.com"
DEFAULT_TIMEOUT_SECONDS: Final = 15.0
#: WeChat Pay takes refunds for a year after payment.
DEFAULT_REFUND_DEADLINE_DAYS: Final = 365
#: ``scene_info.h5_info.type`` values.
H5_TYPES: Final = frozenset({"Wap", "iOS", "Android"})

_OPTIONS: Final = frozenset(
    {
        "mchid",
        "appid",
        "merchant_serial_no",
        "gateway_url",
        "timeout_seconds",
        "platform_public_key_id",
        "platform_cert_files",
        "platform_cert_download",
        "h5_type",
        "transport",
        "clock",
    }
)
_SECRETS: Final = frozenset({"merchant_private_key", "apiv3_key", "platform_public_key"})
_MCHID: Final = re.compile(r"[0-9]{1,32}")
_APPID: Final = re.compile(r"[A-Za-z0-9_]{1,32}")
_SERIAL: Final = re.compile(r"[0-9A-Fa-f]{1,64}")
_PUB_KEY_ID: Final = re.compile(r"PUB_KEY_ID_[0-9A-Za-z_]{1,64}")
_LOOPBACK: Final = frozenset({"localhost"})


@frozen
class WechatSettings:
    """The checked settings of one ``wechat`` channel."""

    mchid: str
    appid: str
    merchant_serial_no: str
    merchant_key: rsa.RSAPrivateKey
    apiv3_key: bytes
    gateway_url: str
    notify_url: str | None
    timeout: float
    h5_type: str
    #: platform-public-key mode: ``PUB_KEY_ID_…`` → key (several during a rotation)
    public_keys: Mapping[str, rsa.RSAPublicKey]
    #: certificates pinned by ``platform_cert_files`` (serial → certificate)
    pinned: Mapping[str, x509.Certificate]
    #: whether ``GET /v3/certificates`` is called (certificate mode without pinning)
    download: bool
    transport: Transport
    clock: Callable[[], datetime] | None

    def __repr__(self) -> str:
        return f"<WechatSettings mchid={self.mchid} appid={self.appid}>"


def _fail(config: ChannelConfig, message: str) -> ConfigurationError:
    return ConfigurationError(f"[channels.{config.name}] {message}", channel=config.name)


def _text(config: ChannelConfig, key: str) -> str | None:
    value = config.options.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise _fail(config, f"{key} must be text, not {type(value).__name__}")
    text = str(value).strip()
    return text or None


def _is_loopback(host: str) -> bool:
    if host.lower() in _LOOPBACK:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_url(config: ChannelConfig, key: str, value: str, *, base: bool) -> str:
    """An ``https`` URL (``http`` only on loopback, for the sandbox); ``base``: no path,
    query or fragment (``gateway_url``), else no query or fragment (``notify_url``: WeChat
    refuses a query string)."""
    try:
        parts = urllib.parse.urlsplit(value)
        host = parts.hostname or ""
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        raise _fail(config, f"{key} is not a URL: {value!r}") from None
    if parts.scheme not in ("http", "https") or not host:
        raise _fail(config, f"{key} must be an https URL, not {value!r}")
    if parts.scheme == "http" and not _is_loopback(host):
        raise _fail(config, f"{key} must be https (http only on loopback), not {value!r}")
    if parts.query or parts.fragment or (base and parts.path not in ("", "/")):
        what = "a path, query or fragment" if base else "a query or fragment"
        raise _fail(config, f"{key} must not have {what}: {value!r}")
    return value.rstrip("/") if base else value


def _secret(config: ChannelConfig, name: str) -> bytes:
    if name not in config.secrets:
        raise _fail(config, f"{name}_file (or {name}_env) is required")
    return config.secret(name)


def _public_keys(config: ChannelConfig) -> dict[str, rsa.RSAPublicKey]:
    ids_value: Any = config.options.get("platform_public_key_id")
    has_file = "platform_public_key" in config.secrets
    if ids_value is None and not has_file:
        return {}
    if ids_value is None:
        raise _fail(
            config,
            "platform_public_key_file is set but platform_public_key_id is not: "
            "public-key mode needs both",
        )
    if not has_file:
        raise _fail(
            config,
            "platform_public_key_id is set but platform_public_key_file is not: "
            "public-key mode needs both",
        )
    ids = [ids_value] if isinstance(ids_value, str) else ids_value
    if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
        raise _fail(config, "platform_public_key_id must be a PUB_KEY_ID_… text or a list of them")
    for key_id in ids:
        if not _PUB_KEY_ID.fullmatch(key_id):
            raise _fail(
                config, f"platform_public_key_id must look like PUB_KEY_ID_…, not {key_id!r}"
            )
    if len(set(ids)) != len(ids):
        raise _fail(config, "platform_public_key_id repeats an id")
    try:
        keys = _crypto.load_public_keys(config.secret("platform_public_key"))
    except _crypto.CryptoError as exc:
        raise _fail(config, f"platform_public_key_file: {exc}") from None
    if len(keys) != len(ids):
        raise _fail(
            config,
            f"platform_public_key_file holds {len(keys)} key(s) but platform_public_key_id "
            f"names {len(ids)}: give one id per key, in file order",
        )
    return dict(zip(ids, keys, strict=True))


def _pinned(config: ChannelConfig) -> dict[str, x509.Certificate]:
    files: Any = config.options.get("platform_cert_files")
    if files is None:
        return {}
    if isinstance(files, str):
        files = [files]
    if not isinstance(files, list) or not files or not all(isinstance(f, str) for f in files):
        raise _fail(config, "platform_cert_files must be a list of PEM file paths")
    pinned: dict[str, x509.Certificate] = {}
    for name in files:
        path = Path(name).expanduser()
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise _fail(
                config, f"platform_cert_files: cannot read {path} ({exc.strerror})"
            ) from None
        try:
            certificates = _crypto.load_certificates(data)
        except _crypto.CryptoError as exc:
            raise _fail(config, f"platform_cert_files: {path}: {exc}") from None
        for certificate in certificates:
            pinned[_crypto.certificate_serial(certificate)] = certificate
    return pinned


def read_settings(config: ChannelConfig, transport: Transport | None) -> WechatSettings:
    """Check every setting of ``config``; :class:`~ordercore.ConfigurationError` names the
    first one that is wrong."""
    unknown = set(config.options) - _OPTIONS
    if unknown:
        raise _fail(
            config,
            f"unknown setting(s): {', '.join(sorted(unknown))} "
            f"(known: {', '.join(sorted(_OPTIONS))}, plus the key files)",
        )
    unknown_secrets = set(config.secrets) - _SECRETS
    if unknown_secrets:
        raise _fail(
            config,
            f"unknown key file(s): {', '.join(sorted(s + '_file' for s in unknown_secrets))} "
            f"(known: {', '.join(sorted(s + '_file' for s in _SECRETS))})",
        )
    mchid = _text(config, "mchid")
    if mchid is None or not _MCHID.fullmatch(mchid):
        raise _fail(config, f"mchid is required: the digits of your merchant id (got {mchid!r})")
    appid = _text(config, "appid")
    if appid is None or not _APPID.fullmatch(appid):
        raise _fail(config, f"appid is required: your app's id, e.g. wx… (got {appid!r})")
    serial = _text(config, "merchant_serial_no")
    if serial is None or not _SERIAL.fullmatch(serial):
        raise _fail(
            config,
            "merchant_serial_no is required: the hex serial number of your merchant API "
            f"certificate (got {serial!r})",
        )
    try:
        merchant_key = _crypto.load_private_key(_secret(config, "merchant_private_key"))
    except _crypto.CryptoError as exc:
        raise _fail(config, f"merchant_private_key_file: {exc}") from None
    try:
        apiv3_key = _crypto.load_apiv3_key(_secret(config, "apiv3_key"))
    except _crypto.CryptoError as exc:
        raise _fail(config, f"apiv3_key_file: {exc}") from None
    timeout: object = config.options.get("timeout_seconds", DEFAULT_TIMEOUT_SECONDS)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout <= 300:
        raise _fail(
            config, f"timeout_seconds must be a number of seconds in (0, 300], not {timeout!r}"
        )
    gateway = check_url(
        config, "gateway_url", _text(config, "gateway_url") or DEFAULT_GATEWAY_URL, base=True
    )
    notify_url = (
        None
        if config.notify_url is None
        else check_url(config, "notify_url", config.notify_url, base=False)
    )
    h5_type = _text(config, "h5_type") or "Wap"
    if h5_type not in H5_TYPES:
        raise _fail(config, f"h5_type must be one of {', '.join(sorted(H5_TYPES))}")
    public_keys = _public_keys(config)
    pinned = _pinned(config)
    download_value = config.options.get("platform_cert_download")
    if download_value is not None and not isinstance(download_value, bool):
        raise _fail(config, "platform_cert_download must be true or false")
    download = (not public_keys and not pinned) if download_value is None else download_value
    if not public_keys and not pinned and not download:
        raise _fail(
            config,
            "platform_cert_download = false leaves no way to verify WeChat Pay: set "
            "platform_public_key_file and platform_public_key_id, or platform_cert_files",
        )
    chosen: Any = transport or config.options.get("transport") or UrllibTransport()
    if not callable(getattr(chosen, "request", None)):
        raise _fail(config, "transport must have a request(method, url, body, headers, timeout)")
    clock: Any = config.options.get("clock")
    if clock is not None and not callable(clock):
        raise _fail(config, "clock must be callable (returning an aware datetime)")
    return WechatSettings(
        mchid=mchid,
        appid=appid,
        merchant_serial_no=serial.upper(),
        merchant_key=merchant_key,
        apiv3_key=apiv3_key,
        gateway_url=gateway,
        notify_url=notify_url,
        timeout=float(timeout),
        h5_type=h5_type,
        public_keys=public_keys,
        pinned=pinned,
        download=download,
        transport=chosen,
        clock=clock,
    )
