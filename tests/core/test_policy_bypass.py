"""The bypass corpora: zero escapes from fs_sandbox and net_allowlist.

The cases are data (tests/core/data/policies/bypass_paths.json and bypass_urls.json) so a new
bypass found in the wild is one line to add.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from calltape import ToolSpec
from calltape.policy import ToolCall
from calltape.policy.combinators import ConditionError, arg, first_match, rule
from calltape.policy.presets import fs_sandbox, net_allowlist
from calltape.policy.sandbox import FsSandbox

DATA = Path(__file__).parent / "data" / "policies"
PATHS = json.loads((DATA / "bypass_paths.json").read_text())
URLS = json.loads((DATA / "bypass_urls.json").read_text())


def make_call(tool: str, args: dict[str, Any], side_effect: str, **spec: Any) -> ToolCall:
    return ToolCall(
        tool, args, side_effect, ToolSpec(tool, side_effect=side_effect, **spec), "", ""
    )


def test_corpora_are_big_enough() -> None:
    deny_paths = [c for c in PATHS["cases"] if c["expect"] == "deny"]
    deny_urls = [c for c in URLS["cases"] if c["expect"] == "deny"]
    assert len(deny_paths) >= 40 and len(deny_urls) >= 40
    assert len({c["id"] for c in PATHS["cases"]}) == len(PATHS["cases"])
    assert len({c["id"] for c in URLS["cases"]}) == len(URLS["cases"])


# ------------------------------------------------------------------ paths


@pytest.fixture
def layout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    base = tmp_path.resolve()
    root = base / "ws"
    outside = base / "outside"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "file.txt").write_text("in")
    (outside / "a" / "b").mkdir(parents=True)
    (outside / "secret.txt").write_text("secret")
    (base / "ws-evil").mkdir()
    (base / "ws-evil" / "secret.txt").write_text("secret")
    (root / "link_in").symlink_to(root / "sub")
    (root / "link_out").symlink_to(outside)
    (root / "link_deep").symlink_to(outside / "a" / "b")
    monkeypatch.setenv("HOME", str(outside))
    monkeypatch.chdir(root)
    return {"root": str(root), "outside": str(outside)}


def fill(value: Any, layout: dict[str, str]) -> Any:
    if isinstance(value, str):
        return value.replace("{root}", layout["root"]).replace("{outside}", layout["outside"])
    if isinstance(value, list):
        return [fill(v, layout) for v in value]
    if isinstance(value, dict):
        return {k: fill(v, layout) for k, v in value.items()}
    return value


def path_names(cases: Iterable[dict[str, Any]]) -> list[Any]:
    return [pytest.param(c, id=c["id"]) for c in cases]


@pytest.mark.parametrize("case", path_names(PATHS["cases"]))
@pytest.mark.parametrize(
    ("tool", "param"), [("read_file", "path"), ("zz_renamed", "q"), ("summarize", "text")]
)
def test_path_corpus(
    case: dict[str, Any],
    tool: str,
    param: str,
    layout: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if case.get("cwd") == "outside":
        monkeypatch.chdir(layout["outside"])
    value = fill(case["value"], layout)
    box = fs_sandbox(layout["root"], write=True)
    for se in ("read", "write"):
        d = box.decide(make_call(tool, {param: value}, se, paths=(param,)))
        assert d.action == case["expect"], (case["id"], se, d)
        if case["expect"] == "deny":
            assert d.rule == "fs_sandbox.outside" and repr(param) in d.reason


@pytest.mark.parametrize("case", path_names(c for c in PATHS["cases"] if c["value"] is not None))
def test_path_corpus_under_condition(
    case: dict[str, Any], layout: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An allow rule with ``under`` never matches an escaping path (strict: every reading)."""
    if case.get("cwd") == "outside":
        monkeypatch.chdir(layout["outside"])
    value = fill(case["value"], layout)
    policy = first_match(rule("in-root", "allow", when=[arg("p").under(layout["root"])]))
    d = policy.decide(make_call("t", {"p": value}, "read"))
    assert d.action == case["expect"], (case["id"], d)


