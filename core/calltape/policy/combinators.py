"""Compose policies: rules, ``first_match``, ``all_of``, ``with_timeout``.

::

    from calltape.policy.combinators import all_of, arg, first_match, rule, with_timeout
    from calltape.policy.presets import fs_sandbox, net_allowlist

    policy = with_timeout(
        first_match(
            rule("small-payments", "allow", tool="pay", when=[arg("amount").le(100)]),
            rule("payments", "ask", tool="pay", reason="payments above 100 need a human"),
            all_of(  # everything else: inside the workspace, and only to these hosts
                fs_sandbox("./workspace", write=True),
                net_allowlist(["api.example.com"]),
            ),
        ),
        seconds=0.5,
    )

A :class:`Rule` matches on the tool name (globs, compiled once), the side effect and argument
conditions. ``first_match`` returns the decision of the first rule that matches (rules that do
not match are skipped; a plain policy always decides), else its default (deny).
"""

from __future__ import annotations

import contextvars
import fnmatch
import os
import queue
import re
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from calltape.errors import PolicyError
from calltape.policy import SIDE_EFFECTS, Action, Decision, Policy, ToolCall

__all__ = [
    "AllOf",
    "Condition",
    "ConditionError",
    "FirstMatch",
    "Rule",
    "WithTimeout",
    "all_of",
    "arg",
    "check_glob",
    "first_match",
    "rule",
    "with_timeout",
]

_MISSING = object()
_ACTIONS = ("allow", "deny", "ask")
_GLOB_CHARS = re.compile(r"[*?\[]")
_BAD_GLOB_CHARS = re.compile(r"[\s\x00-\x1f\x7f]")


class ConditionError(ValueError):
    """A condition could not be evaluated on this call (the call is denied)."""


def check_glob(pattern: str) -> str:
    """Validate a tool-name glob (``*``, ``?``, ``[abc]``, ``[!abc]``); return it.

    Raises:
        ValueError: empty, whitespace or control characters, an unclosed or empty ``[...]``.
    """
    if not isinstance(pattern, str):
        raise ValueError(f"expected a glob string, got {type(pattern).__name__}")
    if not pattern:
        raise ValueError("empty glob (use '*' for every tool)")
    bad = _BAD_GLOB_CHARS.search(pattern)
    if bad:
        raise ValueError(f"bad glob {pattern!r}: tool names hold no {bad.group()!r}")
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "]":
            raise ValueError(f"bad glob {pattern!r}: ']' at {i + 1} without '['")
        if c == "[":
            j = i + 1
            if j < n and pattern[j] == "!":
                j += 1
            if j < n and pattern[j] == "]":
                j += 1
            while j < n and pattern[j] != "]":
                j += 1
            if j >= n:
                raise ValueError(f"bad glob {pattern!r}: '[' at {i + 1} is never closed")
            if j == i + 1 or (j == i + 2 and pattern[i + 1] == "!"):
                raise ValueError(f"bad glob {pattern!r}: empty '[]' at {i + 1}")
            i = j
        i += 1
    return pattern


# ------------------------------------------------------------------ conditions


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    return bool(a == b)


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _comparable(v: Any, ref: Any) -> bool:
    return (_number(v) and _number(ref)) or (isinstance(v, str) and isinstance(ref, str))


class Condition:
    """A test on one argument. Build them with :func:`arg`.

    ``strict`` is True in ``allow`` rules: a condition that reads a value several ways
    (``under``) must hold for every reading there, and for any reading in ``deny``/``ask``.
    """

    __slots__ = ("name", "op", "test", "value")

    def __init__(
        self, name: str, op: str, value: Any, test: Callable[[Any, bool], bool] | None = None
    ) -> None:
        self.name = name
        self.op = op
        self.value = value
        self.test = test or _OPS[op](value)

    def __repr__(self) -> str:
        return f"arg({self.name!r}).{self.op}({self.value!r})"

    def __call__(self, call: ToolCall, strict: bool = True) -> bool:
        v = call.args.get(self.name, _MISSING)
        if self.op == "exists":
            return (v is not _MISSING) is self.value
        if v is _MISSING:
            return False
        return self.test(v, strict)


