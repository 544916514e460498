"""Print the config reference (every key, its default and its doc line) as a Markdown table.

The doc lines live in the modules of rewardloop/config/ as attribute docstrings; this reads them
with `ast` so the README's table is generated, not retyped: `python -m rewardloop.config.reference`
(print it) or `python -m rewardloop.config.reference --write README.md` (update it in place).
"""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

from rewardloop import config as config_module


def field_docs() -> dict[tuple[str, str], str]:
    """{(ClassName, field): doc line} from attribute docstrings in rewardloop/config/*.py."""
    docs = {}
    nodes = [
        node
        for path in sorted(Path(config_module.__file__).parent.glob("*.py"))
        for node in ast.parse(path.read_text()).body
    ]
    for node in nodes:
        if not isinstance(node, ast.ClassDef):
            continue
        body = node.body
        for stmt, nxt in zip(body, body[1:] + [None], strict=True):
            if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
                is_doc = isinstance(nxt, ast.Expr) and isinstance(
                    getattr(nxt, "value", None), ast.Constant
                )
                doc = nxt.value.value if is_doc else ""
                docs[(node.name, stmt.target.id)] = " ".join(doc.split())  # one table row each
    return docs


def rows() -> list[tuple[str, str, str]]:
    """(dotted key, default, doc line) of every leaf key; a nested section (rollout.autoscale)
    gives one row per key inside it."""
    docs = field_docs()
    out = []

    def walk(section, prefix: str) -> None:
        for f in dataclasses.fields(section):
            value = getattr(section, f.name)
            key = f"{prefix}{f.name}"
            if dataclasses.is_dataclass(value):
                walk(value, f"{key}.")
            else:
                out.append((key, repr(value), docs.get((type(section).__name__, f.name), "")))

    walk(config_module.RunConfig(), "")
    return out


def markdown() -> str:
    lines = ["| key | default | meaning |", "|---|---|---|"]
    lines += [f"| `{k}` | `{d}` | {doc} |" for k, d, doc in rows()]
    return "\n".join(lines)


def write_into(readme: Path) -> bool:
    """Replace the config table in a README in place; returns True when it changed."""
    text = readme.read_text()
    lines = text.splitlines()
    start = lines.index("| key | default | meaning |")
    end = start
    while end < len(lines) and lines[end].startswith("|"):
        end += 1
    new = "\n".join(lines[:start] + markdown().splitlines() + lines[end:]) + "\n"
    readme.write_text(new)
    return new != text


if __name__ == "__main__":
    import sys

    if sys.argv[1:2] == ["--write"]:
        changed = write_into(Path(sys.argv[2]))
        print("updated" if changed else "already current")
    else:
        print(markdown())
