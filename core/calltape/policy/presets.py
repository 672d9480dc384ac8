"""Ready-made policies."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from calltape.policy import Decision, ToolCall

if TYPE_CHECKING:
    from calltape.policy.net import NetAllowlist
    from calltape.policy.sandbox import FsSandbox

__all__ = ["AllowAll", "ReadOnly", "allow_all", "fs_sandbox", "net_allowlist", "read_only"]

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


def fs_sandbox(root: str | os.PathLike[str], write: bool = False) -> FsSandbox:
    """Confine every declared path argument to ``root``; see :mod:`calltape.policy.sandbox`.

    Raises:
        PolicyError: ``root`` is not an existing directory.
    """
    from calltape.policy.sandbox import fs_sandbox as make

    return make(root, write=write)


def net_allowlist(
    hosts: Iterable[str],
    *,
    schemes: Sequence[str] = ("http", "https"),
    resolve_dns: bool = False,
    resolver: Callable[[str], Iterable[str]] | None = None,
) -> NetAllowlist:
    """Allow only the listed hosts and deny private targets; see :mod:`calltape.policy.net`.

    Raises:
        PolicyError: a host entry is not a host, ``*.domain``, IP address or CIDR network.
    """
    from calltape.policy.net import net_allowlist as make

    return make(hosts, schemes=schemes, resolve_dns=resolve_dns, resolver=resolver)
