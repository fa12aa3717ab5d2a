"""``python -m ordercore_wechat.sandbox``."""

from __future__ import annotations

from ._main import main

raise SystemExit(main())
