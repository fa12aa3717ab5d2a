"""Options renamed to the Python API's names (issue 11, item 9): ``--tag`` (``tags=``) for
``--flag`` and ``--destination`` (``destination=``) for ``--to``. The old spellings still work
for one release, each time with a deprecation warning on stderr, never on stdout (``--json``
output and CSV streamed to ``-`` stay parseable)."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import click
import pytest
from click.testing import CliRunner, Result

from ordercore.cli import cli
from ordercore.cli._common import deprecated_alias

from .conftest import HAN, LI, OC, assert_one_error
from .test_cli_refunds import Kit, kit  # noqa: F401 (the fixture)

FLAG_WARNING = "warning: --flag is deprecated and will be removed in 0.3; use --tag"
TO_WARNING = "warning: --to is deprecated and will be removed in 0.3; use --destination"


def warned(result: Result, warning: str) -> dict[str, Any]:
    """The run succeeded, said ``warning`` once on stderr (and nothing else there), and its
    stdout is one JSON document."""
    assert result.exit_code == 0, (result.stderr, result.exception)
    assert result.stderr.strip().splitlines() == [warning]
    assert warning not in result.stdout
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def quiet_json(result: Result) -> dict[str, Any]:
    assert result.exit_code == 0, (result.stderr, result.exception)
    assert result.stderr == ""
    data: dict[str, Any] = json.loads(result.stdout)
    return data


# --------------------------------------------------------------------- the mechanism
@click.command()
@click.option("--tag", "tags", multiple=True)
@deprecated_alias("--flag", "--tag", "tags", multiple=True)
@click.option("--destination", default=None, type=click.Choice(["a", "b"]))
@deprecated_alias("--to", "--destination", "destination", type=click.Choice(["a", "b"]))
@click.option("--kind", default=None)
@deprecated_alias("--sort", "--kind", "kind", required=True)
def toy(tags: tuple[str, ...], destination: str | None, kind: str) -> None:
    click.echo(json.dumps({"tags": list(tags), "destination": destination, "kind": kind}))


def run_toy(*args: str) -> Result:
    return CliRunner().invoke(toy, list(args))


class TestDeprecatedAlias:
    def test_new_names_say_nothing(self) -> None:
        data = quiet_json(run_toy("--tag", "x", "--tag", "y", "--destination", "a", "--kind", "k"))
        assert data == {"tags": ["x", "y"], "destination": "a", "kind": "k"}

    def test_old_repeatable_name_is_added_to_the_new_one(self) -> None:
        data = warned(
            run_toy("--flag", "x", "--tag", "y", "--flag", "z", "--kind", "k"), FLAG_WARNING
        )
        assert data["tags"] == ["y", "x", "z"]

    def test_old_single_name_stands_for_the_new_one(self) -> None:
        data = warned(run_toy("--to", "b", "--kind", "k"), TO_WARNING)
        assert data["destination"] == "b"

    def test_both_names_with_one_value_is_accepted(self) -> None:
        data = warned(run_toy("--to", "b", "--destination", "b", "--kind", "k"), TO_WARNING)
        assert data["destination"] == "b"

    def test_both_names_with_different_values_is_a_usage_error(self) -> None:
        result = run_toy("--to", "a", "--destination", "b", "--kind", "k")
        assert result.exit_code == 2
        assert "give --destination or --to, not both" in result.stderr
        assert result.stdout == ""

    def test_required_is_met_by_either_name(self) -> None:
        assert quiet_json(run_toy("--kind", "k"))["kind"] == "k"
        warning = "warning: --sort is deprecated and will be removed in 0.3; use --kind"
        assert warned(run_toy("--sort", "s"), warning)["kind"] == "s"
        result = run_toy()
        assert result.exit_code == 2
        assert "Missing option '--kind'" in result.stderr
        assert result.stdout == ""

    def test_old_value_is_checked_like_the_new(self) -> None:
        result = run_toy("--to", "c", "--kind", "k")
        assert result.exit_code == 2
        assert "'c' is not one of 'a', 'b'" in result.stderr

    def test_old_names_are_hidden_from_help(self) -> None:
        text = run_toy("--help").stdout
        for new in ("--tag", "--destination", "--kind"):
            assert new in text
        for old in ("--flag", "--to ", "--sort"):
            assert old not in text


# --------------------------------------------------------------------- the commands
@pytest.mark.parametrize(
    ("command", "new", "old"),
    [
        (("orders", "create"), "--tag", "--flag"),
        (("orders", "list"), "--tag", "--flag"),
        (("export", "orders"), "--tag", "--flag"),
        (("refunds", "request"), "--destination", "--to"),
        (("anomalies", "resolve"), "--destination", "--to"),
    ],
)
def test_help_shows_only_the_new_name(command: tuple[str, ...], new: str, old: str) -> None:
    text = CliRunner().invoke(cli, [*command, "--help"]).stdout
    options = {word.rstrip(",") for word in text.split() if word.startswith("--")}
    assert new in options
    assert old not in options


class TestTags:
    def test_create_with_tags(self, shop: OC) -> None:
        order = quiet_json(
            shop.run(
                "orders",
                "create",
                "--customer",
                LI,
                "--item",
                "VPN-1M:1",
                "--tag",
                "vip",
                "--tag",
                "gift",
                "--json",
            )
        )
        assert order["flags"] == ["gift", "vip"]

    def test_create_with_the_old_name(self, shop: OC) -> None:
        result = shop.run(
            "orders",
            "create",
            "--customer",
            LI,
            "--item",
            "VPN-1M:1",
            "--flag",
            "vip",
            "--tag",
            "gift",
            "--json",
        )
        assert warned(result, FLAG_WARNING)["flags"] == ["gift", "vip"]

    def test_create_with_the_old_name_without_json(self, shop: OC) -> None:
        result = shop.run(
            "orders", "create", "--customer", LI, "--item", "VPN-1M:1", "--flag", "vip"
        )
        assert result.exit_code == 0
        assert result.stdout.startswith("order ")
        assert result.stderr.strip() == FLAG_WARNING

    def test_list_and_export_filter(self, shop: OC) -> None:
        tagged = shop.json(
            "orders", "create", "--customer", LI, "--item", "VPN-1M:1", "--tag", "vip"
        )["number"]
        shop.json("orders", "create", "--customer", HAN, "--item", "VPN-1M:1")
        listed = quiet_json(shop.run("orders", "list", "--tag", "vip", "--json"))
        assert [o["number"] for o in listed["items"]] == [tagged]
        old = warned(shop.run("orders", "list", "--flag", "vip", "--json"), FLAG_WARNING)
        assert old == listed

        both = shop.run("orders", "list", "--flag", "vip", "--tag", "gift", "--json")
        assert "give --tag or --flag, not both" in assert_one_error(both, 2)

        for name in ("--tag", "--flag"):
            result = shop.run(
                "export", "orders", "--output", "-", "--fields", "number", name, "vip"
            )
            assert result.exit_code == 0, result.stderr
            rows = list(csv.reader(io.StringIO(result.stdout)))
            assert rows == [["number"], [tagged]]  # the warning is not in the CSV
            assert (FLAG_WARNING in result.stderr) is (name == "--flag")


class TestDestination:
    def test_refund_request(self, kit: Kit) -> None:  # noqa: F811
        oc = kit.oc
        number = kit.paid(channel="balance", customer=LI)
        refund = quiet_json(
            oc.run(
                "refunds",
                "request",
                number,
                "--amount",
                "1.00",
                "--destination",
                "balance",
                "--reason",
                "r",
                "--json",
            )
        )
        assert refund["destination"] == "balance"
        result = oc.run(
            "refunds",
            "request",
            number,
            "--amount",
            "2.00",
            "--to",
            "balance",
            "--reason",
            "r",
            "--json",
        )
        old = warned(result, TO_WARNING)
        assert (old["destination"], old["amount"]) == ("balance", "2.00")

    def test_refund_request_needs_a_destination(self, kit: Kit) -> None:  # noqa: F811
        number = kit.paid(channel="balance", customer=LI)
        sentence = assert_one_error(kit.oc.run("refunds", "request", number, "--reason", "r"), 2)
        assert "Missing option '--destination'" in sentence
        both = kit.oc.run(
            "refunds",
            "request",
            number,
            "--to",
            "balance",
            "--destination",
            "original",
            "--reason",
            "r",
        )
        assert "give --destination or --to, not both" in assert_one_error(both, 2)
        assert kit.refund_rows() == []

    def test_anomaly_resolved_by_a_refund_with_the_old_name(self, kit: Kit) -> None:  # noqa: F811
        oc = kit.oc
        number = kit.order()
        attempt = oc.json("orders", "pay", number, "--channel", "fake", "--method", "qr")
        oc.ok("orders", "cancel", number, "--note", "changed their mind")
        kit.deliver(kit.gateway.pay(attempt["out_trade_no"], force=True))  # paid anyway
        (anomaly,) = oc.json("anomalies", "list", "--order", number)["items"]
        result = oc.run(
            "anomalies",
            "resolve",
            anomaly["id"],
            "--action",
            "refund",
            "--to",
            "balance",
            "--note",
            "gave it back",
            "--json",
        )
        assert warned(result, TO_WARNING)["status"] == "resolved"
        refund = oc.json("refunds", "show", f"{number}R01")
        assert (refund["status"], refund["destination"]) == ("succeeded", "balance")
        assert kit.gateway.refund_calls == 0
