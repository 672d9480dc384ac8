"""Validate: the policy gate.

A policy is any object with ``decide(call: ToolCall) -> Decision``. It runs *before* the tool.
``allow`` lets the call proceed; ``deny`` blocks it; ``ask`` needs a human (until an approver is
configured, ``ask`` blocks: calltape fails closed). A policy that raises blocks the call too, and
the trace records why.

Presets live in :mod:`calltape.policy.presets`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

if TYPE_CHECKING:
    from calltape.policy.combinators import (
        AllOf,
        FirstMatch,
        Rule,
        WithTimeout,
        all_of,
        arg,
        first_match,
        rule,
        with_timeout,
    )
    from calltape.policy.file import FilePolicy, PolicyFileError, load_policy, parse_policy
    from calltape.session import ToolSpec

__all__ = [
    "SIDE_EFFECTS",
    "Action",
    "AllOf",
    "Decision",
    "FilePolicy",
    "FirstMatch",
    "Policy",
    "PolicyFileError",
    "Rule",
    "ToolCall",
    "WithTimeout",
    "all_of",
    "arg",
    "first_match",
    "load_policy",
    "parse_policy",
    "rule",
    "with_timeout",
]

# Composition and file loading live in submodules, imported on first use so that
# ``import calltape`` stays light; ``from calltape.policy import all_of`` works as well.
_LAZY = {
    "AllOf": "combinators",
    "FirstMatch": "combinators",
    "Rule": "combinators",
    "WithTimeout": "combinators",
    "all_of": "combinators",
    "arg": "combinators",
    "first_match": "combinators",
    "rule": "combinators",
    "with_timeout": "combinators",
    "FilePolicy": "file",
    "PolicyFileError": "file",
    "load_policy": "file",
    "parse_policy": "file",
}

_SUBMODULES = frozenset({"combinators", "file", "net", "presets", "sandbox"})


def __getattr__(name: str) -> Any:
    import importlib

    if name in _SUBMODULES:
        return importlib.import_module(f"calltape.policy.{name}")
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module 'calltape.policy' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"calltape.policy.{mod}"), name)
    globals()[name] = value
    return value


Action = Literal["allow", "deny", "ask"]

#: The side-effect classes a tool may declare. ``unknown`` is the default for undeclared tools.
SIDE_EFFECTS: tuple[str, ...] = ("read", "write", "network", "exec", "unknown")


@dataclass(frozen=True, slots=True)
class Decision:
    """What the gate decided, with the rule that decided it and a reason a human can read.

    The reason is shown to the model (in the framework's idiom) and stored in the trace.
    """

    action: Action
    rule: str
    reason: str

    @property
    def allowed(self) -> bool:
        return self.action == "allow"

    @classmethod
    def allow(cls, rule: str = "allow", reason: str = "allowed") -> Decision:
        return cls("allow", rule, reason)

    @classmethod
    def deny(cls, rule: str, reason: str) -> Decision:
        return cls("deny", rule, reason)

    @classmethod
    def ask(cls, rule: str, reason: str) -> Decision:
        return cls("ask", rule, reason)

    def as_record(self) -> dict[str, str]:
        return {"action": self.action, "rule": self.rule, "reason": self.reason}


@dataclass(frozen=True, slots=True)
class ToolCall:
    """What a policy sees: the tool, its declared side effect and the real arguments."""

    tool: str
    args: Mapping[str, Any]
    side_effect: str
    spec: ToolSpec
    fingerprint: str
    run_id: str


@runtime_checkable
class Policy(Protocol):
    """Anything with ``decide(call) -> Decision``."""

    def decide(self, call: ToolCall) -> Decision:  # pragma: no cover - protocol
        ...
