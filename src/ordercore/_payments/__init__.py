"""Payments: attempts, the callback pipeline, activation, due jobs, the built-in channels and
channel configuration. ``domain`` is pure; the rest runs it against the database and the
channels."""