def _cmp(op: Callable[[Any, Any], bool], sym: str) -> Callable[[Any], Callable[[Any, bool], bool]]:
    def make(ref: Any) -> Callable[[Any, bool], bool]:
        def test(v: Any, strict: bool) -> bool:
            if not _comparable(v, ref):
                raise ConditionError(
                    f"cannot compare {type(v).__name__} {v!r} {sym} {type(ref).__name__} {ref!r}"
                )
            return op(v, ref)

        return test

    return make


def _eq(ref: Any) -> Callable[[Any, bool], bool]:
    return lambda v, strict: _same(v, ref)


def _ne(ref: Any) -> Callable[[Any, bool], bool]:
    return lambda v, strict: not _same(v, ref)


def _in(ref: Sequence[Any]) -> Callable[[Any, bool], bool]:
    items = list(ref)
    return lambda v, strict: any(_same(v, x) for x in items)


def _not_in(ref: Sequence[Any]) -> Callable[[Any, bool], bool]:
    items = list(ref)
    return lambda v, strict: not any(_same(v, x) for x in items)


def _need_str(v: Any, op: str) -> str:
    if not isinstance(v, str):
        raise ConditionError(f"{op} needs a string, got {type(v).__name__} {v!r}")
    return v


def _regex(ref: str) -> Callable[[Any, bool], bool]:
    rx = re.compile(ref)
    return lambda v, strict: rx.fullmatch(_need_str(v, "regex")) is not None


def _glob(ref: str) -> Callable[[Any, bool], bool]:
    rx = re.compile(fnmatch.translate(ref))
    return lambda v, strict: rx.match(_need_str(v, "glob")) is not None


def _under(ref: str) -> Callable[[Any, bool], bool]:
    from calltape.policy.sandbox import FsSandbox, PathProblem

    box = FsSandbox(ref)

    def test(v: Any, strict: bool) -> bool:
        values = v if isinstance(v, list | tuple) else (v,)
        if not values:
            return False
        hits = []
        for item in values:
            try:
                resolved = box.resolve(item, root_relative=False)
            except PathProblem as exc:
                raise ConditionError(f"path {item!r} {exc}") from None
            inside = [box.inside(r) for r in resolved]
            hits.append(all(inside) if strict else any(inside))
        return all(hits) if strict else any(hits)

    return test


def _host_in(ref: Sequence[str]) -> Callable[[Any, bool], bool]:
    from calltape.policy.net import HostAllowlist, TargetError, parse_target

    allow = HostAllowlist(ref)

    def test(v: Any, strict: bool) -> bool:
        values = v if isinstance(v, list | tuple) else (v,)
        if not values:
            return False
        hits = []
        for item in values:
            try:
                target = parse_target(_need_str(item, "host_in"))
            except TargetError as exc:
                raise ConditionError(str(exc)) from None
            hits.append(allow.check(target) is None)
        return all(hits) if strict else any(hits)

    return test


_OPS: dict[str, Callable[[Any], Callable[[Any, bool], bool]]] = {
    "eq": _eq,
    "ne": _ne,
    "lt": _cmp(lambda a, b: a < b, "<"),
    "le": _cmp(lambda a, b: a <= b, "<="),
    "gt": _cmp(lambda a, b: a > b, ">"),
    "ge": _cmp(lambda a, b: a >= b, ">="),
    "in": _in,
    "not_in": _not_in,
    "regex": _regex,
    "glob": _glob,
    "under": _under,
    "host_in": _host_in,
    "exists": lambda ref: lambda v, strict: True,
}
#: The condition operators, as spelled in a policy file.
OPERATORS: tuple[str, ...] = tuple(_OPS)


