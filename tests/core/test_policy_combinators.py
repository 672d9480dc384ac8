"""Rules, first_match, all_of, with_timeout: the algebra of policies."""

from __future__ import annotations

import fnmatch
import ipaddress
import subprocess
import sys
import threading
import time
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from calltape import PolicyError, Session, ToolSpec
from calltape.policy import Decision, ToolCall
from calltape.policy.combinators import (
    ConditionError,
    FirstMatch,
    all_of,
    arg,
    check_glob,
    first_match,
    rule,
    with_timeout,
)
from calltape.policy.net import parse_target
from calltape.trace import CallEnd, read_trace


def make_call(tool: str, args: dict[str, Any] | None = None, side_effect: str = "read") -> ToolCall:
    return ToolCall(tool, args or {}, side_effect, ToolSpec(tool, side_effect=side_effect), "", "")


class Fixed:
    def __init__(self, action: str, rule: str = "") -> None:
        self.d = Decision(action, rule or action, f"fixed {action}")  # type: ignore[arg-type]
        self.calls = 0

    def decide(self, call: ToolCall) -> Decision:
        self.calls += 1
        return self.d


# ------------------------------------------------------------------ globs


@pytest.mark.parametrize("bad", ["", "a b", "a[", "a]", "[]", "[!]", "x\t", "a\x00"])
def test_bad_globs_are_rejected(bad: str) -> None:
    with pytest.raises(ValueError):
        check_glob(bad)
    with pytest.raises(PolicyError):
        rule("r", "allow", tool=bad)


@pytest.mark.parametrize("good", ["*", "read_*", "fs.?", "[ab]x", "[!a]*", "mcp__srv__*", "[]]"])
def test_good_globs(good: str) -> None:
    assert check_glob(good) == good


TOOL_CHARS = st.sampled_from(list("ab_.-*?[]!"))


@settings(max_examples=300, deadline=None)
@given(pattern=st.text(TOOL_CHARS, min_size=1, max_size=6), name=st.text("ab_.-!", max_size=6))
def test_compiled_globs_agree_with_fnmatchcase(pattern: str, name: str) -> None:
    try:
        check_glob(pattern)
    except ValueError:
        return
    r = rule("r", "allow", tool=pattern)
    assert r.matches_name(name) == fnmatch.fnmatchcase(name, pattern)


# ------------------------------------------------------------------ first_match


def test_first_match_order_and_default() -> None:
    p = first_match(
        rule("deny-rm", "deny", tool="rm*"),
        rule("reads", "allow", side_effect="read"),
        rule("ask-writes", "ask", side_effect=["write", "network"]),
    )
    assert p.decide(make_call("rm_rf", side_effect="read")).rule == "deny-rm"
    assert p.decide(make_call("cat")).rule == "reads"
    assert p.decide(make_call("post", side_effect="network")).action == "ask"
    d = p.decide(make_call("x", side_effect="exec"))
    assert (d.action, d.rule) == ("deny", "default")


def test_a_plain_policy_in_first_match_always_decides() -> None:
    inner = Fixed("ask", "inner")
    p = first_match(rule("a", "allow", tool="a"), inner, rule("never", "allow"))
    assert p.decide(make_call("a")).rule == "a"
    assert p.decide(make_call("b")).rule == "inner"


def test_custom_default() -> None:
    p = first_match(rule("a", "deny", tool="a"), default=Fixed("allow", "open"))
    assert p.decide(make_call("b")).rule == "open"
    p = first_match(default=Decision.ask("who", "ask me"))
    assert p.decide(make_call("b")).action == "ask"


def test_candidates_are_cached_per_name() -> None:
    r1, r2 = rule("x", "allow", tool="x"), rule("glob", "allow", tool="y*")
    p = first_match(r1, r2)
    assert isinstance(p, FirstMatch)
    assert p.candidates("x") == (r1,) and p.candidates("yy") == (r2,)
    assert p.candidates("z") == ()
    assert set(p._cache) == {"x", "yy", "z"}


def test_cache_is_bounded() -> None:
    p = first_match(rule("all", "allow"))
    for i in range(FirstMatch._CACHE_MAX + 10):
        assert p.decide(make_call(f"t{i}")).allowed
    assert len(p._cache) == FirstMatch._CACHE_MAX


def test_first_match_rejects_non_policies() -> None:
    with pytest.raises(TypeError):
        first_match(object())  # type: ignore[arg-type]


