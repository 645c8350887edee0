"""The one access gate every read and write of city data passes.

Until the exchange fills it, the gate allows everything; its signature is the seam the exchange plugs into.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Operation = Literal["create", "read", "update", "delete", "query"]


@dataclass(frozen=True)
class Caller:
    """Who is asking. Anonymous until identities exist."""

    subject: str = "anonymous"
    organization: str | None = None
    roles: frozenset[str] = frozenset()


ANONYMOUS = Caller()


@dataclass(frozen=True)
class AccessRequest:
    caller: Caller
    tenant: str
    operation: Operation
    entity_types: tuple[str, ...] = ()
    entity_ids: tuple[str, ...] = ()
    attributes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str = ""
    # Attributes the caller may see; None means all of them.
    visible_attributes: frozenset[str] | None = None
    obligations: tuple[str, ...] = field(default_factory=tuple)


class Gate:
    """Allow-all gate with the signature of the real one."""

    async def check(self, request: AccessRequest) -> Decision:
        return Decision(True, "no access policies configured: allow-all gate")

    def sees_everything(self, caller: Caller) -> bool:
        """Whether every entity and attribute is visible to this caller (no screening needed)."""
        return True

    async def admits(self, caller: Caller, tenant: str, docs: list[dict[str, Any]]) -> list[Any]:
        """Per entity, with no side effects (no metering): None where the caller may not read it, else the gate's
        decision, which a screening gate takes back so that it decides each entity once per request."""
        return [True] * len(docs)