class _Arg:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def _c(self, op: str, value: Any) -> Condition:
        return Condition(self.name, op, value)

    def eq(self, v: Any) -> Condition:
        return self._c("eq", v)

    def ne(self, v: Any) -> Condition:
        return self._c("ne", v)

    def lt(self, v: Any) -> Condition:
        return self._c("lt", v)

    def le(self, v: Any) -> Condition:
        return self._c("le", v)

    def gt(self, v: Any) -> Condition:
        return self._c("gt", v)

    def ge(self, v: Any) -> Condition:
        return self._c("ge", v)

    def in_(self, v: Sequence[Any]) -> Condition:
        return self._c("in", v)

    def not_in(self, v: Sequence[Any]) -> Condition:
        return self._c("not_in", v)

    def regex(self, v: str) -> Condition:
        return self._c("regex", v)

    def glob(self, v: str) -> Condition:
        return self._c("glob", v)

    def under(self, root: str | os.PathLike[str]) -> Condition:
        return self._c("under", os.fspath(root))

    def host_in(self, hosts: Sequence[str]) -> Condition:
        return self._c("host_in", list(hosts))

    def exists(self, present: bool = True) -> Condition:
        return self._c("exists", present)


def arg(name: str) -> _Arg:
    """Start a condition on argument ``name``: ``arg("amount").le(100)``.

    Operators: ``eq ne lt le gt ge in_ not_in regex`` (full match) ``glob under host_in exists``.
    A condition on an argument the call does not pass is false (``exists(False)`` aside); a
    value of the wrong type for the operator denies the call (fail closed).
    """
    return _Arg(name)


# ------------------------------------------------------------------ rules


class Rule:
    """One rule: if the call matches, ``action`` with this rule's id and reason.

    Args:
        id: Shown in the trace and to the model as the deciding rule.
        action: ``allow``, ``deny`` or ``ask``.
        reason: The human reason (default: ``matched rule <id>``).
        tools: Globs on the tool name (default: every tool).
        side_effects: Side effects that match (default: any).
        when: Conditions that must all hold.
        source: Where the rule was written (``file:line``), for explanations.

    Raises:
        PolicyError: unknown action or side effect, bad glob.
    """

    __slots__ = (
        "_decision",
        "_exact",
        "_rx",
        "_strict",
        "action",
        "id",
        "reason",
        "side_effects",
        "source",
        "tools",
        "when",
    )

    def __init__(
        self,
        id: str,
        action: Action,
        reason: str | None = None,
        *,
        tools: Iterable[str] = ("*",),
        side_effects: Iterable[str] | None = None,
        when: Iterable[Condition] = (),
        source: str | None = None,
    ) -> None:
        if action not in _ACTIONS:
            raise PolicyError(f"rule {id!r}: action must be allow, deny or ask, not {action!r}")
        self.id = id
        self.action: Action = action
        self.reason = reason or f"matched rule {id!r}"
        self.tools = tuple(tools)
        try:
            for t in self.tools:
                check_glob(t)
        except ValueError as exc:
            raise PolicyError(f"rule {id!r}: {exc}") from None
        if side_effects is None:
            self.side_effects: frozenset[str] | None = None
        else:
            self.side_effects = frozenset(side_effects)
            unknown = self.side_effects - set(SIDE_EFFECTS)
            if unknown:
                raise PolicyError(
                    f"rule {id!r}: unknown side effect {sorted(unknown)[0]!r} "
                    f"(expected one of {', '.join(SIDE_EFFECTS)})"
                )
        self.when = tuple(when)
        self.source = source
        self._strict = action == "allow"
        self._decision = Decision(action, id, self.reason)
        literal = [t for t in self.tools if not _GLOB_CHARS.search(t)]
        globs = [t for t in self.tools if _GLOB_CHARS.search(t)]
        self._exact = frozenset(literal)
        self._rx = (
            re.compile("|".join(f"(?:{fnmatch.translate(g)})" for g in globs)) if globs else None
        )

    def __repr__(self) -> str:
        return f"Rule({self.id!r}, {self.action!r}, tools={list(self.tools)!r})"

    def matches_name(self, tool: str) -> bool:
        return tool in self._exact or (self._rx is not None and self._rx.match(tool) is not None)

    def check(self, call: ToolCall) -> Decision | None:
        """This rule's decision if ``call`` matches (the name is assumed to match), else None.

        A condition that cannot be evaluated denies the call with this rule's id.
        """
        if self.side_effects is not None and call.side_effect not in self.side_effects:
            return None
        strict = self._strict
        try:
            for cond in self.when:
                if not cond(call, strict):
                    return None
        except ConditionError as exc:
            return Decision(
                "deny",
                self.id,
                f"rule {self.id!r} could not be evaluated: {exc}; the call was blocked "
                "(fail closed)",
            )
        return self._decision

    def decide(self, call: ToolCall) -> Decision:
        """As a policy on its own: this rule's decision, else deny."""
        d = self.check(call) if self.matches_name(call.tool) else None
        return d if d is not None else _NO_MATCH


