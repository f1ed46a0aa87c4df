"""The scope an MCP connection was granted, and the checks that keep every tool call inside it.

A grant fixes some of ``user_id`` / ``agent_id`` / ``run_id`` (at least one). A tool call may
only *narrow* it: it may name an id the grant leaves open (``run_id="s1"`` under a user grant),
never change one the grant fixed. A memory addressed by id is the grant's when every fixed id
matches; any other id answers exactly like an id that does not exist, so ids cannot be probed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from memlane import HistoryEvent, MemoryItem, MemoryNotFound, PermissionDenied, Scope, ScopeRequired, resolve_scope

__all__ = ["SCOPE_FIELDS", "Grant"]

SCOPE_FIELDS = ("user_id", "agent_id", "run_id")


@dataclass(frozen=True)
class Grant:
    """The ids a connection is bound to (``None``: left open for tool calls to narrow)."""

    user_id: str | None = None
    agent_id: str | None = None
    run_id: str | None = None

    @classmethod
    def of(cls, *, user_id: str | None, agent_id: str | None, run_id: str | None, where: str) -> Grant:
        """A grant, its ids validated the way ``Memory`` validates scope ids.

        Args:
            where: how the ids were given, for the error message ("--user-id", "the X-Memlane-* headers").

        Raises:
            ScopeRequired: no id at all: a connection must be bound to some scope.
            InvalidRequest: an id is empty or not a string.
        """
        try:
            scope, _ = resolve_scope(
                user_id=user_id, agent_id=agent_id, run_id=run_id, filters=None, required=True, operation="mcp"
            )
        except ScopeRequired:
            raise ScopeRequired(
                f"the MCP server needs a scope to serve: give a user, agent or run id ({where})"
            ) from None
        return cls(user_id=scope.user_id, agent_id=scope.agent_id, run_id=scope.run_id)

    def describe(self) -> str:
        """``user_id='alice', run_id='s1'``: the fixed ids, for messages."""
        return ", ".join(f"{name}={value!r}" for name, value in self._fixed().items())

    def _fixed(self) -> dict[str, str]:
        return {name: value for name, value in self.scope().as_dict().items() if value is not None}

    def scope(self) -> Scope:
        """The granted ids as a :class:`Scope`."""
        return Scope(user_id=self.user_id, agent_id=self.agent_id, run_id=self.run_id)

    def narrow(self, asked: Mapping[str, str | None]) -> Grant:
        """This grant with the ids ``asked`` adds (a connection narrowing the server's grant).

        Raises:
            PermissionDenied: ``asked`` changes an id this grant fixed.
        """
        merged = self._fixed()
        for name, value in asked.items():
            if value is None:
                continue
            if name in merged and merged[name] != value:
                raise PermissionDenied(
                    f"{name}={value!r} is outside the scope this MCP server was granted ({self.describe()}); "
                    f"leave {name} out, or give {merged[name]!r}"
                )
            merged[name] = value
        return Grant(**merged)

    def scope_for(self, operation: str, *, filters: Mapping[str, Any] | None = None, **asked: str | None) -> Scope:
        """The scope a tool call works in: the grant, narrowed by the call's ids and ``filters``.

        Scope ids inside ``filters`` are read the way ``Memory`` reads them, so the check sees
        exactly the scope the operation will use.

        Raises:
            PermissionDenied: the call names an id outside the grant.
            ScopeConflict, InvalidRequest, InvalidFilter: as ``Memory`` would raise them.
        """
        narrowed = self.narrow(asked)
        scope, _ = resolve_scope(
            user_id=narrowed.user_id,
            agent_id=narrowed.agent_id,
            run_id=narrowed.run_id,
            filters=filters,
            required=True,
            operation=operation,
        )
        # resolve_scope raises ScopeConflict when filters contradict a keyword id, so every
        # granted id survives; checked again here because this is the security boundary.
        if not self.covers(scope.as_dict()):
            raise PermissionDenied(f"{operation}: the scope must stay within {self.describe()}")
        return scope

    def covers(self, ids: Mapping[str, Any]) -> bool:
        """Whether a memory (or event) with these ids lies inside the grant."""
        return all(ids.get(name) == value for name, value in self._fixed().items())

    def check_memory(self, item: MemoryItem) -> MemoryItem:
        """The memory, if inside the grant; otherwise exactly the error of an unknown id."""
        if not self.covers(item):
            raise MemoryNotFound(f"no memory with id {item['id']!r}")
        return item

    def check_history(self, memory_id: str, events: list[HistoryEvent]) -> list[HistoryEvent]:
        """A memory's events, if inside the grant (a memory's scope never changes: all or none).

        Raises:
            MemoryNotFound: no events, or events outside the grant (indistinguishable).
        """
        if not events or not all(self.covers(event) for event in events):
            raise MemoryNotFound(f"no memory with id {memory_id!r}")
        return events
