"""Fail when a module is over 450 lines, or a function over 80 lines without a reason.

A long function is allowed when its `def` line carries `# long: <reason>`. Run from the repo root:
    python tools/check_sizes.py [folders...]      (default: core dashboard)
    python tools/check_sizes.py --report          (print the figures, never fail)
"""
from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

MAX_MODULE_LINES = 450
MAX_FUNCTION_LINES = 80
REASON_MARK = "# long:"


def module_lines(path: Path) -> int:
    return len(path.read_text().splitlines())


def functions(path: Path):
    """(qualified name, first line, length in lines, def-line text) for every function in a module."""
    text = path.read_text()
    lines = text.splitlines()
    tree = ast.parse(text, filename=str(path))

    def walk(node, prefix):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                # From the first decorator (or def) to the last line of the body.
                start = min([d.lineno for d in child.decorator_list] + [child.lineno])
                name = f"{prefix}{child.name}"
                yield name, child.lineno, child.end_lineno - start + 1, _def_line(lines, child)
                yield from walk(child, name + ".")
            elif isinstance(child, ast.ClassDef):
                yield from walk(child, f"{prefix}{child.name}.")
            else:
                yield from walk(child, prefix)

    yield from walk(tree, "")


def _def_line(lines: list[str], fn: ast.AST) -> str:
    """The def line through the line that ends the signature (a reason may sit on any of them)."""
    end = fn.body[0].lineno - 1 if fn.body else fn.lineno
    return "\n".join(lines[fn.lineno - 1:max(end, fn.lineno)])


def check(roots: list[str]) -> tuple[list[str], dict]:
    problems, files = [], sorted(p for r in roots for p in Path(r).rglob("*.py"))
    longest_module, longest_fn = (0, ""), (0, "")
    for path in files:
        n = module_lines(path)
        longest_module = max(longest_module, (n, str(path)))
        if n > MAX_MODULE_LINES:
            problems.append(f"{path}: {n} lines (limit {MAX_MODULE_LINES})")
        for name, line, length, head in functions(path):
            longest_fn = max(longest_fn, (length, f"{path}:{line} {name}"))
            if length > MAX_FUNCTION_LINES and REASON_MARK not in head:
                problems.append(f"{path}:{line}: {name} is {length} lines (limit {MAX_FUNCTION_LINES}; "
                                f"or say why with '{REASON_MARK} <reason>' on its def line)")
    figures = {"modules": len(files), "largest_module": longest_module, "longest_function": longest_fn}
    return problems, figures


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("roots", nargs="*", default=["core", "dashboard"])
    p.add_argument("--report", action="store_true", help="print the figures and the violations, exit 0")
    args = p.parse_args(argv)
    problems, fig = check(args.roots)
    for line in problems:
        print(line)
    if args.report:
        print(f"modules: {fig['modules']}; largest: {fig['largest_module'][1]} ({fig['largest_module'][0]} lines); "
              f"longest function: {fig['longest_function'][1]} ({fig['longest_function'][0]} lines)")
        return 0
    if problems:
        print(f"{len(problems)} size violation(s)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
