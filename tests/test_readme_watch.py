"""The README's "Watch your own model" examples, run as written, then read back with `runs show --json`."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def readme_blocks():
    text = (ROOT / "README.md").read_text()
    section = text.split("## Watch your own model", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def run_py(code_or_args, tmp_path, env):
    args = [sys.executable, "-c", code_or_args] if isinstance(code_or_args, str) else [sys.executable, *code_or_args]
    return subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.timeout(400)
def test_both_readme_examples_run_and_give_dead_and_dormant_keys(tmp_path):
    blocks = readme_blocks()
    assert len(blocks) == 3
    env = dict(os.environ, ACTLAB_RUNS_DIR=str(tmp_path / "runs"), HF_HUB_OFFLINE="1",
               TRANSFORMERS_OFFLINE="1", OMP_NUM_THREADS="1")
    for code in blocks:
        r = run_py(code, tmp_path, env)
        assert r.returncode == 0, r.stderr[-3000:]
    first = run_py(["-m", "actlab", "runs", "show", "my-mlp", "--json"], tmp_path, env)
    mlp = json.loads(first.stdout)
    assert mlp["status"] == "finished"
    assert {"dead/1", "dormant/1", "dormant/3", "zero_frac/3", "loss/train", "acc"} <= set(mlp["last"])
    assert "dead/3" in mlp["last"] and mlp["last"]["dead/3"] == 0.0  # GELU: dead is defined, and 0
    bert = json.loads(run_py(["-m", "actlab", "runs", "show", "my-bert", "--json"], tmp_path, env).stdout)
    assert bert["status"] == "finished"
    more = json.loads(run_py(["-m", "actlab", "runs", "show", "my-mlp-more", "--json"], tmp_path, env).stdout)
    assert more["status"] == "finished" and any(k.startswith("dormancy/grama/") for k in more["last"])
    assert list((tmp_path / "tb").rglob("events.out.tfevents.*")), "the TensorBoard sink wrote no event file"
    ffn = "bert.encoder.layer.1.intermediate.intermediate_act_fn"
    assert f"dormant/{ffn}" in bert["last"] and "loss/train" in bert["last"] and "lr" in bert["last"]
    assert 0.0 <= bert["last"][f"dormant/{ffn}"] <= 1.0


def test_tau_dormant_definition_and_reference_in_readme_and_page_help():
    """Done when: the τ-dormant definition and Sokar et al., ICML 2023, in the README and the page's help."""
    import ast

    section = (ROOT / "README.md").read_text().split("## Watch your own model", 1)[1].split("\n## ", 1)[0]
    flat = " ".join(section.split())
    assert "Sokar et al." in flat and "ICML 2023" in flat and "The Dormant Neuron Phenomenon" in flat
    assert "divided by the mean of that figure over the layer's units" in flat and "score ≤ τ" in flat
    tree = ast.parse((ROOT / "dashboard" / "views" / "monitor.py").read_text())
    help_text = next(ast.literal_eval(n.value) for n in tree.body if isinstance(n, ast.Assign)
                     and any(getattr(t, "id", None) == "TAU_HELP" for t in n.targets))
    assert "Sokar et al." in help_text and "ICML 2023" in help_text and "at most τ" in help_text
    assert "mean |activation output|" in help_text
