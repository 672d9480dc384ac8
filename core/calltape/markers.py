"""Markers that declare which arguments are paths or URLs, for the sandbox presets.

Use them in a tool's signature::

    from typing import Annotated
    import calltape

    def read_file(path: Annotated[str, calltape.Path]) -> str: ...
    def fetch(url: Annotated[str, calltape.URL]) -> str: ...

or at registration: ``session.register(fn, paths=["path"], urls=["url"])``. Which arguments are
paths never depends on the tool's or the parameter's name alone.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from typing import Any

__all__ = ["URL", "ArgKind", "Path", "declared_args"]


class ArgKind:
    """A marker put in ``Annotated[...]`` metadata."""

    __slots__ = ("kind",)

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def __repr__(self) -> str:
        return f"calltape.{'Path' if self.kind == 'path' else 'URL'}"


#: Marks a parameter whose value is a filesystem path (or a list of them).
Path = ArgKind("path")
#: Marks a parameter whose value is a URL or host name (or a list of them).
URL = ArgKind("url")


def declared_args(fn: Callable[..., Any]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The parameter names ``fn`` marks as paths and as URLs in its annotations."""
    try:
        hints = typing.get_type_hints(fn, include_extras=True)
    except Exception:  # unresolvable annotations: fall back to the raw ones
        try:
            hints = dict(inspect.get_annotations(fn))
        except Exception:
            return (), ()
    paths: list[str] = []
    urls: list[str] = []
    for name, hint in hints.items():
        if name == "return":
            continue
        for meta in _metadata(hint):
            if meta is Path:
                paths.append(name)
            elif meta is URL:
                urls.append(name)
    return tuple(paths), tuple(urls)


def _metadata(hint: Any) -> list[Any]:
    out: list[Any] = []
    if typing.get_origin(hint) is typing.Annotated:
        out.extend(getattr(hint, "__metadata__", ()))
    for arg in typing.get_args(hint):  # Optional[Annotated[...]], list[Annotated[...]]
        if arg is not hint:
            out.extend(_metadata(arg))
    return out
