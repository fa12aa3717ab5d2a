"""Masking personal data before it leaves ordercore (pure: no I/O).

Every function keeps the shape of the value (its length, the e-mail's domain, the phone's
first three and last four digits) so that a masked export stays useful for reconciliation,
and replaces enough of it that the original cannot be read back: the masked text never
contains the original (each function replaces at least one character of it, or the whole
value when it is too short to show any part).

=========  =====================  =================
kind       original               masked
=========  =====================  =================
name       ``张三``                ``张*``
name       ``Lin Lei``             ``L** Lei``
email      ``zhang@example.com``   ``z***@example.com``
phone      ``13812345678``         ``138****5678``
ip         ``203.0.113.7``         ``203.0.*.*``
account    ``6222021234567890``    ``622*********7890``
=========  =====================  =================
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final, Literal

__all__ = [
    "MASKS",
    "MaskKind",
    "mask",
    "mask_account",
    "mask_email",
    "mask_ip",
    "mask_name",
    "mask_phone",
]

MaskKind = Literal["name", "email", "phone", "ip", "account"]
_STAR: Final = "*"


def _stars(n: int) -> str:
    return _STAR * max(n, 1)


def mask_name(name: str) -> str:
    """``张三`` → ``张*``, ``欧阳娜娜`` → ``欧***``, ``Lin Lei`` → ``L** Lei``,
    ``Alice`` → ``A****``; a one-character name becomes ``*``.

    A name of several words keeps its last word (the family name in the Western order) and
    the first letter of each other word; a name of one word keeps its first character."""
    text = name.strip()
    if len(text) <= 1:
        return _STAR
    words = text.split()
    if len(words) == 1:
        return text[0] + _STAR * (len(text) - 1)  # at least one: len(text) > 1
    masked = [w[0] + _STAR * (len(w) - 1) if len(w) > 1 else _STAR for w in words[:-1]]
    return " ".join([*masked, words[-1]])


def mask_email(email: str) -> str:
    """``zhang@example.com`` → ``z***@example.com`` (the domain stays, for reconciliation
    by provider); text without ``@`` is masked like an account."""
    text = email.strip()
    local, at, domain = text.rpartition("@")
    if not at or not local:
        return mask_account(text)
    return f"{local[0]}***@{domain}"


def mask_phone(phone: str) -> str:
    """``13812345678`` → ``138****5678``: the first three and last four digits of a number
    of eleven digits or more stay, separators stay, every other digit becomes ``*``; a
    shorter number keeps its last two digits, a number of five digits or fewer none."""
    digits = [i for i, ch in enumerate(phone) if ch.isdigit()]
    n = len(digits)
    if n >= 11:
        keep = set(digits[:3]) | set(digits[-4:])
    elif n >= 6:
        keep = set(digits[-2:])
    else:
        keep = set()
    out = [ch if (not ch.isdigit() or i in keep) else _STAR for i, ch in enumerate(phone)]
    masked = "".join(out)
    return masked if masked != phone else _stars(len(phone))


def mask_ip(address: str) -> str:
    """``203.0.113.7`` → ``203.0.*.*``; an IPv6 address keeps its first two groups
    (``2001:db8:*``); anything else is masked like an account."""
    text = address.strip()
    parts = text.split(".")
    if len(parts) == 4 and all(p.isdigit() for p in parts):
        return f"{parts[0]}.{parts[1]}.*.*"
    if ":" in text:
        groups = [g for g in text.split(":") if g]
        return ":".join([*groups[:2], _STAR]) if len(groups) > 2 else _STAR
    return mask_account(text)


def mask_account(account: str) -> str:
    """A payer account (a card or wallet number, an e-mail): ``6222021234567890`` →
    ``622*********7890``; twelve characters or fewer keep only their last two, four or
    fewer none."""
    text = account.strip()
    if "@" in text[1:]:
        return mask_email(text)
    n = len(text)
    if n > 12:
        return text[:3] + _STAR * (n - 7) + text[-4:]
    if n > 4:
        return _STAR * (n - 2) + text[-2:]
    return _stars(n)


MASKS: Final[dict[str, Callable[[str], str]]] = {
    "name": mask_name,
    "email": mask_email,
    "phone": mask_phone,
    "ip": mask_ip,
    "account": mask_account,
}


def mask(kind: MaskKind, value: str | None) -> str | None:
    """``value`` masked as a ``kind``; None and the empty text stay as they are."""
    if value is None or value == "":
        return value
    return MASKS[kind](value)
