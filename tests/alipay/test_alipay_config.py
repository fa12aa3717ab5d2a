"""Configuration: every setting, from Python and from a TOML table with key files; what is
wrong is a ConfigurationError at construction, with a message that says what to fix."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import attrs
import pytest
from alipay_kit import NOWHERE, keys, make_sandbox
from cryptography.hazmat.primitives import serialization

from helpers import Backend, FakeClock
from ordercore import ConfigurationError, Settings
from ordercore._payments.channel_config import channel_config
from ordercore.channels import ChannelConfig, Secret
from ordercore_alipay import DEFAULT_GATEWAY_URL, AlipayChannel, ordercore_register_channels


def base_config(**options: Any) -> ChannelConfig:
    config = make_sandbox().channel_config(
        notify_url=NOWHERE, gateway_url="http://127.0.0.1:9/gateway.do"
    )
    merged = {**config.options, **options}
    return attrs.evolve(config, options={k: v for k, v in merged.items() if v is not None})


def with_secrets(config: ChannelConfig, **secrets: bytes | None) -> ChannelConfig:
    merged = {k: v.reveal() for k, v in config.secrets.items()}
    merged.update(secrets)  # type: ignore[arg-type]
    return attrs.evolve(config, secrets={k: Secret(v) for k, v in merged.items() if v is not None})


def refused(config: ChannelConfig) -> str:
    with pytest.raises(ConfigurationError) as info:
        AlipayChannel(config)
    return str(info.value)


def test_defaults() -> None:
    config = base_config(gateway_url=None, timeout_seconds=None)
    channel = AlipayChannel(config)
    assert channel.gateway_url == DEFAULT_GATEWAY_URL
    assert channel.timeout == 15.0
    assert channel.config.refund_deadline_days == 90
    assert channel.page_product_code == "FAST_INSTANT_TRADE_PAY"
    assert channel.wap_product_code == "QUICK_WAP_WAY"
    assert not channel.cert_mode
    assert "PRIVATE" not in repr(channel)
    assert "PRIVATE" not in repr(channel.config)
    assert ordercore_register_channels(Settings()) == [AlipayChannel]


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"app_id": None}, "app_id is required"),
        ({"app_id": "abc"}, "app_id is required"),
        ({"seller_id": "12345"}, "seller_id must be"),
        ({"sign_type": "RSA"}, "sign_type RSA (SHA1withRSA) is refused"),
        ({"sign_type": "rsa"}, "refused"),
        ({"sign_type": "SM2"}, "sign_type must be RSA2"),
        ({"timeout_seconds": 0}, "timeout_seconds"),
        ({"timeout_seconds": "15"}, "timeout_seconds"),
        ({"timeout_seconds": True}, "timeout_seconds"),
        ({"gateway_url": "ftp://x/gateway.do"}, "gateway_url must be an http(s) URL"),
        ({"return_url": "/relative"}, "return_url must be an http(s) URL"),
        ({"app_idd": "2021"}, "unknown setting(s): app_idd"),
        ({"transport": object()}, "transport must have a post"),
        ({"app_id": ["1"]}, "app_id must be text"),
    ],
)
def test_bad_settings(options: dict[str, Any], words: str) -> None:
    assert words in refused(base_config(**options))


def test_refund_deadline_days_must_be_positive() -> None:
    assert "refund_deadline_days" in refused(attrs.evolve(base_config(), refund_deadline_days=0))
    channel = AlipayChannel(attrs.evolve(base_config(), refund_deadline_days=365))
    assert channel.config.refund_deadline_days == 365


@pytest.mark.parametrize(
    ("secrets", "words"),
    [
        ({"app_private_key": None}, "needs the secret 'app_private_key'"),
        ({"alipay_public_key": None}, "needs the secret 'alipay_public_key'"),
        ({"app_private_key": b"not a key"}, "app_private_key_file"),
        ({"alipay_public_key": b"-----BEGIN PUBLIC KEY-----\nxx\n"}, "alipay_public_key_file"),
        ({"app_cert": b"x"}, "missing: alipay_cert_file, alipay_root_cert_file"),
        ({"alipay_public_key_cert": b"x"}, "unknown key file(s): alipay_public_key_cert_file"),
    ],
)
def test_bad_keys(secrets: dict[str, bytes | None], words: str) -> None:
    assert words in refused(with_secrets(base_config(), **secrets))


def test_a_short_key_is_refused() -> None:
    from cryptography.hazmat.primitives.asymmetric import rsa

    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    pem = small.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    assert "2048" in refused(with_secrets(base_config(), app_private_key=pem))


@pytest.mark.parametrize("form", ["pkcs1", "pkcs8", "bare-pkcs8", "bare-pkcs1"])
def test_private_key_forms(form: str) -> None:
    key = keys().app
    fmt = (
        serialization.PrivateFormat.TraditionalOpenSSL
        if form.endswith("pkcs1")
        else serialization.PrivateFormat.PKCS8
    )
    if form.startswith("bare"):
        der = key.private_bytes(serialization.Encoding.DER, fmt, serialization.NoEncryption())
        data = base64.b64encode(der)
    else:
        data = key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption())
    channel = AlipayChannel(with_secrets(base_config(), app_private_key=data))
    params = channel.signed_params("alipay.trade.query", {"out_trade_no": "T1"})
    assert params["sign"]


def test_bare_base64_public_key_as_the_open_platform_shows_it() -> None:
    der = (
        keys()
        .alipay.public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    AlipayChannel(with_secrets(base_config(), alipay_public_key=base64.b64encode(der)))


def test_cert_mode_settings() -> None:
    sandbox = make_sandbox(cert_mode=True)
    config = sandbox.channel_config(notify_url=NOWHERE, gateway_url="http://127.0.0.1:9/g")
    channel = AlipayChannel(config)
    assert channel.cert_mode
    params = channel.signed_params("alipay.trade.query", {"out_trade_no": "T1"})
    assert len(params["app_cert_sn"]) == 32
    assert len(params["alipay_root_cert_sn"]) == 32  # one RSA root in the sandbox's chain
    # an application certificate that is not the private key's
    other = make_sandbox(cert_mode=True, app_private_key=keys().stranger)
    mismatched = with_secrets(config, app_cert=other.certificates["app_cert"])
    assert "does not hold the public key" in refused(mismatched)
    assert "alipay_root_cert_file" in refused(with_secrets(config, alipay_root_cert=b"x"))


def test_a_toml_table_with_key_files(tmp_path: Path) -> None:
    sandbox = make_sandbox()
    files = sandbox.write_files(tmp_path / "keys")
    table = {
        "app_id": "2021000000000001",
        "seller_id": "2088000000000001",
        "gateway_url": "https://openapi-sandbox.dl.alipaydev.com/gateway.do",
        "notify_url": "https://shop.example/callbacks/alipay",
        "return_url": "https://shop.example/paid",
        "timeout_seconds": 7.5,
        "refund_deadline_days": 365,
        "min_amount": "0.01",
        "max_amount": "50000",
        "currency": "CNY",
        "fee_percent": "0.6",
        **{name: str(path) for name, path in files.items()},
    }
    config = channel_config("alipay", table)
    assert set(config.secrets) == {"app_private_key", "alipay_public_key"}

    channel = AlipayChannel(config)

    assert channel.notify_url == "https://shop.example/callbacks/alipay"
    assert channel.return_url == "https://shop.example/paid"
    assert channel.timeout == 7.5
    assert channel.config.refund_deadline_days == 365
    assert str(channel.config.max_amount) == "50000.00 CNY"


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)  # configuration only
def test_the_engine_builds_it_from_settings(backend: Backend, clock: FakeClock) -> None:
    config = base_config()
    core = backend.core(clock, channels={"alipay": config})
    try:
        assert isinstance(core.channel("alipay"), AlipayChannel)
    finally:
        core.close()
    broken = backend.core(clock, channels={"alipay": {"app_id": "1", "sign_type": "RSA"}})
    try:
        with pytest.raises(ConfigurationError, match="sign_type RSA"):
            broken.channel("alipay")
    finally:
        broken.close()