def test_path_under_deny_rule_matches_any_reading(layout: dict[str, str]) -> None:
    """A deny rule with ``under`` matches if any reading is inside (fail closed both ways)."""
    secrets = Path(layout["root"], "secrets")
    secrets.mkdir()
    policy = first_match(
        rule("no-secrets", "deny", when=[arg("p").under(secrets)]),
        rule("rest", "allow"),
    )
    for value in ("secrets/x", "secrets%2fx", "secrets\\x", "./sub/../secrets", "%73ecrets/x"):
        assert policy.decide(make_call("t", {"p": value}, "read")).rule == "no-secrets", value
    assert policy.decide(make_call("t", {"p": "sub/file.txt"}, "read")).rule == "rest"


def test_under_on_a_non_path_value_denies(layout: dict[str, str]) -> None:
    cond = arg("p").under(layout["root"])
    with pytest.raises(ConditionError):
        cond(make_call("t", {"p": 5}, "read"))
    d = first_match(rule("r", "allow", when=[cond])).decide(make_call("t", {"p": 5}, "read"))
    assert d.action == "deny" and d.rule == "r" and "fail closed" in d.reason


def test_bytes_and_pathlike_values(layout: dict[str, str]) -> None:
    box = fs_sandbox(layout["root"])
    ok = box.decide(make_call("t", {"p": Path(layout["root"], "sub")}, "read", paths=("p",)))
    assert ok.allowed
    bad = box.decide(make_call("t", {"p": Path("/etc/passwd")}, "read", paths=("p",)))
    assert bad.rule == "fs_sandbox.outside"
    raw = box.decide(make_call("t", {"p": b"sub/file.txt"}, "read", paths=("p",)))
    assert raw.rule == "fs_sandbox.outside" and "bytes" in raw.reason


def test_symlink_swapped_after_construction_is_seen(layout: dict[str, str]) -> None:
    """realpath runs per decision: a link that now points outside is denied."""
    box = fs_sandbox(layout["root"])
    link = Path(layout["root"], "moving")
    link.symlink_to(Path(layout["root"], "sub"))
    call = make_call("t", {"p": "moving/file.txt"}, "read", paths=("p",))
    assert box.decide(call).allowed
    link.unlink()
    link.symlink_to(layout["outside"])
    assert box.decide(call).rule == "fs_sandbox.outside"


def test_file_urls_in_url_arguments_are_paths(layout: dict[str, str]) -> None:
    box = fs_sandbox(layout["root"])
    call = make_call("fetch", {"u": "file:///etc/passwd"}, "network", urls=("u",))
    assert box.decide(call).rule == "fs_sandbox.outside"
    call = make_call("fetch", {"u": "https://example.com/etc/passwd"}, "network", urls=("u",))
    assert box.decide(call).allowed


# ------------------------------------------------------------------ URLs and hosts


def url_cases() -> list[Any]:
    return [pytest.param(c, id=c["id"]) for c in URLS["cases"]]


def resolver_from(table: dict[str, list[str]]) -> Any:
    def resolve(host: str) -> list[str]:
        if host not in table:
            raise OSError(f"[Errno -2] Name or service not known: {host!r}")
        return table[host]

    return resolve


@pytest.mark.parametrize("case", url_cases())
@pytest.mark.parametrize(("tool", "param"), [("fetch", "url"), ("zz_renamed", "body")])
def test_url_corpus(case: dict[str, Any], tool: str, param: str) -> None:
    hosts = case.get("hosts", URLS["hosts"])
    if "resolve" in case:
        policy = net_allowlist(hosts, resolve_dns=True, resolver=resolver_from(case["resolve"]))
    else:
        policy = net_allowlist(hosts)
    for se in ("network", "read", "write"):
        d = policy.decide(make_call(tool, {param: case["value"]}, se, urls=(param,)))
        assert d.action == case["expect"], (case["id"], se, d)
        if case["expect"] == "deny":
            assert d.rule.startswith("net_allowlist.") and param in d.reason


