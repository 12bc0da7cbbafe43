"""`python -m core activations ...` as a user runs it: a subprocess, stdout JSON, one-line errors."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from actlab import activations as A

ROOT = Path(__file__).resolve().parent.parent


def run(*args):
    return subprocess.run([sys.executable, "-m", "actlab", *args], cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_list_json_has_every_activation_with_parameters_and_properties():
    r = run("activations", "list", "--json")
    assert r.returncode == 0, r.stderr
    rows = {row["name"]: row for row in json.loads(r.stdout)}
    assert set(rows) == set(A.REGISTRY)
    assert rows["elu"]["parameters"]["alpha"]["default"] == 1.0
    assert rows["relu"]["parameters"] == {}
    for name in A.names(vector=False):
        assert {"output_range", "dead_zone", "monotonic", "smooth"} <= set(rows[name]["properties"]), name
    assert rows["relu"]["properties"]["dead_zone"][0][0] == -6.0
    assert "properties" not in rows["softmax"]


def test_list_plain_text_has_one_line_per_activation():
    r = run("activations", "list")
    assert r.returncode == 0
    assert [line.split()[0] for line in r.stdout.splitlines()] == list(A.REGISTRY)


def test_eval_json_shape_and_values():
    r = run("activations", "eval", "leaky_relu", "--x", "-2", "0.5", "3", "--param", "alpha=0.1", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert set(out) == {"x", "y", "dy", "d2y"}
    assert out["x"] == [-2.0, 0.5, 3.0]
    assert out["y"] == pytest.approx([-0.2, 0.5, 3.0])
    assert out["dy"] == pytest.approx([0.1, 1.0, 1.0])
    assert out["d2y"] == [0.0, 0.0, 0.0]


@pytest.mark.parametrize("args, message", [
    (["eval", "relu7", "--x", "1"], "unknown activation 'relu7'"),
    (["eval", "elu", "--x", "1", "--param", "beta=2"], "no parameter 'beta'"),
    (["eval", "elu", "--x", "1", "--param", "alpha"], "KEY=VALUE"),
    (["eval", "elu", "--x", "1", "--param", "alpha=x"], "needs a number"),
    (["eval", "elu", "--x", "1", "--param", "alpha=99"], "outside"),
    (["eval", "softmax", "--x", "1"], "vector-valued"),
])
def test_bad_input_is_one_line_error(args, message):
    r = run("activations", *args)
    assert r.returncode == 2
    assert r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]
    assert "Traceback" not in r.stderr
