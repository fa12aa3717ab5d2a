"""The plugin manager: built-in and third-party plugins, registered the same way."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from datetime import datetime
from types import ModuleType
from typing import Any

import pluggy
from attrs import field, frozen

from . import hookspecs
from ._actor import Actor
from ._errors import ConfigurationError

__all__ = [
    "DISABLE_ENV",
    "ENTRY_POINT_GROUP",
    "ActivationContext",
    "OutboxMessage",
    "make_plugin_manager",
]

ENTRY_POINT_GROUP = "ordercore"
#: Comma-separated plugin names to block (entry-point names or built-in plugin names).
DISABLE_ENV = "ORDERCORE_DISABLE_PLUGINS"


@frozen
class ActivationContext:
    """Passed to the activation and revocation hooks. ``activation_id`` is stable across
    retries of the same activation: use it to make the host's side idempotent."""

    activation_id: str
    attempt: int
    actor: Actor
    at: datetime


@frozen
class OutboxMessage:
    """An event leaving ordercore, delivered at least once with a stable ``id``."""

    id: str
    kind: str
    order_number: str | None
    payload: Mapping[str, Any] = field(factory=dict)
    created_at: datetime | None = None
    #: which delivery try this is (1 for the first)
    attempt: int = 1


def _blocked(explicit: Iterable[str] | None) -> set[str]:
    names = set(explicit or ())
    env = os.environ.get(DISABLE_ENV, "")
    names.update(n.strip() for n in env.split(",") if n.strip())
    return names


def make_plugin_manager(
    plugins: Iterable[object] = (),
    *,
    load_entry_points: bool = True,
    disabled: Iterable[str] | None = None,
) -> pluggy.PluginManager:
    """A plugin manager with ordercore's hook specifications.

    Registers the built-in plugins, then ``plugins`` (objects or modules with hook
    implementations), then — unless ``load_entry_points`` is false — every plugin of the
    ``ordercore`` entry-point group. Names in ``disabled`` or ``ORDERCORE_DISABLE_PLUGINS``
    are blocked. A hook implementation that matches no specification raises
    :class:`ConfigurationError` (pluggy's ``check_pending``).
    """
    from . import _builtin_channels

    pm = pluggy.PluginManager("ordercore")
    pm.add_hookspecs(hookspecs)
    blocked = _blocked(disabled)
    for name in blocked:
        pm.set_blocked(name)
    builtins: list[tuple[str, ModuleType | object]] = [("ordercore.builtin", _builtin_channels)]
    for name, plugin in builtins:
        if name not in blocked:
            pm.register(plugin, name=name)
    for plugin in plugins:
        pm.register(plugin)
    if load_entry_points:
        pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise ConfigurationError(f"a plugin implements an unknown hook: {exc}") from None
    return pm
