"""MkDocs hooks for the ordercore docs (loaded through ``hooks:`` in mkdocs.yml).

The CLI reference page imports ``ordercore.cli`` (mkdocs-click). When ordercore is not
installed in the environment that runs ``mkdocs build``, import it from the checkout's src/,
so that a docs-only environment can build the site. An installed ordercore always wins.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

_SRC = str(Path(__file__).resolve().parent.parent / "src")


def on_config(config: Any) -> Any:
    # MkDocs restores sys.path after importing a hook module, so this runs as an event.
    if importlib.util.find_spec("ordercore") is None and _SRC not in sys.path:
        sys.path.insert(0, _SRC)
    return config
