"""Fail when a module of the core (core/, imported as actlab) imports actlab.dashboard.

import-linter checks the rest of the layering (pyproject.toml), but it cannot see actlab.dashboard:
the package is mapped from the dashboard/ folder, outside core/, so its imports are not in the graph.
Run from the repo root: python tools/check_dashboard_imports.py
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path


def offenders(core: Path = Path("core")) -> list[str]:
    found = []
    for path in sorted(core.rglob("*.py")):
        depth = len(path.relative_to(core).parts) - 1  # how many dots reach the actlab package
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: resolve against actlab
                    if node.level - 1 != depth:
                        continue  # relative to a subpackage of actlab, never actlab.dashboard itself
                    base = f"actlab.{base}" if base else "actlab"
                names = [base] + ([f"{base}.{a.name}" for a in node.names] if base == "actlab" else [])
            if any(n == "actlab.dashboard" or n.startswith("actlab.dashboard.") for n in names):
                found.append(f"{path}:{node.lineno}: imports actlab.dashboard (the core never does)")
    return found


if __name__ == "__main__":
    bad = offenders()
    print("\n".join(bad) or "core never imports actlab.dashboard")
    sys.exit(1 if bad else 0)
