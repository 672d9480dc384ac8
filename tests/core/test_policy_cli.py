"""``calltape policy check`` and ``calltape policy explain``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import calltape.policy.cli
from calltape.cli import _EXTRA_COMMANDS, main

DATA = Path(__file__).parent / "data" / "policies"
GOOD = DATA / "good" / "agent.toml"


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_registered_once_even_after_a_reload() -> None:
    import importlib

    importlib.reload(calltape.policy.cli)
    assert sum(f.__module__ == "calltape.policy.cli" for f in _EXTRA_COMMANDS) == 1


def test_check_ok(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "policy", "check", str(GOOD))
    assert code == 0 and err == ""
    assert out.startswith("ok: 6 rules (") and "2 presets" in out and "default deny" in out
    code, out, _ = run(capsys, "policy", "check", str(DATA / "good" / "minimal.toml"))
    assert code == 0 and out.startswith("ok: 1 rule (")


def test_check_missing_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, err = run(capsys, "policy", "check", str(tmp_path / "nope.toml"))
    assert code == 2 and out == "" and "nope.toml: cannot read" in err
    assert err.count("\n") == 1


def test_explain_allow(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys,
        "policy",
        "explain",
        str(GOOD),
        "pay",
        '{"amount": 20, "currency": "EUR"}',
        "--side-effect",
        "write",
    )
    assert code == 0
    assert "decision: allow" in out and "rule:     small-payments" in out
    assert f"{GOOD}:32 rule 'small-payments'" in out


def test_explain_deny_names_the_preset(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys,
        "policy",
        "explain",
        str(GOOD),
        "read_file",
        '{"path": "workspace/../../../../etc/passwd"}',
        "--side-effect",
        "read",
        "--path",
        "path",
    )
    assert code == 1
    assert "decision: deny" in out and "fs_sandbox.outside" in out
    assert "[[presets]] use = 'fs_sandbox'" in out and "/etc/passwd" in out


def test_explain_default_side_effect_is_unknown(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "policy", "explain", str(GOOD), "anything", "{}")
    assert code == 1 and "fs_sandbox.unknown" in out


def test_explain_url_flag(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys,
        "policy",
        "explain",
        str(GOOD),
        "fetch",
        '{"url": "http://0x7f.1/"}',
        "--side-effect",
        "network",
        "--url",
        "url",
    )
    assert code == 1 and "net_allowlist.private" in out and "127.0.0.1" in out


@pytest.mark.parametrize(
    ("args_json", "fragment"),
    [("{not json", "ARGS_JSON is not valid JSON"), ("[1, 2]", "must be a JSON object")],
)
def test_explain_bad_args(
    capsys: pytest.CaptureFixture[str], args_json: str, fragment: str
) -> None:
    code, out, err = run(capsys, "policy", "explain", str(GOOD), "t", args_json)
    assert code == 2 and out == "" and fragment in err and err.count("\n") == 1


def test_explain_bad_side_effect_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["policy", "explain", str(GOOD), "t", "{}", "--side-effect", "writes"])
    assert info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_wired_into_python_m_calltape() -> None:
    """Once calltape.cli imports calltape.policy.cli, ``calltape policy`` works as is."""
    p = subprocess.run(
        [sys.executable, "-m", "calltape", "policy", "check", str(GOOD)],
        capture_output=True,
        text=True,
        check=False,
    )
    if p.returncode == 2 and "invalid choice: 'policy'" in p.stderr:
        pytest.skip("calltape.cli does not import calltape.policy.cli yet (the lead wires it)")
    assert p.returncode == 0 and p.stdout.startswith("ok: 6 rules"), p.stderr
