"""The ``[channels.alipay]`` settings: gateways, defaults, the option names the channel
knows, its secrets in key mode and in certificate mode, and how options are read.
"""

from __future__ import annotations

import re
import urllib.parse
from typing import Final

from ordercore import ConfigurationError
from ordercore.channels import (
    ChannelConfig,
)

__all__ = [
    "DEFAULT_GATEWAY_URL",
    "DEFAULT_REFUND_DEADLINE_DAYS",
    "DEFAULT_TIMEOUT_SECONDS",
    "RETRYABLE_REFUND_CODES",
    "SANDBOX_GATEWAY_URL",
]

#: Alipay's production gateway.
DEFAULT_GATEWAY_URL: Final = "https://openapi.alipay.com/gateway.do"


#: Alipay's own sandbox environment (set it as ``gateway_url`` to use it).
SANDBOX_GATEWAY_URL: Final = "https://openapi-sandbox.dl.alipaydev.com/gateway.do"


DEFAULT_TIMEOUT_SECONDS: Final = 15.0


#: The refund window when ``refund_deadline_days`` is not set: 3 months, the shorter of
#: Alipay's usual contracts (3 or 12 months).
DEFAULT_REFUND_DEADLINE_DAYS: Final = 90


#: Refund ``sub_code`` values after which the same request, made again later, can succeed.
RETRYABLE_REFUND_CODES: Final = frozenset(
    {
        "ACQ.SYSTEM_ERROR",  # Alipay's own error: retry with the same out_request_no
        "ACQ.SELLER_BALANCE_NOT_ENOUGH",  # top the merchant account up, then retry
        "ACQ.REASON_TRADE_BEEN_FREEZEN",  # the trade is frozen for now
    }
)


_APP_ID: Final = re.compile(r"[0-9]{1,32}")


_SELLER_ID: Final = re.compile(r"2088[0-9]{12}")


_OPTIONS: Final = frozenset(
    {
        "app_id",
        "seller_id",
        "gateway_url",
        "return_url",
        "sign_type",
        "timeout_seconds",
        "app_auth_token",
        "page_product_code",
        "wap_product_code",
        "transport",
    }
)


_KEY_SECRETS: Final = frozenset({"app_private_key", "alipay_public_key"})


_CERT_SECRETS: Final = frozenset({"app_cert", "alipay_root_cert", "alipay_cert"})


def _option_text(config: ChannelConfig, key: str) -> str | None:
    value = config.options.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ConfigurationError(
            f"[channels.{config.name}] {key} must be text, not {type(value).__name__}",
            channel=config.name,
        )
    text = str(value).strip()
    return text or None


def _url(config: ChannelConfig, key: str, value: str | None) -> str | None:
    if value is None:
        return None
    parts = urllib.parse.urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigurationError(
            f"[channels.{config.name}] {key} must be an http(s) URL, not {value!r}",
            channel=config.name,
        )
    return value
