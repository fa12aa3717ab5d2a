"""``ordercore_risk_rules`` for real: a third-party rule plugin found through the
``ordercore`` entry point, rules that review or block, and rules that raise or time out under
``fail_open`` and ``fail_closed`` (recorded in the decision)."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from ordercore import (
    Actor,
    Money,
    OrderCore,
    RiskBlocked,
    RiskContext,
    RiskSettings,
    Verdict,
    hookimpl,
)
from ordercore.testing import make_risk_rule

ADMIN = Actor.operator("alice", "admin")


def make_core(
    tmp_path: Path, *, plugins: Any = (), entry_points: bool = False, **risk: Any
) -> OrderCore:
    core = OrderCore.from_url(
        f"sqlite:///{tmp_path / 'risk.db'}",
        plugins=plugins,
        load_entry_points=entry_points,
        risk=RiskSettings.build(**risk),
    )
    core.upgrade()
    core.products.add(sku="VPN", name="VPN", price=Money.of("30.00", "CNY"), actor=ADMIN)
    core.customers.add(name="Li", email="li@example.com", actor=ADMIN)
    return core


def create(core: OrderCore, qty: int = 1, **risk: Any) -> Any:
    return core.orders.create(
        customer_id=1, items=[("VPN", qty)], actor=ADMIN, risk=RiskContext(**risk)
    )


class Rules:
    def __init__(self, *rules: Any) -> None:
        self.rules = list(rules)

    @hookimpl
    def ordercore_risk_rules(self, settings: Any) -> list[Any]:
        return self.rules


def test_a_third_party_rule_plugin_through_the_entry_point(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "acme_fraud.py").write_text(
        textwrap.dedent(
            """
            from ordercore import RuleHit, hookimpl

            class Score:
                name = "acme_score"
                stages = ("order",)

                def __call__(self, facts):
                    if facts.context.ip and facts.context.ip.startswith("192.0.2."):
                        return RuleHit(self.name, "block", "acme_score 0.97 over 0.9",
                                       {"score": "0.97"})
                    return None

            @hookimpl
            def ordercore_risk_rules(settings):
                return [Score()]
            """
        ),
        encoding="utf-8",
    )
    dist = site / "acme_fraud-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: acme-fraud\nVersion: 1.0\n", encoding="utf-8"
    )
    (dist / "entry_points.txt").write_text("[ordercore]\nacme = acme_fraud\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delitem(sys.modules, "acme_fraud", raising=False)
    core = make_core(tmp_path, entry_points=True)
    assert "acme" in {core.plugins.get_name(p) for p in core.plugins.get_plugins()}
    assert create(core, ip="198.51.100.1").number
    with pytest.raises(RiskBlocked) as caught:
        create(core, ip="192.0.2.44")
    assert str(caught.value) == "blocked: acme_score 0.97 over 0.9"
    (decision,) = core.risk.decisions(verdict="block")
    assert [h.as_dict() for h in decision.hits] == [
        {
            "rule": "acme_score",
            "verdict": "block",
            "reason": "acme_score 0.97 over 0.9",
            "values": {"score": "0.97"},
        }
    ]
    core.close()


def test_plugin_rules_get_the_facts_and_their_stages(tmp_path: Path) -> None:
    review = make_risk_rule("big", "review", when=lambda f: f.amount > Money.of("50", "CNY"))
    on_payment = make_risk_rule("payer_check", None, stages={"payment"})
    core = make_core(tmp_path, plugins=[Rules(review, on_payment)])
    small, big = create(core, ip="198.51.100.1"), create(core, 2)
    assert core.risk.decisions(order=small.number)[0].verdict is Verdict.ALLOW
    assert core.risk.decisions(order=big.number)[0].verdict is Verdict.REVIEW
    assert [f.amount for f in review.calls] == [Money.of("30.00", "CNY"), Money.of("60.00", "CNY")]
    assert review.calls[0].context.ip == "198.51.100.1"
    assert on_payment.calls == []  # order stage only for this one
    core.close()


@pytest.mark.parametrize(
    ("policy", "verdict"), [("fail_open", Verdict.ALLOW), ("fail_closed", Verdict.BLOCK)]
)
def test_a_rule_that_raises_follows_the_policy(
    tmp_path: Path, policy: str, verdict: Verdict
) -> None:
    broken = make_risk_rule("flaky_api", raises=ConnectionError("fraud API down"))
    core = make_core(tmp_path, plugins=[Rules(broken)], plugin_policy=policy)
    if verdict is Verdict.BLOCK:
        with pytest.raises(RiskBlocked, match="plugin rule flaky_api failed"):
            create(core)
    else:
        create(core)
    (decision,) = core.risk.decisions()
    assert decision.verdict is verdict
    (hit,) = decision.hits
    assert hit.values["error"] == "error"
    assert hit.values["detail"] == "ConnectionError: fraud API down"
    assert hit.values["policy"] == policy
    core.close()


@pytest.mark.parametrize(
    ("policy", "verdict"), [("fail_open", Verdict.ALLOW), ("fail_closed", Verdict.BLOCK)]
)
def test_a_rule_that_times_out_follows_the_policy(
    tmp_path: Path, policy: str, verdict: Verdict
) -> None:
    slow = make_risk_rule("slow_api", "block", delay=2.0)
    core = make_core(
        tmp_path, plugins=[Rules(slow)], plugin_policy=policy, plugin_timeout_seconds=0.05
    )
    if verdict is Verdict.BLOCK:
        with pytest.raises(RiskBlocked, match="plugin rule slow_api timed out; fail_closed"):
            create(core)
    else:
        create(core)
    (decision,) = core.risk.decisions()
    assert decision.verdict is verdict
    assert decision.hits[0].values["error"] == "timeout"
    core.close()


def test_a_rule_returning_garbage_is_a_failure(tmp_path: Path) -> None:
    class Garbage:
        name = "garbage"

        def __call__(self, facts: Any) -> Any:
            return "block"

    core = make_core(tmp_path, plugins=[Rules(Garbage())], plugin_policy="fail_closed")
    with pytest.raises(RiskBlocked, match="returned str, not a RuleHit"):
        create(core)
    core.close()
