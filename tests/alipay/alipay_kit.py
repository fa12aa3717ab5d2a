"""What the Alipay plugin's tests share besides fixtures: key pairs made once per worker,
a sandbox builder, the operator that acts in them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa

from ordercore import Actor
from ordercore_alipay.sandbox import AlipaySandbox, generate_key

ADMIN = Actor.operator("alice", "admin")
#: A notify URL nothing listens on, for tests that build notifications without delivering.
NOWHERE = "http://127.0.0.1:9/callbacks/alipay"


@dataclass(frozen=True)
class Keys:
    app: rsa.RSAPrivateKey
    alipay: rsa.RSAPrivateKey
    stranger: rsa.RSAPrivateKey  # a key that is neither: signatures with it must fail


_KEYS: Keys | None = None


def keys() -> Keys:
    """RSA-2048 key pairs, generated once per process (xdist worker)."""
    global _KEYS
    if _KEYS is None:
        _KEYS = Keys(generate_key(), generate_key(), generate_key())
    return _KEYS


def make_sandbox(**kwargs: Any) -> AlipaySandbox:
    k = keys()
    kwargs.setdefault("app_private_key", k.app)
    kwargs.setdefault("alipay_private_key", k.alipay)
    kwargs.setdefault("hang_seconds", 1.5)
    return AlipaySandbox(**kwargs)