_NO_MATCH = Decision("deny", "default", "no rule matched (default: deny)")


def rule(
    id: str,
    action: Action,
    *,
    tool: str | Iterable[str] = "*",
    side_effect: str | Iterable[str] | None = None,
    when: Iterable[Condition] = (),
    reason: str | None = None,
) -> Rule:
    """Build a :class:`Rule`: ``rule("reads", "allow", side_effect="read")``.

    Raises:
        PolicyError: unknown action or side effect, bad glob.
    """
    tools = (tool,) if isinstance(tool, str) else tuple(tool)
    ses = (side_effect,) if isinstance(side_effect, str) else side_effect
    return Rule(id, action, reason, tools=tools, side_effects=ses, when=when)


# ------------------------------------------------------------------ combinators


class FirstMatch:
    """The first matching rule decides; a plain policy in the list always decides.

    Rules are looked up by tool name once per name (cached), so a call only evaluates the side
    effect and conditions of the rules that can match it.
    """

    __slots__ = ("_cache", "default", "items")

    _CACHE_MAX = 4096

    def __init__(self, items: Sequence[Rule | Policy], default: Decision | Policy) -> None:
        self.items = tuple(items)
        self.default = default
        self._cache: dict[str, tuple[Rule | Policy, ...]] = {}

    def __repr__(self) -> str:
        return f"first_match({', '.join(map(repr, self.items))})"

    def candidates(self, tool: str) -> tuple[Rule | Policy, ...]:
        """The items that can match ``tool``, in order."""
        hit = self._cache.get(tool)
        if hit is None:
            hit = tuple(i for i in self.items if not isinstance(i, Rule) or i.matches_name(tool))
            if len(self._cache) < self._CACHE_MAX:
                self._cache[tool] = hit
        return hit

    def decide(self, call: ToolCall) -> Decision:
        for item in self.candidates(call.tool):
            if isinstance(item, Rule):
                d = item.check(call)
                if d is not None:
                    return d
            else:
                return item.decide(call)
        default = self.default
        return default if isinstance(default, Decision) else default.decide(call)

    def explain(self, call: ToolCall) -> tuple[Decision, Rule | Policy | None]:
        """The decision and the item that made it (None: the default)."""
        for item in self.candidates(call.tool):
            if isinstance(item, Rule):
                d = item.check(call)
                if d is not None:
                    return d, item
            else:
                return item.decide(call), item
        default = self.default
        return (default if isinstance(default, Decision) else default.decide(call)), None


def first_match(*items: Rule | Policy, default: Decision | Policy | None = None) -> FirstMatch:
    """The first rule that matches decides; else ``default`` (deny unless given).

    Raises:
        TypeError: an item is neither a Rule nor a policy.
    """
    for item in items:
        if not isinstance(item, Rule) and not callable(getattr(item, "decide", None)):
            raise TypeError(f"first_match: {item!r} is neither a Rule nor a policy")
    if default is None:
        default = _NO_MATCH
    return FirstMatch(items, default)


