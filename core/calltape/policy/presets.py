"""Ready-made policies."""

from __future__ import annotations

from dataclasses import dataclass

from calltape.policy import Decision, ToolCall

__all__ = ["AllowAll", "ReadOnly", "allow_all", "read_only"]

_ALLOWED = Decision.allow("allow_all", "every call is allowed (allow_all)")


@dataclass(frozen=True)
class AllowAll:
    """Record everything, block nothing: the default when a Session is given no policy."""

    def decide(self, call: ToolCall) -> Decision:
        return _ALLOWED


@dataclass(frozen=True)
class ReadOnly:
    """Allow tools declared ``side_effect="read"``; block everything else, ``unknown`` included."""

    def decide(self, call: ToolCall) -> Decision:
        if call.side_effect == "read":
            return _READ_OK
        if call.side_effect == "unknown":
            reason = (
                f"tool {call.tool!r} declares no side effect, so read_only blocks it "
                "(fail closed); "
                "declare it with side_effect='read' if it only reads"
            )
        else:
            reason = f"side effect {call.side_effect!r} is not allowed by read_only"
        return Decision.deny(f"read_only.{call.side_effect}", reason)


_READ_OK = Decision.allow("read_only.read", "read-only tool")


def allow_all() -> AllowAll:
    """A policy that allows every call (everything is still recorded)."""
    return AllowAll()


def read_only() -> ReadOnly:
    """A policy that allows only tools declared ``side_effect="read"``."""
    return ReadOnly()
