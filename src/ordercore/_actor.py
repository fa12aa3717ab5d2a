"""Who did something: every state change and operator action names an :class:`Actor`."""

from __future__ import annotations

import enum

from attrs import frozen

from ._errors import InvalidField

__all__ = ["Actor", "ActorKind"]


class ActorKind(str, enum.Enum):
    """The kinds of actor the audit trail knows."""

    CUSTOMER = "customer"
    OPERATOR = "operator"
    SYSTEM = "system"
    CHANNEL = "channel"

    def __str__(self) -> str:
        return self.value


def _kind(value: object) -> ActorKind:
    try:
        return ActorKind(value)
    except ValueError:
        kinds = ", ".join(k.value for k in ActorKind)
        raise InvalidField(
            f"actor kind must be one of {kinds}, not {value!r}", field="actor"
        ) from None


@frozen
class Actor:
    """An actor: its kind, an id meaningful to the host (user id, operator login, job name,
    channel name) and, for operators, the role that grants its permissions."""

    kind: ActorKind
    id: str
    role: str | None = None

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "kind", _kind(self.kind))
        if not isinstance(self.id, str) or not self.id.strip() or ":" in self.id:
            raise InvalidField("an actor needs a non-empty id without ':'", field="actor")
        if self.role is not None and (not self.role or ":" in self.role):
            raise InvalidField("an actor's role must be non-empty and without ':'", field="actor")

    @classmethod
    def customer(cls, id: str | int) -> Actor:
        return cls(ActorKind.CUSTOMER, str(id))

    @classmethod
    def operator(cls, id: str, role: str | None = None) -> Actor:
        return cls(ActorKind.OPERATOR, id, role)

    @classmethod
    def system(cls, id: str = "ordercore") -> Actor:
        return cls(ActorKind.SYSTEM, id)

    @classmethod
    def channel(cls, name: str) -> Actor:
        return cls(ActorKind.CHANNEL, name)

    @classmethod
    def parse(cls, text: str) -> Actor:
        """Parse ``kind:id[:role]`` (``operator:alice:admin``) as the CLI's ``--actor`` takes it."""
        parts = text.split(":")
        if len(parts) not in (2, 3):
            raise InvalidField(
                f"actor {text!r} must look like kind:id or kind:id:role "
                "(e.g. operator:alice:admin)",
                field="actor",
            )
        return cls(_kind(parts[0]), parts[1], parts[2] if len(parts) == 3 else None)

    def __str__(self) -> str:
        base = f"{self.kind.value}:{self.id}"
        return f"{base}:{self.role}" if self.role else base
