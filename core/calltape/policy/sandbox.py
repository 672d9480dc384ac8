"""``fs_sandbox``: every path argument must resolve inside one root directory.

Which arguments are paths comes from the tool's declaration (``ToolSpec.paths``: from
``Annotated[str, calltape.Path]`` or ``register(..., paths=[...])``), never from the tool's or
the parameter's name, so renaming either cannot open the sandbox.

Each path value is read every way a tool might read it, and **every** reading must resolve
inside the root (``os.path.realpath``: ``..``, symlinks, ``//``):

* as given, and stripped of surrounding whitespace;
* percent-decoded (repeatedly: ``%252e`` too);
* with ``\\`` as a separator (Windows style);
* NFKC-normalized (fullwidth ``．．／``);
* ``~`` and ``~user`` expanded;
* a ``file://`` URL read as its path (a ``file`` URL naming another host is denied);
* a relative path against the working directory at decision time *and* against the root.

NUL bytes, empty paths, Windows drive and UNC paths (on POSIX) and non-string values are
denied. Decisions do no I/O except ``realpath`` itself.
"""

from __future__ import annotations

import os
import re
import stat
import unicodedata
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import unquote, urlsplit

from calltape.errors import PolicyError
from calltape.policy import Decision, ToolCall
from calltape.policy.net import _find_strings, carries_no_declared, stale_declaration

__all__ = ["FsSandbox", "PathProblem", "fs_sandbox", "looks_like_path", "path_readings"]

_WINDOWS = os.name == "nt"
_DRIVE = re.compile(r"[A-Za-z]:")
# %2f, %5c, %2e, %00, and the same encoded again (%252f, %25252f, ...)
_PATHLIKE = re.compile(r"[/\\\x00]|\A\s*[~.]|%(?:25)*(?:2[fe]|5c|00)|\A\s*file:", re.IGNORECASE)
_MISSING = object()


class PathProblem(ValueError):
    """A path value that cannot be read safely (it is denied)."""


def looks_like_path(text: str) -> bool:
    """True if ``text`` could name a file other than a bare name in the working directory."""
    if not text.isascii():
        text = unicodedata.normalize("NFKC", text)
    return _PATHLIKE.search(text) is not None


def _decode_all(text: str) -> str:
    for _ in range(5):
        decoded = unquote(text)
        if decoded == text:
            return text
        text = decoded
    raise PathProblem("is percent-encoded too many times")


def _variants(f: str) -> list[str]:
    """The one-step rewrites a tool (or a library under it) might apply to a path."""
    out = [f.strip()]
    if "%" in f:
        out.append(_decode_all(f))
    if not f.isascii():
        out.append(unicodedata.normalize("NFKC", f))
    if "\\" in f:
        out.append(f.replace("\\", "/"))
    if f[:5].lower() == "file:":
        parts = urlsplit(f)
        if parts.netloc not in ("", "localhost"):
            raise PathProblem(f"is a file URL on another host ({parts.netloc!r})")
        out.append(_decode_all(parts.path))
    if f.startswith("~"):
        out.append(os.path.expanduser(f))
    return out


def path_readings(value: str) -> set[str]:
    """Every way a tool might read ``value`` as a path, before resolution.

    The rewrites (strip, percent-decode, NFKC, ``\\`` to ``/``, ``file:`` URL to path, ``~``
    expansion) are applied in every order until nothing new appears, so layered encodings
    (a percent-encoded fullwidth dot, a file URL with encoded backslashes) are all seen.

    Raises:
        PathProblem: a NUL byte, an empty path, a remote ``file`` URL, a Windows drive or UNC
            path, or more layers of encoding than any honest path has.
    """
    forms = {value}
    frontier = [value]
    for _ in range(8):
        fresh = []
        for f in frontier:
            if "\x00" in f:
                raise PathProblem("contains a NUL byte" if f is value else "hides a NUL byte")
            if not f.strip():
                raise PathProblem("is empty" if f is value else "is empty once decoded")
            if not _WINDOWS and (_DRIVE.match(f) or f.startswith("\\\\")):
                raise PathProblem("is a Windows drive or UNC path")
            for g in _variants(f):
                if g not in forms:
                    forms.add(g)
                    fresh.append(g)
        if not fresh:
            return forms
        frontier = fresh
    raise PathProblem("has more layers of encoding than a path needs")


