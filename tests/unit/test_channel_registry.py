"""Channels and their configuration: a broken channel is disabled alone, with its reason;
`ordercore channels list|check`; strict values; relative key paths read from the
configuration file's folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import pytest
from click.testing import CliRunner

import ordercore.testing
from ordercore import ChannelError, ConfigurationError, OrderCore, Settings, hookimpl
from ordercore._payments.channel_config import channel_config
from ordercore.channels import ChannelConfig
from ordercore.cli import cli
from ordercore.testing import FakeChannel, fake_channel_config


def core_with(channels: dict[str, Any], *plugins: object) -> OrderCore:
    return OrderCore.from_url("sqlite://", channels=channels, plugins=plugins)


def test_a_broken_channel_is_disabled_alone_with_its_reason() -> None:
    core = core_with(
        {"fake": fake_channel_config(), "bank_transfer": {"colour": "red"}},
        ordercore.testing,
    )
    assert set(core.channels) == {"balance", "fake"}
    with pytest.raises(ConfigurationError, match=r"unknown setting.*colour") as caught:
        core.channel("bank_transfer")
    assert caught.value.context["channel"] == "bank_transfer"
    statuses = {s.name: s for s in core.channel_statuses()}
    assert statuses["balance"].enabled
    assert statuses["fake"].enabled
    broken = statuses["bank_transfer"]
    assert (broken.enabled, broken.configured, broken.plugin) == (False, True, "ordercore.builtin")
    assert broken.problem == "unknown setting(s) colour (this channel takes instructions)"


def test_a_missing_environment_variable_disables_only_that_channel(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("NO_SUCH_SECRET", raising=False)
    core = core_with(
        {"fake": {"webhook_secret_env": "NO_SUCH_SECRET", "merchant_id": "m"}},
        ordercore.testing,
    )
    assert core.channel("balance").name == "balance"
    with pytest.raises(ConfigurationError, match="NO_SUCH_SECRET is not set"):
        core.channel("fake")


def test_unknown_and_unconfigured_channels_say_so() -> None:
    core = core_with({"ghost": {"x": 1}})
    with pytest.raises(ChannelError, match="no installed plugin provides it"):
        core.channel("ghost")
    with pytest.raises(ChannelError, match="not configured"):
        core.channel("alipay")
    statuses = {s.name: s for s in core.channel_statuses()}
    assert statuses["ghost"].problem == "no installed plugin provides it"
    assert statuses["alipay"].problem == "not configured"


def test_a_plugin_whose_hook_raises_takes_no_other_channel_down() -> None:
    class Broken:
        @hookimpl
        def ordercore_register_channels(self, settings: Settings) -> list[Any]:
            raise RuntimeError("bug in a plugin")

    core = core_with({}, Broken())
    assert "balance" in core.channels


def test_a_class_with_bad_refund_failures_is_disabled_alone() -> None:
    class Odd(FakeChannel):
        name: ClassVar[str] = "odd"
        refund_failures: ClassVar[dict[str, str]] = {"X": "no such failure"}

    class Plugin:
        @hookimpl
        def ordercore_register_channels(self, settings: Settings) -> list[Any]:
            return [Odd]

    core = core_with({"odd": {}}, Plugin())
    assert "balance" in core.channels
    with pytest.raises(ConfigurationError, match="refund_failures"):
        core.channel("odd")


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"enabled": "false"}, "enabled must be true or false"),
        ({"enabled": 0}, "enabled must be true or false"),
        ({"min_amount": "-1", "currency": "CNY"}, "min_amount must be ≥ 0"),
        ({"max_amount": "0", "currency": "CNY"}, "max_amount must be > 0"),
        (
            {"min_amount": "10", "max_amount": "5", "currency": "CNY"},
            r"min_amount .* is above max_amount",
        ),
        ({"min_amount": "1"}, "needs `currency`"),
        ({"refund_deadline_days": True}, "refund_deadline_days"),
        ({"refund_deadline_days": -1}, "refund_deadline_days"),
        ({"fee_borne_by": "nobody"}, "fee_borne_by"),
    ],
)
def test_wrong_values_are_refused(table: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        channel_config("fake", table)


def test_right_values_are_taken() -> None:
    config = channel_config(
        "fake",
        {"enabled": False, "min_amount": "0", "max_amount": "500", "currency": "CNY"},
    )
    assert isinstance(config, ChannelConfig)
    assert config.enabled is False
    assert (str(config.min_amount), str(config.max_amount)) == ("0.00 CNY", "500.00 CNY")


def test_a_switched_off_channel_is_listed_without_a_problem() -> None:
    core = core_with({"bank_transfer": {"enabled": False}})
    status = next(s for s in core.channel_statuses() if s.name == "bank_transfer")
    assert (status.enabled, status.problem) == (False, None)
    with pytest.raises(ConfigurationError, match="switched off"):
        core.channel("bank_transfer")


def test_relative_key_files_are_read_from_the_configuration_files_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "etc"
    (folder / "keys").mkdir(parents=True)
    (folder / "keys" / "secret.txt").write_bytes(b"s3cret")
    config = folder / "ordercore.toml"
    config.write_text(
        '[channels.fake]\nmerchant_id = "m"\nwebhook_secret_file = "keys/secret.txt"\n',
        encoding="utf-8",
    )
    monkeypatch.chdir(tmp_path)  # elsewhere: the path must not depend on the working directory
    settings = Settings.load(config, database_url="sqlite://")
    assert settings.config_dir == str(folder.resolve())
    core = OrderCore.from_settings(settings, plugins=[ordercore.testing])
    assert core.channel("fake").config.secrets["webhook_secret"].reveal() == b"s3cret"


@pytest.mark.parametrize("zone", ["Mars/Olympus", "", "UTC+8"])
def test_an_invalid_time_zone_is_refused_when_the_settings_load(tmp_path: Path, zone: str) -> None:
    config = tmp_path / "ordercore.toml"
    config.write_text(f'timezone = "{zone}"\n', encoding="utf-8")
    with pytest.raises(ConfigurationError, match="timezone"):
        Settings.load(config)
    with pytest.raises(ConfigurationError, match="timezone"):
        Settings(timezone=zone)


def test_channels_list_and_check_on_the_command_line(tmp_path: Path) -> None:
    config = tmp_path / "ordercore.toml"
    config.write_text(
        '[channels.bank_transfer]\ninstructions = "pay {amount}"\ncolour = "red"\n'
        '[channels.wechat]\nmchid = "1900000109"\n',
        encoding="utf-8",
    )
    runner = CliRunner()
    base = ["--config", str(config), "--database-url", f"sqlite:///{tmp_path}/x.db"]
    listed = runner.invoke(cli, [*base, "channels", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    items = {i["name"]: i for i in json.loads(listed.stdout)["items"]}
    assert items["balance"]["enabled"] is True
    assert items["bank_transfer"]["enabled"] is False
    assert "colour" in items["bank_transfer"]["problem"]
    assert items["wechat"]["problem"].startswith("[channels.wechat]")
    assert items["bank_transfer"]["methods"] == ["transfer"]

    checked = runner.invoke(cli, [*base, "channels", "check", "--json"])
    assert checked.exit_code == 1
    report = json.loads(checked.stdout)
    assert report["ok"] is False
    assert {i["name"] for i in report["items"]} == {"bank_transfer", "wechat"}

    one = runner.invoke(cli, [*base, "channels", "check", "balance"])
    assert (one.exit_code, one.stdout.strip()) == (0, "balance: ok")
    text = runner.invoke(cli, [*base, "channels", "list"])
    assert text.exit_code == 0
    assert "bank_transfer" in text.stdout
    unknown = runner.invoke(cli, [*base, "channels", "check", "nope"])
    assert unknown.exit_code == 2
    assert "Traceback" not in unknown.output
