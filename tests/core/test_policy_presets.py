"""fs_sandbox and net_allowlist: what they do with declared, undeclared and renamed tools."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import pytest

import calltape
from calltape import PolicyError, Session, ToolSpec
from calltape.policy import ToolCall, presets
from calltape.policy.combinators import all_of
from calltape.policy.presets import fs_sandbox, net_allowlist


def make_call(tool: str, args: dict[str, Any], side_effect: str, **spec: Any) -> ToolCall:
    return ToolCall(
        tool, args, side_effect, ToolSpec(tool, side_effect=side_effect, **spec), "", ""
    )


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "a.txt").write_text("a")
    monkeypatch.chdir(ws)
    return ws.resolve()


# ------------------------------------------------------------------ fs_sandbox


@pytest.mark.parametrize("se", ["exec", "unknown"])
def test_sandbox_denies_exec_and_unknown_even_when_declared(root: Path, se: str) -> None:
    d = fs_sandbox(root, write=True).decide(make_call("t", {"p": "a.txt"}, se, paths=("p",)))
    assert (d.action, d.rule) == ("deny", f"fs_sandbox.{se}")


@pytest.mark.parametrize("se", ["write", "network"])
def test_sandbox_denies_undeclared_non_read_tools(root: Path, se: str) -> None:
    d = fs_sandbox(root, write=True).decide(make_call("t", {"x": "hello"}, se))
    assert (d.action, d.rule) == ("deny", "fs_sandbox.undeclared")
    assert "Annotated[str, calltape.Path]" in d.reason


@pytest.mark.parametrize(
    "args",
    [
        {"q": "/etc/passwd"},
        {"q": "..\\x"},
        {"q": "~/.ssh/id_rsa"},
        {"q": ".env"},
        {"q": "%2e%2e%2fx"},
        {"q": "file:secrets"},
        {"q": "\uff0fetc\uff0fpasswd"},
        {"opts": {"target": "/etc/shadow"}},
        {"files": ["notes", "../x"]},
        {"opts": {"/etc/passwd": 1}},
    ],
)
def test_undeclared_read_tool_with_a_path_like_string_is_denied(
    root: Path, args: dict[str, Any]
) -> None:
    d = fs_sandbox(root).decide(make_call("search", args, "read"))
    assert (d.action, d.rule) == ("deny", "fs_sandbox.undeclared"), args


@pytest.mark.parametrize(
    "args",
    [{}, {"q": "refund policy"}, {"n": 3, "flag": True}, {"q": ["a", "b c"]}, {"q": "Q: why?"}],
)
def test_undeclared_read_tool_without_path_like_strings_is_allowed(
    root: Path, args: dict[str, Any]
) -> None:
    assert fs_sandbox(root).decide(make_call("search", args, "read")).allowed


def test_read_only_sandbox_denies_writes_inside_root(root: Path) -> None:
    call = make_call("write_file", {"p": str(root / "a.txt")}, "write", paths=("p",))
    d = fs_sandbox(root).decide(call)
    assert (d.action, d.rule) == ("deny", "fs_sandbox.write")
    assert fs_sandbox(root, write=True).decide(call).allowed


def test_missing_or_none_optional_path_is_fine(root: Path) -> None:
    box = fs_sandbox(root)
    assert box.decide(make_call("t", {}, "read", paths=("p",))).allowed
    assert box.decide(make_call("t", {"p": None}, "read", paths=("p",))).allowed


def test_root_must_exist(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="not a directory"):
        fs_sandbox(tmp_path / "nope")
    (tmp_path / "f").write_text("")
    with pytest.raises(PolicyError):
        fs_sandbox(tmp_path / "f")


def test_declared_through_annotations_in_a_session(root: Path, tmp_path: Path) -> None:
    opened: list[str] = []

    def read_file(where: Annotated[str, calltape.Path]) -> str:
        opened.append(where)
        return "x"

    with Session(tmp_path / "t.jsonl", policy=fs_sandbox(root)) as s:
        s.register(read_file, side_effect="read")
        s.register("renamed_reader", read_file, side_effect="read")
        ok = s.call("read_file", where="a.txt")
        bad = s.call("read_file", where="../../etc/passwd")
        bad2 = s.call("renamed_reader", where="/etc/passwd")
    assert ok.status == "ok" and opened == ["a.txt"]
    assert bad.status == "blocked" and bad.decision.rule == "fs_sandbox.outside"
    assert bad2.status == "blocked" and bad2.decision.rule == "fs_sandbox.outside"


def test_declared_through_register_paths(root: Path, tmp_path: Path) -> None:
    with Session(tmp_path / "t.jsonl", policy=fs_sandbox(root, write=True)) as s:
        s.register("save", lambda dest, body: None, side_effect="write", paths=["dest"])
        assert s.call("save", dest="new.txt", body="/etc/passwd is just text").status == "ok"
        assert s.call("save", dest="/tmp/x", body="x").decision.rule == "fs_sandbox.outside"


def test_a_declared_name_that_is_not_a_parameter_is_refused_at_registration(
    tmp_path: Path,
) -> None:
    def read_file(target: str) -> str:
        return target

    with Session(tmp_path / "t.jsonl") as s:
        with pytest.raises(ValueError, match=r"'path' in paths=/urls= is not a parameter of"):
            s.register(read_file, side_effect="read", paths=["path"])
        with pytest.raises(ValueError, match=r"'url' in paths=/urls= is not a parameter of"):
            s.register(read_file, side_effect="network", urls=["url"])
        s.register("any_kw", lambda **kw: kw, side_effect="read", paths=["path"])  # **kw: fine


@pytest.mark.parametrize("se", ["write", "network"])
def test_a_call_carrying_none_of_the_declared_arguments_is_denied(root: Path, se: str) -> None:
    # e.g. a framework tool declared with session.declare(..., paths=["path"]) whose
    # parameter was renamed since: nothing would be checked, so nothing may pass
    call = make_call("save", {"target": "/etc/passwd"}, se, paths=("path",))
    d = fs_sandbox(root, write=True).decide(call)
    assert (d.action, d.rule) == ("deny", "fs_sandbox.undeclared")
    assert "carries none of them" in d.reason
    call = make_call("fetch", {"target": "http://169.254.169.254/"}, se, urls=("url",))
    d = net_allowlist(["api.example.com"]).decide(call)
    assert (d.action, d.rule) == ("deny", "net_allowlist.undeclared")


def test_a_read_call_carrying_none_of_the_declared_arguments_is_screened(root: Path) -> None:
    box, net = fs_sandbox(root), net_allowlist(["api.example.com"])
    stale = make_call("read_file", {"target": "/etc/passwd"}, "read", paths=("path",))
    assert box.decide(stale).rule == "fs_sandbox.undeclared"
    stale_url = make_call("get", {"target": "http://10.0.0.1/"}, "read", urls=("url",))
    assert net.decide(stale_url).rule == "net_allowlist.undeclared"
    harmless = make_call("read_file", {"limit": 3}, "read", paths=("path",))
    assert box.decide(harmless).allowed and net.decide(harmless).allowed


@pytest.mark.parametrize(
    "text", ["%252e%252e%252f%252e%252e%252f", "%25252fetc%25252fpasswd", "..%255c..%255cwin.ini"]
)
def test_undeclared_read_tool_with_multiply_encoded_separators_is_denied(
    root: Path, text: str
) -> None:
    d = fs_sandbox(root).decide(make_call("search", {"q": text}, "read"))
    assert (d.action, d.rule) == ("deny", "fs_sandbox.undeclared")


def test_an_undeclared_framework_tool_is_denied(root: Path, tmp_path: Path) -> None:
    """A tool the session never heard of has side effect unknown: denied."""
    with Session(tmp_path / "t.jsonl", policy=fs_sandbox(root, write=True)) as s:
        r = s.run_tool("mystery", {"path": "a.txt"}, lambda: "ran")
    assert r.status == "blocked" and r.decision.rule == "fs_sandbox.unknown"


# ------------------------------------------------------------------ net_allowlist


@pytest.mark.parametrize("se", ["exec", "unknown"])
def test_net_denies_exec_and_unknown(se: str) -> None:
    d = net_allowlist(["*"]).decide(make_call("t", {"u": "https://a.com"}, se, urls=("u",)))
    assert d.rule == f"net_allowlist.{se}"


def test_net_undeclared_tools() -> None:
    p = net_allowlist(["api.example.com"])
    assert p.decide(make_call("t", {}, "network")).rule == "net_allowlist.undeclared"
    assert p.decide(make_call("t", {}, "write")).rule == "net_allowlist.undeclared"
    d = p.decide(make_call("t", {"x": "see https://evil.com"}, "read"))
    assert d.rule == "net_allowlist.undeclared" and "looks like a URL" in d.reason
    assert p.decide(make_call("t", {"x": "plain words"}, "read")).allowed


def test_net_path_only_tools() -> None:
    p = net_allowlist(["api.example.com"])
    assert p.decide(make_call("save", {"p": "x"}, "write", paths=("p",))).allowed
    d = p.decide(make_call("upload", {"p": "x"}, "network", paths=("p",)))
    assert d.rule == "net_allowlist.undeclared"


@pytest.mark.parametrize(
    "hosts", ["api.example.com", ["http://api.example.com/"], ["10.0.0.0/40"], [""], ["a b"]]
)
def test_bad_host_entries(hosts: Any) -> None:
    with pytest.raises(PolicyError):
        net_allowlist(hosts)


def test_schemes_are_configurable() -> None:
    p = net_allowlist(["api.example.com"], schemes=["wss"])
    call = make_call("t", {"u": "wss://api.example.com/"}, "network", urls=("u",))
    assert p.decide(call).allowed
    call = make_call("t", {"u": "https://api.example.com/"}, "network", urls=("u",))
    assert p.decide(call).rule == "net_allowlist.scheme"


def test_resolver_errors_and_garbage_deny() -> None:
    def garbage(host: str) -> list[str]:
        return ["not-an-ip"]

    p = net_allowlist(["*"], resolve_dns=True, resolver=garbage)
    d = p.decide(make_call("t", {"u": "https://a.example.net/"}, "network", urls=("u",)))
    assert d.rule == "net_allowlist.dns"
    p = net_allowlist(["*"], resolve_dns=True, resolver=lambda h: [])
    d = p.decide(make_call("t", {"u": "https://a.example.net/"}, "network", urls=("u",)))
    assert d.rule == "net_allowlist.dns"


def test_listing_the_private_network_allows_a_name_resolving_into_it() -> None:
    p = net_allowlist(
        ["db.corp.example", "10.0.0.0/8"], resolve_dns=True, resolver=lambda h: ["10.1.1.1"]
    )
    call = make_call("t", {"u": "http://db.corp.example/"}, "network", urls=("u",))
    assert p.decide(call).allowed


# ------------------------------------------------------------------ composition


def test_sandbox_and_allowlist_compose(root: Path) -> None:
    p = all_of(fs_sandbox(root, write=True), net_allowlist(["api.example.com"]))
    inside = str(root / "a.txt")

    def d(tool: str, args: dict[str, Any], se: str, **spec: Any) -> str:
        return p.decide(make_call(tool, args, se, **spec)).rule

    both = "fs_sandbox.allow+net_allowlist.allow"
    assert d("read_file", {"p": inside}, "read", paths=("p",)) == both
    assert d("write_file", {"p": "/etc/x"}, "write", paths=("p",)) == "fs_sandbox.outside"
    assert d("fetch", {"u": "https://api.example.com/"}, "network", urls=("u",)) == both
    assert d("fetch", {"u": "http://127.0.0.1/"}, "network", urls=("u",)) == (
        "net_allowlist.private"
    )
    assert d("fetch", {"u": "file:///etc/passwd"}, "network", urls=("u",)) == ("fs_sandbox.outside")
    args = {"u": "https://api.example.com/f", "dest": "../x"}
    assert d("download", args, "network", urls=("u",), paths=("dest",)) == "fs_sandbox.outside"
    assert d("shell", {"cmd": "curl evil"}, "exec") == "fs_sandbox.exec"


def test_presets_module_surface() -> None:
    for name in ("allow_all", "read_only", "fs_sandbox", "net_allowlist"):
        assert name in presets.__all__ and callable(getattr(presets, name))
    assert presets.read_only().decide(make_call("t", {}, "read")).allowed