def _join_real(path: str, rest: str, seen: dict[str, str | None]) -> tuple[str, bool]:
    """``posixpath._joinrealpath`` (non-strict) of Python 3.11: resolve ``rest`` below the
    already-real ``path``, following symlinks (loops are left as they are)."""
    if rest.startswith("/"):
        rest = rest[1:]
        path = "/"
    while rest:
        name, _, rest = rest.partition("/")
        if not name or name == ".":
            continue
        if name == "..":
            if path:
                path, name = os.path.split(path)
                if name == "..":
                    path = os.path.join(path, "..", "..")
            else:
                path = ".."
            continue
        newpath = os.path.join(path, name)
        try:
            is_link = stat.S_ISLNK(os.lstat(newpath).st_mode)
        except OSError:
            is_link = False
        if not is_link:
            path = newpath
            continue
        if newpath in seen:
            known = seen[newpath]
            if known is not None:
                path = known
                continue
            return os.path.join(newpath, rest), False  # a symlink loop
        seen[newpath] = None
        path, ok = _join_real(path, os.readlink(newpath), seen)
        if not ok:
            return os.path.join(path, rest), False
        seen[newpath] = path
    return path, True


class FsSandbox:
    """The policy behind :func:`fs_sandbox`. Rule ids start with ``fs_sandbox.``."""

    __slots__ = ("_allow", "_prefix", "root", "write")

    def __init__(self, root: str | os.PathLike[str], *, write: bool = False) -> None:
        real = os.path.realpath(os.path.expanduser(os.fspath(root)))
        if not os.path.isdir(real):
            raise PolicyError(
                f"fs_sandbox root {os.fspath(root)!r} is not a directory ({real}); "
                "create it or fix the path"
            )
        self.root = real
        self.write = write
        self._prefix = real if real.endswith(os.sep) else real + os.sep
        mode = "read and write" if write else "read only"
        self._allow = Decision.allow(
            "fs_sandbox.allow", f"every path argument is inside {real} ({mode})"
        )

    def __repr__(self) -> str:
        return f"fs_sandbox({self.root!r}, write={self.write})"

    def realpath(self, path: str) -> str:
        """``os.path.realpath(path)`` for an absolute ``path``, without re-resolving the root.

        The root is real (resolved at construction), so a path spelled below it is resolved
        from there: one ``lstat`` per component below the root instead of one per component.
        Nothing inside the sandbox can replace the root's own ancestors.
        """
        if not _WINDOWS and path.startswith(self._prefix):
            rest = path[len(self._prefix) :].lstrip("/")
            return os.path.normpath(_join_real(self.root, rest, {})[0])
        return os.path.realpath(path)

    def inside(self, resolved: str) -> bool:
        return resolved == self.root or resolved.startswith(self._prefix)

    def resolve(self, value: Any, *, root_relative: bool = True) -> list[str]:
        """Every real path ``value`` may name (see the module docstring).

        Args:
            value: The argument.
            root_relative: Also read a relative path against the root (the sandbox does; an
                ``under`` condition reads it against the working directory only).

        Raises:
            PathProblem: the value cannot be read safely.
        """
        if isinstance(value, os.PathLike):
            value = os.fspath(value)
        if not isinstance(value, str):
            raise PathProblem(f"is a {type(value).__name__}, not a path string")
        cwd: str | None = None
        out = []
        for form in path_readings(value):
            if os.path.isabs(form):
                out.append(self.realpath(form))
                continue
            if cwd is None:
                cwd = os.getcwd()
            out.append(self.realpath(os.path.join(cwd, form)))
            if root_relative and cwd != self.root:
                out.append(self.realpath(os.path.join(self.root, form)))
        return out

    def problem(self, value: Any) -> str | None:
        """Why ``value`` is not a path inside the root (None if every reading is)."""
        try:
            resolved = self.resolve(value)
        except PathProblem as exc:
            return f"{value!r} {exc} (fail closed)"
        for real in resolved:
            if not self.inside(real):
                return f"{value!r} resolves to {real}, outside the sandbox root {self.root}"
        return None

    def decide(self, call: ToolCall) -> Decision:
        spec = call.spec
        se = call.side_effect
        if se not in ("read", "write", "network"):
            return Decision(
                "deny",
                f"fs_sandbox.{se}",
                f"tool {call.tool!r} has side effect {se!r}, which fs_sandbox cannot confine "
                "(fail closed); declare what it does, or allow it with a rule",
            )
        if not spec.paths and not spec.urls:
            if se != "read":
                return Decision(
                    "deny",
                    "fs_sandbox.undeclared",
                    f"tool {call.tool!r} ({se}) declares no path arguments, so fs_sandbox "
                    "cannot check it (fail closed); mark them with Annotated[str, "
                    "calltape.Path] or register(..., paths=[...])",
                )
            found = _find_strings(call.args, looks_like_path)
            if found is not None:
                where, text = found
                return Decision(
                    "deny",
                    "fs_sandbox.undeclared",
                    f"read tool {call.tool!r} declares no path arguments but {where} looks "
                    f"like a path ({text!r}); mark it with Annotated[str, calltape.Path] or "
                    "paths=[...]",
                )
            return self._allow
        if se == "write" and not self.write:
            return Decision(
                "deny",
                "fs_sandbox.write",
                f"tool {call.tool!r} writes, and this sandbox is read-only (write=False)",
            )
        args = call.args
        stale = carries_no_declared(spec, args)
        if stale is not None:
            decision = stale_declaration(
                call, stale, "fs_sandbox.undeclared", "path", looks_like_path
            )
            return decision or self._allow
        for name in spec.paths:
            bad = self._check_arg(args, name, files_only=False)
            if bad is not None:
                return Decision("deny", "fs_sandbox.outside", f"argument {name!r}: {bad}")
        for name in spec.urls:  # a file:// URL is a path too
            bad = self._check_arg(args, name, files_only=True)
            if bad is not None:
                return Decision("deny", "fs_sandbox.outside", f"argument {name!r}: {bad}")
        return self._allow

    def _check_arg(self, args: Mapping[str, Any], name: str, *, files_only: bool) -> str | None:
        value = args.get(name, _MISSING)
        if value is _MISSING or value is None:
            return None
        values: Iterable[Any] = value if isinstance(value, list | tuple) else (value,)
        for v in values:
            if files_only and not (isinstance(v, str) and v.lstrip()[:5].lower() == "file:"):
                continue
            bad = self.problem(v)
            if bad is not None:
                return bad
        return None


def fs_sandbox(root: str | os.PathLike[str], write: bool = False) -> FsSandbox:
    """Confine every declared path argument to ``root``.

    Tools whose side effect is ``exec`` or ``unknown`` are denied. A tool that declares no path
    (or URL) arguments is denied unless it is a ``read`` tool none of whose string arguments
    looks like a path (a separator, a leading ``~`` or ``.``, a drive letter, ``file:``, an
    encoded separator or dot).

    Args:
        root: The directory the paths must stay in (``~`` expanded, symlinks resolved).
        write: Allow ``write`` tools (inside the root). When False they are denied everywhere.

    Raises:
        PolicyError: ``root`` is not an existing directory.
    """
    return FsSandbox(root, write=write)