# ------------------------------------------------------------------ conditions


def test_comparisons() -> None:
    p = first_match(rule("small", "allow", tool="pay", when=[arg("amount").le(100)]))
    assert p.decide(make_call("pay", {"amount": 100})).rule == "small"
    assert p.decide(make_call("pay", {"amount": 100.5})).rule == "default"
    assert p.decide(make_call("pay", {})).rule == "default"  # missing: no match


@pytest.mark.parametrize("value", ["50", True, None, [1], {"v": 1}])
def test_a_value_of_the_wrong_type_denies_with_the_rule_id(value: Any) -> None:
    p = first_match(
        rule("big", "deny", tool="pay", when=[arg("amount").gt(100)]),
        rule("rest", "allow"),
    )
    d = p.decide(make_call("pay", {"amount": value}))
    assert (d.action, d.rule) == ("deny", "big") and "fail closed" in d.reason


def test_equality_does_not_confuse_bool_and_int() -> None:
    assert arg("x").eq(1)(make_call("t", {"x": 1}))
    assert not arg("x").eq(1)(make_call("t", {"x": True}))
    assert not arg("x").in_([0, 1])(make_call("t", {"x": False}))
    assert arg("x").not_in([0, 1])(make_call("t", {"x": False}))
    assert arg("x").ne("a")(make_call("t", {"x": "b"}))


def test_regex_is_a_full_match_and_glob_matches_strings() -> None:
    c = arg("cmd").regex(r"git (status|diff)")
    assert c(make_call("t", {"cmd": "git status"}))
    assert not c(make_call("t", {"cmd": "git status; rm -rf /"}))
    with pytest.raises(ConditionError):
        c(make_call("t", {"cmd": 5}))
    assert arg("f").glob("*.md")(make_call("t", {"f": "README.md"}))


def test_exists() -> None:
    assert arg("x").exists()(make_call("t", {"x": None}))
    assert arg("x").exists(False)(make_call("t", {}))
    assert not arg("x").exists()(make_call("t", {}))


def test_host_in() -> None:
    c = arg("u").host_in(["*.example.com"])
    assert c(make_call("t", {"u": "https://a.example.com/x"}))
    assert not c(make_call("t", {"u": "https://a.example.com@evil.com/"}))
    with pytest.raises(ConditionError):
        c(make_call("t", {"u": "http://a\\b"}))


# ------------------------------------------------------------------ all_of


def test_all_of_deny_beats_ask_beats_allow() -> None:
    a, q, d = Fixed("allow"), Fixed("ask"), Fixed("deny")
    assert all_of(a, q, d).decide(make_call("t")).action == "deny"
    assert all_of(q, a).decide(make_call("t")).action == "ask"
    both = all_of(Fixed("allow", "one"), Fixed("allow", "two")).decide(make_call("t"))
    assert (both.rule, both.reason) == ("one+two", "fixed allow; fixed allow")
    assert all_of(Fixed("allow", "one")).decide(make_call("t")).rule == "one"
    assert all_of().decide(make_call("t")).allowed


def test_all_of_stops_at_the_first_deny() -> None:
    later = Fixed("allow")
    all_of(Fixed("deny"), later).decide(make_call("t"))
    assert later.calls == 0


def test_all_of_rejects_non_policies() -> None:
    with pytest.raises(TypeError):
        all_of(Fixed("allow"), 3)  # type: ignore[arg-type]


# ------------------------------------------------------------------ with_timeout


class Slow:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.release = threading.Event()

    def decide(self, call: ToolCall) -> Decision:
        self.release.wait(self.seconds)
        return Decision.allow("slow", "finally")


def test_timeout_denies_with_policy_timeout() -> None:
    slow = Slow(10)
    p = with_timeout(slow, 0.05)
    t0 = time.perf_counter()
    d = p.decide(make_call("t"))
    assert (d.action, d.rule) == ("deny", "policy_timeout") and "fail closed" in d.reason
    assert time.perf_counter() - t0 < 5
    slow.release.set()


def test_fast_policy_decides_through_the_worker() -> None:
    p = with_timeout(Fixed("ask", "inner"), 5)
    for _ in range(20):
        assert p.decide(make_call("t")).rule == "inner"
    assert p._workers.threads == 1  # one worker reused