class AllOf:
    """Every policy must allow: the first ``deny`` decides, else the first ``ask``, else an
    ``allow`` naming every policy's rule (``fs_sandbox.allow+net_allowlist.allow``)."""

    __slots__ = ("policies",)

    def __init__(self, policies: Sequence[Policy]) -> None:
        self.policies = tuple(policies)

    def __repr__(self) -> str:
        return f"all_of({', '.join(map(repr, self.policies))})"

    def decide(self, call: ToolCall) -> Decision:
        allows: list[Decision] = []
        ask: Decision | None = None
        for p in self.policies:
            d = p.decide(call)
            if d.action == "deny":
                return d
            if d.action == "ask":
                if ask is None:
                    ask = d
            else:
                allows.append(d)
        if ask is not None:
            return ask
        if len(allows) == 1:
            return allows[0]
        if not allows:
            return _EMPTY_ALL
        return Decision(
            "allow", "+".join(d.rule for d in allows), "; ".join(d.reason for d in allows)
        )


_EMPTY_ALL = Decision.allow("all_of", "no policy to check")


def all_of(*policies: Policy) -> AllOf:
    """A policy that allows a call only if every policy allows it.

    Raises:
        TypeError: an argument has no ``decide`` method.
    """
    for p in policies:
        if not callable(getattr(p, "decide", None)):
            raise TypeError(f"all_of: {p!r} has no decide(call) method")
    return AllOf(policies)


# ------------------------------------------------------------------ timeouts


class _Workers:
    """Daemon worker threads: a hung policy never keeps the process alive at exit."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.jobs: queue.SimpleQueue[tuple[Callable[[], Decision], Future[Decision]]] = (
            queue.SimpleQueue()
        )
        self.lock = threading.Lock()
        self.threads = 0
        self.idle = 0

    def submit(self, fn: Callable[[], Decision]) -> Future[Decision]:
        fut: Future[Decision] = Future()
        with self.lock:
            # a worker is idle only while it waits on the queue; hung workers are never idle,
            # so they are replaced (up to the limit) instead of starving later decisions
            if self.idle == 0 and self.threads < self.limit:
                self.threads += 1
                threading.Thread(target=self._loop, name="calltape-policy", daemon=True).start()
        self.jobs.put((fn, fut))
        return fut

    def _loop(self) -> None:
        while True:
            with self.lock:
                self.idle += 1
            fn, fut = self.jobs.get()
            with self.lock:
                self.idle -= 1
            if fut.set_running_or_notify_cancel():
                try:
                    fut.set_result(fn())
                except BaseException as exc:
                    fut.set_exception(exc)


class WithTimeout:
    """Runs the wrapped policy's ``decide`` in a worker thread; denies on timeout."""

    __slots__ = ("_workers", "policy", "seconds")

    def __init__(self, policy: Policy, seconds: float, max_workers: int = 8) -> None:
        if not callable(getattr(policy, "decide", None)):
            raise TypeError(f"with_timeout: {policy!r} has no decide(call) method")
        if not seconds > 0:
            raise ValueError(f"with_timeout: seconds must be > 0, got {seconds!r}")
        self.policy = policy
        self.seconds = float(seconds)
        self._workers = _Workers(max_workers)

    def __repr__(self) -> str:
        return f"with_timeout({self.policy!r}, {self.seconds})"

    def decide(self, call: ToolCall) -> Decision:
        ctx = contextvars.copy_context()
        decide = self.policy.decide
        fut = self._workers.submit(lambda: ctx.run(decide, call))
        try:
            return fut.result(timeout=self.seconds)
        except FutureTimeout:
            fut.cancel()
            return Decision(
                "deny",
                "policy_timeout",
                f"the policy did not decide within {self.seconds:g}s; the call was blocked "
                "(fail closed)",
            )


def with_timeout(policy: Policy, seconds: float) -> WithTimeout:
    """Deny with rule ``policy_timeout`` when ``policy`` takes longer than ``seconds``.

    ``decide`` runs in a daemon worker thread (the context variables of the caller are copied
    in). A policy that raises still raises, and the Session blocks the call (``policy_error``).
    A decision still running when the timeout passes is abandoned, not interrupted.

    Raises:
        ValueError: ``seconds`` is not positive.
        TypeError: ``policy`` has no ``decide`` method.
    """
    return WithTimeout(policy, seconds)
