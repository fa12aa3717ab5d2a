"""Adapters: everything that talks to the outside world (databases, channels, HTTP)."""
