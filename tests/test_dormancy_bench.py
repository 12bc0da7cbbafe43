"""bench/dormancy_definitions.py: bad input, and the committed result behind docs/dormancy.md."""
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULT = ROOT / "bench" / "results" / "dormancy_definitions_cpu.json"


def test_bad_input_is_one_line_exit_2():
    p = subprocess.run([sys.executable, "bench/dormancy_definitions.py", "--seeds", "0"], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and "argument --seeds: expected a positive integer" in p.stderr.strip().splitlines()[-1]


def test_committed_result_is_what_the_docs_quote():
    r = json.loads(RESULT.read_text())
    assert r["kind"] == "bench:dormancy_definitions" and r["settings"]["seeds"] == 3
    assert set(r["definitions"]) == {"mnist", "bert"} and all(len(v) == 3 for v in r["definitions"].values())
    assert set(r["recycling"]) == {"none", "dead", "redo", "grama", "utility", "age"}
    docs = (ROOT / "docs" / "dormancy.md").read_text()
    assert "python bench/dormancy_definitions.py" in docs
    for by, s in r["recycling_summary"].items():
        row = next(line for line in docs.splitlines() if line.startswith(f"| {by} |"))
        assert f"{s['dead_exact']:.3f}" in row and f"{s['acc_test']:.3f}" in row, by
        if s["again_at_5"] is not None:
            assert f"{s['again_at_5']:.3f}" in row, by
    assert all(c["p_adjusted"] >= 0.05 for c in r["recycling_vs_none"])  # docs: nothing significant