def host_cases() -> list[Any]:
    """The cases about hosts: not DNS, not schemes, not non-strings (net_allowlist's alone)."""
    return [
        pytest.param(c, id=c["id"])
        for c in URLS["cases"]
        if "resolve" not in c
        and isinstance(c["value"], str)
        and c["value"]
        and c["value"].split(":", 1)[0].lower() not in ("file", "gopher", "ws")
    ]


@pytest.mark.parametrize("case", host_cases())
def test_url_corpus_host_in_condition(case: dict[str, Any]) -> None:
    """``host_in`` in an allow rule agrees with net_allowlist (without DNS)."""
    hosts = case.get("hosts", URLS["hosts"])
    policy = first_match(rule("hosts", "allow", when=[arg("u").host_in(hosts)]))
    d = policy.decide(make_call("t", {"u": case["value"]}, "network"))
    assert d.action == case["expect"], (case["id"], d)


def test_the_resolver_sees_the_normalized_name() -> None:
    seen: list[str] = []

    def resolve(host: str) -> list[str]:
        seen.append(host)
        return ["93.184.216.34"]

    policy = net_allowlist(["*"], resolve_dns=True, resolver=resolve)
    d = policy.decide(make_call("f", {"u": "HTTPS://Ok.Example.NET./x"}, "network", urls=("u",)))
    assert d.allowed and seen == ["ok.example.net"]


def test_default_resolver_is_not_called_without_resolve_dns(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import socket

    def boom(*a: Any, **k: Any) -> Any:
        raise AssertionError("no DNS without resolve_dns=True")

    monkeypatch.setattr(socket, "getaddrinfo", boom)
    d = net_allowlist(["*"]).decide(
        make_call("f", {"u": "https://example.net/"}, "network", urls=("u",))
    )
    assert d.allowed


def test_list_of_urls_all_checked() -> None:
    policy = net_allowlist(["api.example.com"])
    call = make_call(
        "f", {"u": ["https://api.example.com/", "http://127.1/"]}, "network", urls=("u",)
    )
    d = policy.decide(call)
    assert d.rule == "net_allowlist.private" and "127.0.0.1" in d.reason


# ------------------------------------------------------------------ the fast realpath


@pytest.fixture(scope="module")
def maze(tmp_path_factory: pytest.TempPathFactory) -> FsSandbox:
    base = tmp_path_factory.mktemp("maze").resolve()
    root = base / "ws"
    (root / "sub" / "deeper").mkdir(parents=True)
    (base / "out" / "a").mkdir(parents=True)
    links = {
        "lin": str(root / "sub"),
        "lout": str(base / "out"),
        "sub/up2": "../..",
        "loop": "loop",
        "rel": "sub/deeper",
        "slash": "/",
        "l1": "l2",
        "l2": "l1",
    }
    for name, target in links.items():
        (root / name).symlink_to(target)
    return FsSandbox(root)


COMPONENTS = ["sub", "..", ".", "", "lin", "lout", "up2", "loop", "rel", "slash", "l1", "a", "x"]


@settings(
    max_examples=500, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(parts=st.lists(st.sampled_from(COMPONENTS), min_size=1, max_size=7))
def test_fast_realpath_equals_os_realpath(maze: FsSandbox, parts: list[str]) -> None:
    """Resolving below the already-real root gives exactly what os.path.realpath gives."""
    path = maze.root + "/" + "/".join(parts)
    assert maze.realpath(path) == os.path.realpath(path)


def test_docs_state_the_corpus_sizes() -> None:
    docs = (Path(__file__).parents[2] / "docs" / "policy.md").read_text()
    paths = [c["expect"] for c in PATHS["cases"]]
    urls = [c["expect"] for c in URLS["cases"]]
    assert f"{paths.count('deny')} escapes and {paths.count('allow')} honest paths" in docs
    assert (
        f"{urls.count('deny')} SSRF and allowlist tricks and {urls.count('allow')} honest" in docs
    )
