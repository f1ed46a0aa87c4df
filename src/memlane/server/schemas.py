"""Request bodies of the REST API (pydantic; unknown fields are refused), and the error body.

Field types document the API in ``/openapi.json``; the values are then checked by ``Memory``
itself, so a request gets the same error, with the same message, as the Python call would.
Times are ISO 8601 strings (a naive time means UTC) or epoch seconds.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["AddBody", "ErrorBody", "ErrorDetail", "MessageIn", "SearchBody", "UpdateBody"]

Time = str | float


class _Body(BaseModel):
    # strict: no quiet coercion ("5" -> 5, true -> 1); a wrong type is an error, as in Python.
    model_config = ConfigDict(extra="forbid", strict=True)


class MessageIn(_Body):
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
    instructions: str | None = None
    prompt: str | None = Field(None, description="mem0's name for instructions")
    includes: str | list[str] | None = None
    excludes: str | list[str] | None = None
    memory_type: Literal["procedural", "procedural_memory"] | None = None


class SearchBody(_Scoped):
    """``Memory.search``: the memories of a scope most relevant to a query."""

    query: str
    limit: int = 10
    threshold: float | None = None
    explain: bool = False
    recency_weight: float = 0.0
    half_life_days: float = 30.0
    as_of: Time | None = Field(None, description="search what was true at this time")


class UpdateBody(_Body):
    """``Memory.update``: replace a memory's text (and metadata, when given)."""

    data: str = Field(description="the new text")
    metadata: dict[str, Any] | None = None


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
