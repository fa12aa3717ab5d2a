"""The plugin manager: built-in and third-party plugins, registered the same way."""

from __future__ import annotations

import os
from collections.abc import Iterable
from types import ModuleType

import pluggy

from . import hookspecs
from ._errors import ConfigurationError
from ._payments import builtin_channels

__all__ = [
    "DISABLE_ENV",
    "ENTRY_POINT_GROUP",
    "make_plugin_manager",
]

ENTRY_POINT_GROUP = "ordercore"
#: Comma-separated plugin names to block (entry-point names or built-in plugin names).
DISABLE_ENV = "ORDERCORE_DISABLE_PLUGINS"


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
    pm = pluggy.PluginManager("ordercore")
    pm.add_hookspecs(hookspecs)
    blocked = _blocked(disabled)
    for name in blocked:
        pm.set_blocked(name)
    builtins: list[tuple[str, ModuleType | object]] = [("ordercore.builtin", builtin_channels)]
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
