"""Policy files: the format, the evaluation order, and errors with file and line."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from calltape import PolicyError, Session, ToolSpec
from calltape.policy import ToolCall
from calltape.policy.file import PolicyFileError, load_policy, parse_policy
from calltape.trace import CallEnd, read_trace

DATA = Path(__file__).parent / "data" / "policies"
BAD = sorted((DATA / "bad").glob("*.toml"))
GOOD = DATA / "good" / "agent.toml"


def make_call(tool: str, args: dict[str, Any], side_effect: str, **spec: Any) -> ToolCall:
    return ToolCall(
        tool, args, side_effect, ToolSpec(tool, side_effect=side_effect, **spec), "", ""
    )


def expectation(path: Path) -> tuple[int, str]:
    head = path.read_text().splitlines()[:2]
    line = int(head[0].removeprefix("# expect-line:").strip())
    fragment = head[1].removeprefix("# expect:").strip()
    return line, fragment


# ------------------------------------------------------------------ the bad corpus


def test_bad_corpus_is_big_enough() -> None:
    assert len(BAD) >= 20


@pytest.mark.parametrize("path", BAD, ids=lambda p: p.stem)
def test_bad_file_names_file_line_and_problem(path: Path) -> None:
    line, fragment = expectation(path)
    with pytest.raises(PolicyFileError) as info:
        load_policy(path)
    err = info.value
    assert isinstance(err, PolicyError)
    assert err.line == line, str(err)
    assert str(err).startswith(f"{path}:{line}: "), str(err)
    assert fragment in str(err), str(err)
    assert "\n" not in str(err)


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    # the same entry point as `calltape`, with the policy commands registered even before
    # calltape.cli imports calltape.policy.cli itself
    code = "import sys, calltape.policy.cli; from calltape.cli import main; sys.exit(main())"
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=cwd, check=False
    )


@pytest.mark.parametrize("path", BAD, ids=lambda p: p.stem)
def test_bad_file_through_the_cli(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``calltape policy check``: exit 2, one line naming file and line, never a traceback."""
    import calltape.policy.cli  # noqa: F401  (registers the command)
    from calltape.cli import main

    line, fragment = expectation(path)
    assert main(["policy", "check", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "Traceback" not in err
    assert err.count("\n") == 1, err
    assert err.startswith(f"calltape: error: {path}:{line}: ") and fragment in err, err


SUBPROCESS_SAMPLE = [
    "syntax_unterminated_string",
    "unknown_rule_key",
    "unknown_preset",
    "glob_unclosed",
    "action_wrong_type",
    "duplicate_rule_id",
]


@pytest.mark.parametrize("name", SUBPROCESS_SAMPLE)
def test_bad_file_through_the_cli_in_a_subprocess(name: str) -> None:
    path = DATA / "bad" / f"{name}.toml"
    line, fragment = expectation(path)
    p = cli("policy", "check", str(path))
    assert p.returncode == 2, (p.stdout, p.stderr)
    assert p.stdout == "" and "Traceback" not in p.stderr
    lines = p.stderr.splitlines()
    assert len(lines) == 1, p.stderr
    assert lines[0].startswith(f"calltape: error: {path}:{line}: ") and fragment in lines[0]


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (None, "cannot read"),
        (b"\x00\xff\xfe binary", "not UTF-8 text"),
        (b"", None),
    ],
)
def test_unreadable_files(tmp_path: Path, content: bytes | None, fragment: str | None) -> None:
    path = tmp_path / "p.toml"
    if content is not None:
        path.write_bytes(content)
    if fragment is None:  # an empty file is a valid policy: deny everything
        policy = load_policy(path)
        assert policy.decide(make_call("t", {}, "read")).rule == "default"
        return
    with pytest.raises(PolicyFileError, match=fragment):
        load_policy(path)
    p = cli("policy", "check", str(path))
    assert p.returncode == 2 and "Traceback" not in p.stderr and fragment in p.stderr


