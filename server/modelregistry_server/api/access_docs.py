"""The README's access tables, rendered from the tables the server enforces.

A test compares the README with `render()`, so the documentation cannot
drift from the code: change a role or a rule and the test says which
lines to paste.
"""

from __future__ import annotations

from ..domain.permissions import PERMISSIONS, ROLES, Level, Permission, Role
from .access_rules import RULES, Target, When, short_method

_LEVEL = {Level.ROOT: "registry", Level.MODEL: "model", Level.ALIAS: "alias"}


def _role_cell(role: Role, permission: Permission) -> str:
    return "x" if permission in ROLES[role].permissions else ""


def roles_table() -> str:
    roles = list(Role)
    header = "| permission | checked on | " + " | ".join(
        r.value.removeprefix("roles/") for r in roles
    )
    lines = [header + " |", "|" + " --- |" * (len(roles) + 2)]
    for permission, info in PERMISSIONS.items():
        cells = " | ".join(_role_cell(role, permission) for role in roles)
        lines.append(f"| `{permission}` | {_LEVEL[info.level]} | {cells} |")
    return "\n".join(lines) + "\n"


def _where(target: Target, field: str) -> str:
    return target.value.replace("{field}", field)


def rules_table() -> str:
    lines = ["| RPC | permission | on |", "| --- | --- | --- |"]
    for method, checks in RULES.items():
        for check in checks:
            permission = f"`{check.permission}`" if check.permission else "none"
            if check.root_permission is not None:
                permission += f" (`{check.root_permission}` on `registry`)"
            where = _where(check.target, check.field)
            if check.when != When.ALWAYS:
                where += f"; only if {check.when.value}"
            lines.append(f"| {short_method(method)} | {permission} | {where} |")
    return "\n".join(lines) + "\n"


def render() -> str:
    return roles_table() + "\n" + rules_table()
