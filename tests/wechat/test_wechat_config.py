"""Configuration: every setting, from Python and from a TOML table with key files and
environment variables; what is wrong is a ConfigurationError at construction naming the
setting, and it disables this channel only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from wechat_kit import APIV3_KEY, NOWHERE, channel_from_table, keys, make_sandbox

import ordercore.testing
from helpers import Backend, FakeClock
from ordercore import ConfigurationError, Settings
from ordercore.channels import ChannelConfig, Secret
from ordercore.testing import fake_channel_config
from ordercore_wechat import (
    DEFAULT_GATEWAY_URL,
    UrllibTransport,
    WechatChannel,
    ordercore_register_channels,
)

PUB_KEY_ID = "PUB_KEY_ID_0114232134912410000000000000"
BROKEN_PUBLIC_KEY = b"-----BEGIN PUBLIC KEY-----\nxx\n-----END PUBLIC KEY-----\n"


def base_config(**options: Any) -> ChannelConfig:
    config = make_sandbox().channel_config(notify_url=NOWHERE, gateway_url="http://127.0.0.1:9")
    merged = {**config.options, **options}
    return attrs.evolve(config, options={k: v for k, v in merged.items() if v is not None})


def with_secrets(config: ChannelConfig, **secrets: bytes | None) -> ChannelConfig:
    merged: dict[str, bytes | None] = {k: v.reveal() for k, v in config.secrets.items()}
    merged.update(secrets)
    return attrs.evolve(config, secrets={k: Secret(v) for k, v in merged.items() if v is not None})


def refused(config: ChannelConfig) -> str:
    with pytest.raises(ConfigurationError) as info:
        WechatChannel(config)
    assert info.value.channel == "wechat"  # type: ignore[attr-defined]
    return str(info.value)


def pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def test_defaults() -> None:
    channel = WechatChannel(base_config(gateway_url=None, timeout_seconds=None))
    assert channel.gateway_url == DEFAULT_GATEWAY_URL
    assert channel.timeout == 15.0
    assert channel.config.refund_deadline_days == 365
    assert channel.settings.h5_type == "Wap"
    assert isinstance(channel.transport, UrllibTransport)
    assert not channel.settings.download  # public-key mode: nothing to download
    assert channel.settings.merchant_serial_no == "5157F09EFDC096DE15EBE81A47057A7232F1B8E1"
    for text in (repr(channel), repr(channel.config), repr(channel.settings)):
        assert "PRIVATE" not in text
        assert APIV3_KEY.decode() not in text
    assert ordercore_register_channels(Settings()) == [WechatChannel]


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"mchid": None}, "mchid is required"),
        ({"mchid": "19000abc"}, "mchid is required"),
        ({"mchid": ["1"]}, "mchid must be text"),
        ({"appid": None}, "appid is required"),
        ({"appid": "wx 1"}, "appid is required"),
        ({"merchant_serial_no": None}, "merchant_serial_no is required"),
        ({"merchant_serial_no": "5157F09G"}, "merchant_serial_no is required"),
        ({"timeout_seconds": 0}, "timeout_seconds"),
        ({"timeout_seconds": 301}, "timeout_seconds"),
        ({"timeout_seconds": "15"}, "timeout_seconds"),
        ({"timeout_seconds": True}, "timeout_seconds"),
        ({"gateway_url": "ftp://api.mch.weixin.qq.com"}, "gateway_url must be an https URL"),
        ({"gateway_url": "http://api.mch.weixin.qq.com"}, "gateway_url must be https"),
        ({"gateway_url": "https://api.mch.weixin.qq.com/v3"}, "gateway_url must not have"),
        ({"gateway_url": "https://api.mch.weixin.qq.com:x"}, "gateway_url is not a URL"),
        ({"h5_type": "Web"}, "h5_type must be one of"),
        ({"mch_id": "1900000109"}, "unknown setting(s): mch_id"),
        ({"transport": object()}, "transport must have a request"),
        ({"clock": "now"}, "clock must be callable"),
        ({"platform_public_key_id": "KEY_1"}, "must look like PUB_KEY_ID_"),
        ({"platform_public_key_id": [PUB_KEY_ID, PUB_KEY_ID + "2"]}, "holds 1 key(s)"),
        ({"platform_public_key_id": [PUB_KEY_ID, PUB_KEY_ID]}, "repeats an id"),
        ({"platform_public_key_id": [1]}, "PUB_KEY_ID_… text or a list"),
        ({"platform_public_key_id": None}, "platform_public_key_id is not"),
        ({"platform_cert_download": "yes"}, "platform_cert_download must be true or false"),
        ({"platform_cert_files": ["/nonexistent/cert.pem"]}, "cannot read /nonexistent/cert.pem"),
        ({"platform_cert_files": 3}, "platform_cert_files must be a list"),
    ],
)
def test_bad_settings(options: dict[str, Any], words: str) -> None:
    assert words in refused(base_config(**options))


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("https://shop.example/callbacks/wechat?x=1", "notify_url must not have a query"),
        ("http://shop.example/callbacks/wechat", "notify_url must be https"),
        ("/callbacks/wechat", "notify_url must be an https URL"),
    ],
)
def test_bad_notify_urls(url: str, words: str) -> None:
    assert words in refused(attrs.evolve(base_config(), notify_url=url))


def test_http_only_on_loopback() -> None:
    for host in ("127.0.0.1", "localhost", "[::1]"):
        config = attrs.evolve(base_config(gateway_url=f"http://{host}:9"), notify_url=None)
        assert WechatChannel(config).gateway_url == f"http://{host}:9"


def test_refund_deadline_days_must_be_positive() -> None:
    assert "refund_deadline_days" in refused(attrs.evolve(base_config(), refund_deadline_days=0))
    channel = WechatChannel(attrs.evolve(base_config(), refund_deadline_days=180))
    assert channel.config.refund_deadline_days == 180


@pytest.mark.parametrize(
    ("secrets", "words"),
    [
        ({"merchant_private_key": None}, "merchant_private_key_file (or merchant_private_key_env)"),
        ({"apiv3_key": None}, "apiv3_key_file (or apiv3_key_env) is required"),
        ({"merchant_private_key": b"not a key"}, "merchant_private_key_file: not an unencrypted"),
        ({"apiv3_key": b"0123456789abcdef0123456789abcde"}, "not 31 bytes"),
        ({"apiv3_key": b"0123456789abcdef0123456789abcdef0"}, "not 33 bytes"),
        ({"apiv3_key": b"0123456789abcdef 123456789abcdef"}, "apiv3_key_file: the APIv3 key"),
        ({"apiv3_key": "0123456789abcdef0123456789abc€".encode()}, "apiv3_key_file"),
        ({"platform_public_key": BROKEN_PUBLIC_KEY}, "platform_public_key_file"),
        ({"platform_public_key": b"no key here"}, "no PEM PUBLIC KEY block"),
        ({"platform_cert": b"x"}, "unknown key file(s): platform_cert_file"),
    ],
)
def test_bad_keys(secrets: dict[str, bytes | None], words: str) -> None:
    assert words in refused(with_secrets(base_config(), **secrets))


def test_keys_that_are_not_rsa_2048_are_refused() -> None:
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    assert "2048" in refused(with_secrets(base_config(), merchant_private_key=pem(small)))
    curve = ec.generate_private_key(ec.SECP256R1())
    assert "not an RSA private key" in refused(
        with_secrets(base_config(), merchant_private_key=pem(curve))
    )
    encrypted = keys().merchant.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"),
    )
    assert "merchant_private_key_file" in refused(
        with_secrets(base_config(), merchant_private_key=encrypted)
    )


def test_an_apiv3_key_file_with_a_line_break_is_read() -> None:
    channel = WechatChannel(with_secrets(base_config(), apiv3_key=APIV3_KEY + b"\n"))
    assert channel.settings.apiv3_key == APIV3_KEY


def test_half_a_public_key_mode_is_refused() -> None:
    config = base_config()
    no_file = with_secrets(config, platform_public_key=None)
    assert "platform_public_key_id is set but platform_public_key_file is not" in refused(no_file)
    no_id = base_config(platform_public_key_id=None)
    assert "platform_public_key_file is set but platform_public_key_id is not" in refused(no_id)


def test_no_way_to_trust_the_platform_is_refused() -> None:
    config = with_secrets(base_config(platform_public_key_id=None), platform_public_key=None)
    assert WechatChannel(config).settings.download  # certificate mode by default
    nothing = attrs.evolve(config, options={**config.options, "platform_cert_download": False})
    assert "leaves no way to verify" in refused(nothing)


def test_a_pinned_file_that_is_not_a_certificate(tmp_path: Path) -> None:
    path = tmp_path / "cert.pem"
    path.write_bytes(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    assert "platform_cert_files" in refused(base_config(platform_cert_files=[str(path)]))


def test_a_toml_table_with_key_files_and_an_environment_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sandbox = make_sandbox()
    files = sandbox.write_files(tmp_path / "keys")
    assert set(files) == {
        "merchant_private_key_file",
        "apiv3_key_file",
        "platform_public_key_file",
    }
    assert (files["merchant_private_key_file"].stat().st_mode & 0o077) == 0
    monkeypatch.setenv("SHOP_WECHAT_APIV3_KEY", APIV3_KEY.decode())
    table = {
        "mchid": "1900000109",
        "appid": "wxd678efh567hg6787",
        "merchant_serial_no": "5157f09efdc096de15ebe81a47057a7232f1b8e1",
        "platform_public_key_id": sandbox.platform_serials[0],
        "merchant_private_key_file": str(files["merchant_private_key_file"]),
        "platform_public_key_file": str(files["platform_public_key_file"]),
        "apiv3_key_env": "SHOP_WECHAT_APIV3_KEY",
        "notify_url": "https://shop.example/callbacks/wechat",
        "timeout_seconds": 7.5,
        "refund_deadline_days": 180,
        "min_amount": "0.01",
        "max_amount": "50000",
        "currency": "CNY",
        "fee_percent": "0.6",
        "h5_type": "iOS",
    }
    channel = channel_from_table(table)

    assert isinstance(channel, WechatChannel)
    assert set(channel.config.secrets) == {
        "merchant_private_key",
        "platform_public_key",
        "apiv3_key",
    }

    assert channel.notify_url == "https://shop.example/callbacks/wechat"
    assert channel.gateway_url == DEFAULT_GATEWAY_URL
    assert channel.timeout == 7.5
    assert channel.settings.merchant_serial_no == "5157F09EFDC096DE15EBE81A47057A7232F1B8E1"
    assert channel.settings.h5_type == "iOS"
    assert channel.config.refund_deadline_days == 180
    assert str(channel.config.max_amount) == "50000.00 CNY"
    assert "public-key mode" in repr(channel)


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)  # configuration only
def test_the_engine_builds_it_and_a_broken_table_names_the_setting(
    backend: Backend, clock: FakeClock
) -> None:
    good = backend.core(clock, channels={"wechat": base_config()})
    try:
        assert isinstance(good.channel("wechat"), WechatChannel)
    finally:
        good.close()
    broken = backend.core(clock, channels={"wechat": {"mchid": "1900000109", "appid": "wx1"}})
    try:
        with pytest.raises(ConfigurationError, match="merchant_serial_no is required"):
            broken.channel("wechat")
    finally:
        broken.close()


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)  # configuration only
def test_a_broken_wechat_table_disables_only_the_wechat_channel(
    backend: Backend, clock: FakeClock
) -> None:
    broken = {"mchid": "1900000109", "appid": "wxd678efh567hg6787"}
    core = backend.core(clock, channels={"wechat": broken, "fake": fake_channel_config()})
    core.register_plugin(ordercore.testing)
    try:
        assert core.channel("fake").name == "fake"
        assert core.channel("balance").name == "balance"
        with pytest.raises(ConfigurationError, match="merchant_serial_no is required"):
            core.channel("wechat")
        (wechat,) = [s for s in core.channel_statuses() if s.name == "wechat"]
        assert (wechat.enabled, wechat.plugin) == (False, "wechat")
        assert wechat.problem is not None
        assert "merchant_serial_no is required" in wechat.problem
    finally:
        core.close()
