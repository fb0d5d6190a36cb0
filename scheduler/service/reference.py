"""Reference tables for the security and audit documents, generated from the route table.

``docs/security.md`` and ``docs/audit-fields.md`` carry these tables between
``<!-- generated:NAME -->`` and ``<!-- /generated -->`` markers; a test fails
when a document and the code disagree. Rewrite them with::

    python -m scheduler.service.reference docs/security.md docs/audit-fields.md
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from pathlib import Path

from scheduler.service.auth import ROLE_PERMISSIONS, Permission
from scheduler.service.routes import ROUTES


def _holders(p: Permission) -> list[str]:
    return sorted(role for role, perms in ROLE_PERMISSIONS.items() if p in perms)


def permissions_table() -> str:
    """Every endpoint: the permission it needs, and the roles that hold it."""
    lines = [
        "| Operation | Method and path | Permission | Roles |",
        "|---|---|---|---|",
    ]
    for r in ROUTES:
        if r.permission is None:
            perm, roles = "none (public)", "anyone, without a token"
        else:
            perm, roles = f"`{r.permission.value}`", ", ".join(_holders(r.permission))
        lines.append(f"| `{r.name}` | `{r.method} {r.path}` | {perm} | {roles} |")
    return "\n".join(lines) + "\n"


def roles_table() -> str:
    """Every role and what it may do."""
    lines = ["| Role | Permissions |", "|---|---|"]
    for role, perms in ROLE_PERMISSIONS.items():
        names = ", ".join(f"`{p.value}`" for p in Permission if p in perms)
        lines.append(f"| `{role}` | {names} |")
    return "\n".join(lines) + "\n"


def operations_table() -> str:
    """The audit operations of the API: one per endpoint that is audited."""
    lines = ["| Operation | Request | Object |", "|---|---|---|"]
    for r in ROUTES:
        if r.audited:
            lines.append(f"| `{r.name}` | `{r.method} {r.path}` | `{r.path}` |")
    return "\n".join(lines) + "\n"


SECTIONS: dict[str, Callable[[], str]] = {
    "permissions": permissions_table,
    "roles": roles_table,
    "operations": operations_table,
}
_SECTION = re.compile(r"(<!-- generated:(\w+) -->\n)(.*?)(<!-- /generated -->)", re.S)


def render(text: str) -> str:
    """``text`` with every generated section replaced by what the code says now."""

    def fill(m: re.Match[str]) -> str:
        return m[1] + SECTIONS[m[2]]() + m[4]

    return _SECTION.sub(fill, text)


def sections(text: str) -> list[str]:
    return [m[2] for m in _SECTION.finditer(text)]


def main(paths: list[str]) -> int:
    for p in map(Path, paths):
        p.write_text(render(p.read_text()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
