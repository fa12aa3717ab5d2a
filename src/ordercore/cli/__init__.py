"""The ``ordercore`` command line (``ordercore.cli:main``)."""

from .orders import cli, main

__all__ = ["cli", "main"]
