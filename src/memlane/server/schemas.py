"""Request bodies of the REST API (pydantic; unknown fields are refused), and the error body.

Field types document the API in ``/openapi.json``; the values are then checked by ``Memory``
itself, so a request gets the same error, with the same message, as the Python call would.
Times are ISO 8601 strings (a naive time means UTC) or epoch seconds.

A field mem0 takes and memlane cannot honour (``memlane.core.compat.UNMAPPED``: ``categories``,
``page``, ...) is not refused by the schema: the body keeps it aside (:attr:`_Body.mem0_unmapped`)
so the route answers what ``Memory`` raises for it, a 400 saying what to do instead.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidatorFunctionWrapHandler, model_validator

from memlane.core.compat import UNMAPPED

__all__ = [
    "AddBody",
    "ConsolidateBody",
    "ErrorBody",
    "ErrorDetail",
    "ListBody",
    "Mem0UpdateBody",
    "MessageIn",
    "SearchBody",
    "UpdateBody",
]

Time = str | float
DateText = str  # a YYYY-MM-DD date


class _Strict(BaseModel):
    # strict: no quiet coercion ("5" -> 5, true -> 1); a wrong type is an error, as in Python.
    model_config = ConfigDict(extra="forbid", strict=True)


class _Body(_Strict):
    """A request body: mem0's unmapped fields are set aside for the route to refuse."""

    _unmapped: dict[str, Any] = PrivateAttr(default_factory=dict)

    @model_validator(mode="wrap")
    @classmethod
    def _set_mem0_aside(cls, data: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        """Validate without mem0's unmapped fields, keeping them for the route to refuse."""
        unmapped: dict[str, Any] = {}
        if isinstance(data, dict) and not UNMAPPED.keys().isdisjoint(data):
            unmapped = {k: v for k, v in data.items() if k in UNMAPPED}
            data = {k: v for k, v in data.items() if k not in UNMAPPED}
        body = handler(data)
        if unmapped and isinstance(body, _Body):
            body._unmapped = unmapped
        return body

    @property
    def mem0_unmapped(self) -> dict[str, Any]:
        """The fields of mem0's with no memlane meaning that the request carried."""
        return self._unmapped


class MessageIn(_Strict):
    """One chat message."""

    role: str = "user"
    content: str
    name: str | None = None


class _Scoped(_Body):
    user_id: str | None = Field(None, description="the user the memories belong to")
    agent_id: str | None = Field(None, description="the agent the memories belong to")
    run_id: str | None = Field(None, description="the run / session the memories belong to")
    filters: dict[str, Any] | None = Field(None, description="scope ids and (for reads) a metadata filter")


class AddBody(_Scoped):
    """``Memory.add``: remember messages in a scope."""

    messages: str | MessageIn | list[MessageIn]
    metadata: dict[str, Any] | None = None
    infer: bool | None = Field(None, description="extract facts with the server's LLM (default: when it has one)")
    timestamp: Time | None = Field(None, description="when the messages were said (default: now)")
    expires_at: Time | None = None
    ttl: float | None = Field(None, description="seconds until the memories expire")
    expiration_date: DateText | None = Field(
        None, description="mem0's form of expires_at: a YYYY-MM-DD date, returned through that day (UTC)"
    )
    instructions: str | None = None
    prompt: str | None = Field(None, description="mem0's name for instructions")
    custom_instructions: str | None = Field(None, description="another mem0 name for instructions")
    includes: str | list[str] | None = None
    excludes: str | list[str] | None = None
    memory_type: Literal["procedural", "procedural_memory"] | None = None


class SearchBody(_Scoped):
    """``Memory.search``: the memories of a scope most relevant to a query."""

    query: str
    limit: int | None = Field(None, description="at most this many results (default 10)")
    top_k: int | None = Field(None, description="mem0's name for limit (give one of them)")
    threshold: float | None = None
    explain: bool = False
    recency_weight: float = 0.0
    half_life_days: float = 30.0
    as_of: Time | None = Field(None, description="search what was true at this time")
    show_expired: bool = Field(False, description="include memories whose expires_at has passed")
    reference_date: Time | None = Field(
        None, description="the 'now' recency is measured from (a date, time or epoch seconds; default: now)"
    )
    rerank: bool = Field(False, description="accepted for mem0 code; memlane always ranks on every signal")
    graph: bool = Field(
        False, description="memories naming the query's entities or their neighbours join the candidates"
    )
    include_merged: bool = Field(False, description="also search memories consolidation merged into another")
    include_archived: bool = Field(False, description="also search memories consolidation archived")


class ListBody(_Scoped):
    """``Memory.get_all`` with its arguments in a body (mem0's platform API: ``POST /v3/memories/``)."""

    limit: int | None = Field(None, description="at most this many memories (default 100)")
    top_k: int | None = Field(None, description="mem0's name for limit (give one of them)")
    cursor: str | None = Field(None, description="the previous page's next_cursor")
    show_expired: bool = Field(False, description="include memories whose expires_at has passed")


class ConsolidateBody(_Strict):
    """``Memory.consolidate``: tidy a scope (no ids: the whole store, admin keys only)."""

    user_id: str | None = Field(None, description="the user whose memories to tidy")
    agent_id: str | None = Field(None, description="the agent whose memories to tidy")
    run_id: str | None = Field(None, description="the run / session whose memories to tidy")
    dry_run: bool = Field(False, description="report what would be done, and change nothing")


class UpdateBody(_Body):
    """``Memory.update``: replace a memory's text, metadata or expiry (the fields given; at least one).

    An absent ``expires_at`` / ``expiration_date`` keeps the expiry, ``null`` clears it.
    """

    data: str | None = Field(None, description="the new text")
    text: str | None = Field(None, description="mem0 2.x's name for data (give one of them)")
    metadata: dict[str, Any] | None = Field(None, description="replaces the whole metadata object")
    expires_at: Time | None = Field(None, description="when the memory stops being returned; null clears it")
    expiration_date: DateText | None = Field(
        None, description="mem0's form of expires_at: a YYYY-MM-DD date, returned through that day; null clears it"
    )


class Mem0UpdateBody(UpdateBody):
    """mem0's ``PUT /memories/{memory_id}``: ``{"text": ...}`` (mem0 2.x), ``{"data": ...}`` or
    ``{"memory": ...}``, with ``metadata`` and ``expiration_date`` as in :class:`UpdateBody`."""

    memory: str | None = Field(None, description="the new text, under the name mem0's results give it")


class ErrorDetail(BaseModel):
    """What went wrong: ``type`` names the memlane exception class (``MemoryClient`` raises it again)."""

    type: str = Field(description="the exception class, e.g. MemoryNotFound")
    message: str = Field(description="what is wrong and how to fix it")
    status: int = Field(description="the HTTP status, repeated")
    retry_after: float | None = Field(None, description="429 and 503: seconds to wait before retrying")
    provider: str | None = Field(None, description="provider errors only: which provider failed")
    raw: str | None = Field(None, description="LLM output errors only: the model's unusable answer")


class ErrorBody(BaseModel):
    """The body of every error response."""

    error: ErrorDetail
