"""A builder of risk rules for tests: what a plugin's ``ordercore_risk_rules`` returns."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection
from typing import Any

from ordercore._risk.domain import RuleHit, Verdict
from ordercore._risk.rules import Facts

__all__ = ["TestRiskRule", "make_risk_rule"]


class TestRiskRule:
    """A risk rule that answers ``verdict`` (when ``when(facts)`` holds), raises ``raises``,
    or sleeps ``delay`` seconds first; it keeps the facts of every call in ``calls``."""

    __test__ = False  # not a pytest test class

    def __init__(
        self,
        name: str,
        verdict: Verdict | str | None,
        *,
        reason: str | None,
        when: Callable[[Facts], bool] | None,
        raises: BaseException | None,
        delay: float,
        stages: Collection[str] | None,
        values: dict[str, Any] | None,
    ) -> None:
        self.name = name
        self.verdict = None if verdict is None else Verdict(verdict)
        self.reason = reason
        self.when = when
        self.raises = raises
        self.delay = delay
        self.stages = None if stages is None else frozenset(stages)
        self.values = dict(values or {})
        self.calls: list[Facts] = []
        self._lock = threading.Lock()

    def __call__(self, facts: Facts) -> RuleHit | None:
        with self._lock:
            self.calls.append(facts)
        if self.delay:
            time.sleep(self.delay)
        if self.raises is not None:
            raise self.raises
        if self.verdict is None or (self.when is not None and not self.when(facts)):
            return None
        reason = self.reason or f"{self.name} says {self.verdict.value}"
        return RuleHit(self.name, self.verdict, reason, self.values)


def make_risk_rule(
    name: str = "test_rule",
    verdict: Verdict | str | None = "block",
    *,
    reason: str | None = None,
    when: Callable[[Facts], bool] | None = None,
    raises: BaseException | None = None,
    delay: float = 0.0,
    stages: Collection[str] | None = None,
    values: dict[str, Any] | None = None,
) -> TestRiskRule:
    """A rule for ``ordercore_risk_rules``: ``make_risk_rule("score", "review",
    when=lambda f: f.amount.amount > 100)``; ``raises=`` and ``delay=`` exercise
    ``plugin_policy`` and ``plugin_timeout_seconds``."""
    return TestRiskRule(
        name,
        verdict,
        reason=reason,
        when=when,
        raises=raises,
        delay=delay,
        stages=stages,
        values=values,
    )