def test_a_raising_policy_still_raises_and_the_session_blocks(tmp_path: Path) -> None:
    class Boom:
        def decide(self, call: ToolCall) -> Decision:
            raise RuntimeError("backend down")

    p = with_timeout(Boom(), 5)
    with pytest.raises(RuntimeError, match="backend down"):
        p.decide(make_call("t"))
    with Session(tmp_path / "t.jsonl", policy=p) as s:
        s.register("t", lambda: 1, side_effect="read")
        r = s.call("t")
    assert r.status == "blocked" and r.decision.rule == "policy_error"


def test_timeout_in_a_session_is_recorded(tmp_path: Path) -> None:
    slow = Slow(10)
    ran: list[int] = []
    trace = tmp_path / "t.jsonl"
    with Session(trace, policy=with_timeout(slow, 0.05)) as s:
        s.register("t", lambda: ran.append(1), side_effect="read")
        r = s.call("t")
    slow.release.set()
    assert ran == [] and r.status == "blocked" and r.decision.rule == "policy_timeout"
    end = [x for x in read_trace(trace).records if isinstance(x, CallEnd)][0]
    assert end.status == "blocked" and end.decision.rule == "policy_timeout"
    assert "did not decide within 0.05s" in end.decision.reason


def test_context_variables_reach_the_worker() -> None:
    var: ContextVar[str] = ContextVar("var", default="unset")

    class Reads:
        def decide(self, call: ToolCall) -> Decision:
            return Decision.allow("ctx", var.get())

    var.set("caller")
    assert with_timeout(Reads(), 5).decide(make_call("t")).reason == "caller"


def test_hung_policy_does_not_keep_the_process_alive() -> None:
    code = (
        "import threading\n"
        "from calltape import ToolSpec\n"
        "from calltape.policy import ToolCall\n"
        "from calltape.policy.combinators import with_timeout\n"
        "class Hang:\n"
        "    def decide(self, call):\n"
        "        threading.Event().wait()\n"
        "d = with_timeout(Hang(), 0.05).decide(ToolCall('t', {}, 'read', ToolSpec('t'), '', ''))\n"
        "print(d.rule)\n"
    )
    p = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert p.returncode == 0 and p.stdout.strip() == "policy_timeout", p.stderr


def test_with_timeout_validates() -> None:
    with pytest.raises(ValueError):
        with_timeout(Fixed("allow"), 0)
    with pytest.raises(TypeError):
        with_timeout(object(), 1)  # type: ignore[arg-type]


# ------------------------------------------------------------------ IPv4 forms (property)


@settings(max_examples=300, deadline=None)
@given(n=st.integers(0, 2**32 - 1))
def test_every_ipv4_spelling_is_the_same_address(n: int) -> None:
    ip = ipaddress.IPv4Address(n)
    a, b, c, d = ip.packed
    spellings = [
        str(n),
        hex(n),
        "0" + oct(n)[2:] if n else "0",
        f"{a}.{b}.{c}.{d}",
        f"{a}.{(b << 16) | (c << 8) | d}",
        f"{a}.{b}.{(c << 8) | d}",
        f"0x{a:x}.0{b:o}.{c}.0x{d:X}",
        f"[::ffff:{ip}]",
    ]
    for s in spellings:
        target = parse_target(f"http://{s}/")
        assert target.ip == ip, (s, target)


def test_hung_workers_are_replaced() -> None:
    """A decision that hangs does not starve the next one while the worker limit allows."""
    hang = Slow(30)
    calls = {"n": 0}

    class FirstHangs:
        def decide(self, call: ToolCall) -> Decision:
            calls["n"] += 1
            if calls["n"] == 1:
                return hang.decide(call)
            return Decision.allow("ok", "fast")

    p = with_timeout(FirstHangs(), 0.2)
    assert p.decide(make_call("t")).rule == "policy_timeout"
    assert p.decide(make_call("t")).rule == "ok"
    assert p._workers.threads == 2
    hang.release.set()


def test_composition_and_file_loading_are_importable_from_calltape_policy() -> None:
    import calltape.policy as policy_pkg
    from calltape.policy import combinators, file, presets

    assert policy_pkg.all_of is combinators.all_of
    assert policy_pkg.first_match is combinators.first_match
    assert policy_pkg.with_timeout is combinators.with_timeout
    assert policy_pkg.load_policy is file.load_policy
    assert policy_pkg.PolicyFileError is file.PolicyFileError
    assert policy_pkg.presets is presets
    with pytest.raises(AttributeError, match="no_such_name"):
        _ = policy_pkg.no_such_name
