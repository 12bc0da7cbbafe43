"""README.md and docs/: short README, working links, every command and page still documented."""
import re
from pathlib import Path

from actlab.cli import COMMANDS

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = ["explorer", "monitor", "compare", "benchmark", "claims"]


def test_readme_is_short_with_the_two_setup_commands_first():
    lines = README.read_text().splitlines()
    assert len(lines) <= 250, len(lines)
    first_screen = "\n".join(lines[:25])
    assert "make dashboard" in first_screen and "make test" in first_screen


def test_every_relative_link_resolves():
    broken = []
    for doc in [README, *DOCS]:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", doc.read_text()):
            if not re.match(r"[a-z]+://", target) and not (doc.parent / target).exists():
                broken.append(f"{doc.relative_to(ROOT)} -> {target}")
    assert not broken, broken


def test_every_command_in_the_readme_cheat_sheet_and_every_page_named():
    text = README.read_text()
    sheet = text.split("## Command line", 1)[1].split("\n## ", 1)[0]
    missing = [c for c in COMMANDS if f"actlab {c}" not in sheet]
    assert not missing, f"commands not in the README's cheat-sheet: {missing}"
    assert not [p for p in PAGES if f"`/{p}`" not in text], "a page is not named in the README"


def test_no_old_import_path_in_the_docs():
    """`python -m core` and `from core...` are what the clone used to need; users write actlab."""
    for doc in [README, *DOCS]:
        text = doc.read_text().replace("`python -m core` still works", "")
        assert not re.search(r"python -m core\b|from core[. ]|import core\.", text), doc.name
