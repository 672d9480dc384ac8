"""``calltape policy check FILE`` and ``calltape policy explain FILE TOOL ARGS_JSON``.

Importing this module registers the ``policy`` command in :mod:`calltape.cli`.
"""

from __future__ import annotations

import argparse
import json
from typing import Any, TextIO

from calltape import cli as _cli
from calltape.errors import PolicyError
from calltape.policy import SIDE_EFFECTS, ToolCall

__all__ = ["cmd_check", "cmd_explain", "register"]


def cmd_check(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from calltape.policy.file import load_policy

    policy = load_policy(args.file)
    n = len(policy.rules)
    presets = f", {len(policy.guards)} preset{'s' if len(policy.guards) != 1 else ''}"
    out.write(
        f"ok: {n} rule{'s' if n != 1 else ''} ({args.file}{presets if policy.guards else ''}, "
        f"default {policy.default.action})\n"
    )
    return _cli.EXIT_OK


def cmd_explain(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from calltape.fingerprint import fingerprint_args
    from calltape.policy.file import load_policy
    from calltape.session import ToolSpec

    policy = load_policy(args.file)
    try:
        call_args: Any = json.loads(args.args_json)
    except json.JSONDecodeError as exc:
        raise PolicyError(f"ARGS_JSON is not valid JSON ({exc}): {args.args_json!r}") from None
    if not isinstance(call_args, dict):
        raise PolicyError(f"ARGS_JSON must be a JSON object, got {args.args_json!r}")
    spec = ToolSpec(
        args.tool,
        side_effect=args.side_effect,
        paths=tuple(args.path or ()),
        urls=tuple(args.url or ()),
    )
    fp, _ = fingerprint_args(args.tool, call_args)
    call = ToolCall(args.tool, call_args, args.side_effect, spec, fp, "explain")
    ex = policy.explain(call)
    d = ex.decision
    out.write(f"decision: {d.action}\n")
    out.write(f"rule:     {d.rule}\n")
    out.write(f"from:     {ex.source}\n")
    out.write(f"reason:   {d.reason}\n")
    return _cli.EXIT_OK if d.allowed else _cli.EXIT_DIFFERENT


def register(sub: Any) -> None:
    """Add ``policy check`` and ``policy explain`` to the ``calltape`` parser."""
    p = sub.add_parser("policy", help="check a policy file, or explain a decision")
    psub = p.add_subparsers(dest="policy_command", metavar="SUBCOMMAND")
    psub.required = True

    s = psub.add_parser("check", help="validate a policy file (exit 0 ok, 2 with the error)")
    s.add_argument("file")
    s.set_defaults(func=cmd_check)

    s = psub.add_parser(
        "explain", help="the decision for one call, and the rule that made it (exit 0 allow)"
    )
    s.add_argument("file")
    s.add_argument("tool")
    s.add_argument("args_json", metavar="ARGS_JSON", help='the arguments, e.g. \'{"path": "a"}\'')
    s.add_argument(
        "--side-effect",
        default="unknown",
        choices=SIDE_EFFECTS,
        help="the tool's declared side effect (default: unknown)",
    )
    s.add_argument(
        "--path", action="append", metavar="ARG", help="declare ARG a path argument (repeatable)"
    )
    s.add_argument(
        "--url", action="append", metavar="ARG", help="declare ARG a URL argument (repeatable)"
    )
    s.set_defaults(func=cmd_explain)


# once, even if this module is reloaded (a second "policy" subparser would be an argparse error)
if not any(getattr(f, "__module__", None) == __name__ for f in _cli._EXTRA_COMMANDS):
    _cli._EXTRA_COMMANDS.append(register)
