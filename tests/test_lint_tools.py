"""tools/check_sizes.py and tools/check_dashboard_imports.py fail on what they are for."""
import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _tool(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_size_check_flags_long_functions_and_modules_unless_a_reason_is_given(tmp_path):
    sizes = _tool("check_sizes")
    body = "\n".join(f"    x{i} = {i}" for i in range(85))
    (tmp_path / "a.py").write_text(f"def short():\n    return 1\n\n\ndef long_one():\n{body}\n")
    (tmp_path / "b.py").write_text(f"def fine():  # long: one table, row by row\n{body}\n")
    (tmp_path / "c.py").write_text("x = 1\n" * 451)
    problems, fig = sizes.check([str(tmp_path)])
    assert len(problems) == 2
    assert any("a.py:5: long_one is 86 lines" in p for p in problems)
    assert any("c.py: 451 lines" in p for p in problems)
    assert fig["modules"] == 3 and fig["largest_module"] == (451, str(tmp_path / "c.py"))
    assert sizes.main([str(tmp_path)]) == 1 and sizes.main([str(tmp_path / "b.py").rsplit("/", 1)[0], "--report"]) == 0


def test_dashboard_import_check(tmp_path):
    check = _tool("check_dashboard_imports")
    core = tmp_path / "core"
    (core / "store").mkdir(parents=True)
    (core / "ok.py").write_text("from .store import runs\nimport plotly\n")
    (core / "store" / "bad.py").write_text("from ..dashboard import charts\n")
    (core / "bad2.py").write_text("import actlab.dashboard.views\n")
    (core / "bad3.py").write_text("from . import dashboard\n")
    found = check.offenders(core)
    assert [f.split(":")[0].rsplit("/", 1)[-1] for f in found] == ["bad2.py", "bad3.py", "bad.py"]
    assert check.offenders(ROOT / "core") == []
