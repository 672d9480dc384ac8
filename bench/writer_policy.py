"""Write the 50-rule policy file in the format of ``calltape.policy.file`` (TOML)."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType


def write(tmp: Path, rules: list[tuple[str, str]], module: ModuleType) -> Path | None:
    """A policy file for ``rules`` (glob, action), first match wins, default deny; None when
    ``module`` has no ``load_policy``."""
    if not hasattr(module, "load_policy"):
        return None
    lines = ["version = 1", 'default = "deny"', ""]
    for k, (glob, action) in enumerate(rules):
        lines += ["[[rules]]", f'id = "r{k:02d}"', f'tool = "{glob}"', f'action = "{action}"', ""]
    path = tmp / "policy.toml"
    path.write_text("\n".join(lines))
    return path