def test_a_byte_order_mark_is_fine(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_bytes(b'\xef\xbb\xbf[[rules]]\nid = "a"\naction = "allow"\n')
    assert load_policy(path).decide(make_call("t", {}, "read")).rule == "a"


def test_a_directory_is_not_a_policy(tmp_path: Path) -> None:
    with pytest.raises(PolicyFileError, match="is a directory"):
        load_policy(tmp_path)


def test_every_problem_is_kept_first_first() -> None:
    text = 'defualt = "deny"\n[[rules]]\nid = "a"\naction = "alow"\n'
    with pytest.raises(PolicyFileError) as info:
        parse_policy(text, "p.toml")
    assert [line for line, _ in info.value.problems] == [1, 4]
    assert str(info.value).endswith("(and 1 more)")


def test_line_of_a_key_in_nested_and_multiline_values() -> None:
    text = (
        "version = 1\n"
        '[[rules]]\nid = "a"\naction = "allow"\n'
        '[[rules]]\nid = "b"\naction = "allow"\n'
        "when = [\n"
        '  { arg = "x", eq = 1 },\n'
        '  """ not a condition """,\n'
        "]\n"
    )
    with pytest.raises(PolicyFileError) as info:
        parse_policy(text, "p.toml")
    assert info.value.line == 10, str(info.value)
    assert "rules[1].when[1]" in str(info.value)


def test_multiline_strings_do_not_confuse_lines() -> None:
    text = 'default_reason = """\n[[rules]]\nacton = 1\n"""\nversion = 1\nbogus = 2\n'
    with pytest.raises(PolicyFileError) as info:
        parse_policy(text, "p.toml")
    assert info.value.line == 6 and "unknown key 'bogus'" in str(info.value)


def test_quoted_and_dotted_keys() -> None:
    text = '[[rules]]\n"id" = "a"\naction = "allow"\nwhen.arg = "x"\n'
    with pytest.raises(PolicyFileError) as info:
        parse_policy(text, "p.toml")
    assert info.value.line == 4, str(info.value)


# ------------------------------------------------------------------ the good example


def test_the_documented_example_loads_and_decides(tmp_path: Path) -> None:
    policy = load_policy(GOOD)
    ws = GOOD.parent / "workspace"

    def decide(tool: str, args: dict[str, Any], se: str, **spec: Any) -> tuple[str, str]:
        d = policy.decide(make_call(tool, args, se, **spec))
        return d.action, d.rule

    inside = str(ws / "notes.txt")
    assert decide("read_file", {"path": inside}, "read", paths=("path",)) == ("allow", "reads")
    assert decide("read_file", {"path": "/etc/passwd"}, "read", paths=("path",)) == (
        "deny",
        "fs_sandbox.outside",
    )
    assert decide("read_file", {"path": str(ws / "secrets" / "k")}, "read", paths=("path",)) == (
        "deny",
        "no-secrets",
    )
    assert decide("write_file", {"path": inside}, "write", paths=("path",)) == ("allow", "writes")
    assert decide("delete_file", {"path": inside}, "write", paths=("path",)) == (
        "deny",
        "default",
    )
    assert decide("pay", {"amount": 30, "currency": "EUR"}, "write") == ("allow", "small-payments")
    assert decide("pay", {"amount": 300, "currency": "EUR"}, "write") == ("ask", "payments")
    assert decide("pay", {"amount": 30, "currency": "USD"}, "write") == ("ask", "payments")
    assert decide("pay", {"amount": "30", "currency": "EUR"}, "write") == (
        "deny",
        "small-payments",
    )
    url = "https://v2.docs.example.com/x"
    assert decide("fetch", {"url": url}, "network", urls=("url",)) == ("allow", "fetch-docs")
    assert decide("fetch", {"url": "https://api.example.com/"}, "network", urls=("url",)) == (
        "deny",
        "default",
    )
    assert decide("fetch", {"url": "http://169.254.169.254/"}, "network", urls=("url",)) == (
        "deny",
        "net_allowlist.private",
    )
    assert decide("shell", {"cmd": "ls"}, "exec") == ("deny", "fs_sandbox.exec")
    assert decide("search_docs", {"q": "refunds"}, "read") == ("allow", "reads")
    d = policy.decide(make_call("delete_file", {"path": inside}, "write", paths=("path",)))
    assert d.reason == "not on the support agent's list"


def test_the_example_in_the_docs_is_the_tested_file() -> None:
    docs = (Path(__file__).parents[2] / "docs" / "policy.md").read_text()
    block = re.search(r"```toml\n(# calltape policy for the support agent.*?)```", docs, re.S)
    assert block is not None
    assert block.group(1) == GOOD.read_text()


def test_the_code_example_in_the_docs_runs(tmp_path: Path, monkeypatch: Any) -> None:
    docs = (Path(__file__).parents[2] / "docs" / "policy.md").read_text()
    block = next(b for b in re.findall(r"```python\n(.*?)```", docs, re.S) if "with_timeout(" in b)
    (tmp_path / "workspace").mkdir()
    monkeypatch.chdir(tmp_path)
    ns: dict[str, Any] = {}
    exec(block, ns)
    policy = ns["policy"]
    assert policy.decide(make_call("pay", {"amount": 5}, "write")).rule == "small-payments"
    assert policy.decide(make_call("pay", {"amount": 500}, "write")).action == "ask"
    assert policy.decide(make_call("paid", {"amount": 5}, "write")).rule == "fs_sandbox.undeclared"
    call = make_call("fetch", {"u": "https://api.example.com/"}, "network", urls=("u",))
    assert policy.decide(call).rule == "fs_sandbox.allow+net_allowlist.allow"


# ------------------------------------------------------------------ evaluation order


def write_policy(tmp_path: Path, text: str) -> Path:
    (tmp_path / "ws").mkdir(exist_ok=True)
    path = tmp_path / "p.toml"
    path.write_text(text)
    return path


def test_presets_are_limits_no_rule_lifts(tmp_path: Path) -> None:
    policy = load_policy(
        write_policy(
            tmp_path,
            '[[presets]]\nuse = "read_only"\n\n[[rules]]\nid = "all"\naction = "allow"\n',
        )
    )
    assert policy.decide(make_call("w", {}, "write")).rule == "read_only.write"
    assert policy.decide(make_call("r", {}, "read")).rule == "all"


def test_first_matching_rule_wins_then_default(tmp_path: Path) -> None:
    text = (
        'default = "ask"\n'
        '[[rules]]\nid = "first"\ntool = "t*"\naction = "deny"\n'
        '[[rules]]\nid = "second"\ntool = "t1"\naction = "allow"\n'
        '[[rules]]\nid = "exact"\ntool = "u"\naction = "allow"\n'
    )
    policy = load_policy(write_policy(tmp_path, text))
    assert policy.decide(make_call("t1", {}, "read")).rule == "first"
    assert policy.decide(make_call("u", {}, "read")).rule == "exact"
    d = policy.decide(make_call("v", {}, "read"))
    assert (d.action, d.rule) == ("ask", "default")


def test_skip_tools_exempts_exact_names_only(tmp_path: Path) -> None:
    text = (
        '[[presets]]\nuse = "fs_sandbox"\nroot = "ws"\nskip_tools = ["pay"]\n'
        '[[rules]]\nid = "all"\naction = "allow"\n'
    )
    policy = load_policy(write_policy(tmp_path, text))
    assert policy.decide(make_call("pay", {}, "write")).rule == "all"
    assert policy.decide(make_call("pay2", {}, "write")).rule == "fs_sandbox.undeclared"
    assert policy.decide(make_call("Pay", {}, "write")).rule == "fs_sandbox.undeclared"


def test_relative_root_is_relative_to_the_file(tmp_path: Path, monkeypatch: Any) -> None:
    path = write_policy(tmp_path, '[[presets]]\nuse = "fs_sandbox"\nroot = "ws"\n')
    monkeypatch.chdir("/")
    policy = load_policy(path)
    guard = policy.guards[0][0]
    assert guard.root == str((tmp_path / "ws").resolve())  # type: ignore[attr-defined]


def test_explain_names_the_source_line() -> None:
    policy = load_policy(GOOD)
    ex = policy.explain(make_call("pay", {"amount": 500, "currency": "EUR"}, "write"))
    assert ex.decision.rule == "payments" and ex.source == f"{GOOD}:46 rule 'payments'"
    ex = policy.explain(make_call("x", {}, "exec"))
    assert ex.source == f"{GOOD}:7 [[presets]] use = 'fs_sandbox'"
    ex = policy.explain(make_call("zz", {}, "read"))
    assert ex.decision.rule == "reads"


def test_in_a_session_the_trace_names_the_rule(tmp_path: Path) -> None:
    policy = load_policy(GOOD)
    trace = tmp_path / "t.jsonl"
    ran: list[float] = []
    with Session(trace, policy=policy) as s:
        s.register("pay", lambda amount, currency: ran.append(amount), side_effect="write")
        ok = s.call("pay", amount=20, currency="EUR")
        big = s.call("pay", amount=2000, currency="EUR")
    assert ran == [20]
    assert ok.status == "ok" and ok.decision.rule == "small-payments"
    assert big.status == "blocked" and big.decision.rule == "payments"
    ends = [r for r in read_trace(trace).records if isinstance(r, CallEnd)]
    assert [e.decision.rule for e in ends] == ["small-payments", "payments"]
    assert "need a human" in ends[1].decision.reason


# ------------------------------------------------------------------ Session(policy=path)


@pytest.mark.parametrize("as_str", [True, False])
def test_session_takes_the_path_of_a_policy_file(tmp_path: Path, as_str: bool) -> None:
    path = write_policy(
        tmp_path,
        'version = 1\n[[rules]]\nid = "reads"\nside_effect = "read"\naction = "allow"\n',
    )
    ran: list[str] = []
    with Session(tmp_path / "t.jsonl", policy=str(path) if as_str else path) as session:
        session.register("look", lambda: ran.append("look"), side_effect="read")
        session.register("touch", lambda: ran.append("touch"), side_effect="write")
        assert session.call("look").status == "ok"
        blocked = session.call("touch")
    assert blocked.status == "blocked"
    assert blocked.decision.rule == "default"
    assert ran == ["look"]


def test_session_with_a_bad_policy_file_fails_before_the_trace_exists(tmp_path: Path) -> None:
    path = write_policy(tmp_path, 'version = 1\n[[rule]]\nid = "x"\naction = "allow"\n')
    with pytest.raises(PolicyFileError, match=r"p\.toml:2: .*unknown key 'rule'"):
        Session(tmp_path / "t.jsonl", policy=path)
    assert not (tmp_path / "t.jsonl").exists()


def test_session_refuses_what_is_neither_a_policy_nor_a_path(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="decide\\(call\\) method\\) or the path of a policy file"):
        Session(tmp_path / "t.jsonl", policy=42)  # type: ignore[arg-type]
