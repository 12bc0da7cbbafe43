"""Uploads past a limit (core/logs/limits.py) are refused naming the limit, or read up to it with a
warning; never a traceback or a hang. The four inputs of the reliability issue are built here."""
import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from actlab.logs import DEFAULT_LIMITS, Limits, LogParseError, load_bytes, load_uploads, parse_bytes
from actlab.logs import loader

ROOT = Path(__file__).resolve().parents[1]
FIX = Path(__file__).parent / "fixtures" / "logs"
MB = 2**20


def refused(data: bytes, name: str, limits: Limits = DEFAULT_LIMITS) -> str:
    with pytest.raises(LogParseError) as e:
        parse_bytes(name, data, limits=limits)
    assert str(e.value).startswith(f"{name}: ")
    return e.value.problem


def measured(code: str) -> dict:
    """Run `code` (which sets `data` and `name`) through load_bytes in a fresh interpreter: errors,
    seconds and peak RSS. The peak is VmHWM (this process's own address space): Linux carries
    getrusage's ru_maxrss across exec, so a child of a big pytest process would report the parent's."""
    script = f"""
import json, resource, sys, time

def peak():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmHWM:"))

from actlab.logs import load_bytes
{code}
t = time.perf_counter()
res = load_bytes(name, data)
print(json.dumps({{"sec": time.perf_counter() - t, "size": len(data), "errors": res.errors,
                  "warnings": [w for l in res.logs for w in l.warnings], "n_logs": len(res.logs),
                  "peak": peak()}}))
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def within_budget(r: dict):
    assert r["sec"] <= 30
    assert r["peak"] <= 10 * r["size"] + 400 * MB


# ----------------------------------------------------------------------------------------------
# 1. a 48 MB log that is one line
def test_48mb_one_line_log_is_refused_fast_and_small():
    r = measured('name, data = "one_line.log", b"acc=0.5 " * 6_000_000')
    (name, msg), = r["errors"]
    assert name == "one_line.log" and "line_chars=1,048,576" in msg and "48,000,000 characters" in msg
    within_budget(r)
    assert r["sec"] < 5 and r["peak"] < 48 * MB * 4 + 400 * MB  # was 2.4 GB and 20 s


def test_long_lines_are_skipped_with_a_warning_and_the_rest_parsed():
    lim = Limits(line_chars=1000)
    good = b"".join(b"epoch=%d acc=0.%d\n" % (i, i) for i in range(1, 9))
    log = parse_bytes("mixed.log", good + b"loss=0.1 " * 500 + b"\n" + good, limits=lim)
    assert any("line_chars=1,000" in w and "line 9" in w for w in log.warnings)
    assert set(log.df["key"]) == {"acc"} and len(log.df) == 16
    assert "line_chars=1,000" in refused(b"acc=0.5 " * 200, "one.log", lim)


def test_long_lines_in_csv_and_jsonl_and_a_long_header():
    lim = Limits(line_chars=200)
    csv = b"step,loss\n1,0.5\n" + b"2," + b"9" * 300 + b"\n3,0.25\n"
    log = parse_bytes("t.csv", csv, limits=lim)
    assert log.df["step"].tolist() == [1, 3] and any("line_chars" in w for w in log.warnings)
    assert "line_chars=200" in refused(b"step," + b"x" * 300 + b"\n1,2\n", "h.csv", lim)
    jsonl = b'{"step": 1, "loss": 0.5}\n{"step": 2, "pad": "' + b"x" * 300 + b'"}\n{"step": 3, "loss": 0.25}\n'
    log = parse_bytes("m.jsonl", jsonl, limits=lim)
    assert log.df["step"].tolist() == [1, 3] and any("line_chars" in w for w in log.warnings)


# ----------------------------------------------------------------------------------------------
# 2. JSON / JSONL nested 5,000 deep
@pytest.mark.parametrize("name,data", [
    ("deep.json", b'{"a":' * 5000 + b"1" + b"}" * 5000),
    ("deep_list.json", b"[" * 5000 + b"1" + b"]" * 5000),
    ("deep.jsonl", b'{"step": 1, "loss": 0.5}\n' + b'{"step": 2, "x": ' + b"[" * 5000 + b"]" * 5000 + b"}\n"),
    ("trainer_state.json", b'{"log_history": [{"step": 1, "loss": 0.5, "d": ' + b'{"a":' * 5000 + b"1" + b"}" * 5001 + b"]}"),
])
def test_json_nested_5000_deep_is_refused_naming_the_limit(name, data):
    assert "json_depth=64" in refused(data, name)  # was a RecursionError traceback


def test_json_depth_ignores_brackets_inside_strings_and_can_be_lowered():
    data = json.dumps([{"step": i, "loss": 0.5, "note": "[[[[{{{{" * 50} for i in range(3)]).encode()
    assert len(parse_bytes("notes.json", data).df) == 3
    assert "json_depth=2" in refused(b'[{"step": 1, "loss": {"a": {"b": 1}}}]', "d.json", Limits(json_depth=2))


def test_deep_wandb_history_line_in_a_zip_is_one_bad_line():
    deep = b'{"_step": 2, "x": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("wandb/run-1-abc/files/wandb-history.jsonl", b'{"_step": 1, "loss": 0.5}\n' + deep + b"\n")
    res = load_bytes("w.zip", buf.getvalue())
    assert res.errors == [] and res.logs[0].n_unparsed == 1


def test_big_json_document_is_refused_but_json_lines_are_not():
    lim = Limits(json_document_bytes=1000)
    doc = json.dumps({"log_history": [{"step": i, "loss": 0.5} for i in range(100)]}).encode()
    assert "json_document_bytes=1,000" in refused(doc, "trainer_state.json", lim)
    lines = b"".join(b'{"step": %d, "loss": 0.5}\n' % i for i in range(100))
    assert len(parse_bytes("m.jsonl", lines, limits=lim).df) == 100


# ----------------------------------------------------------------------------------------------
# 3. a CSV with 100,000 columns
def test_csv_with_100000_columns_is_refused_fast():
    r = measured('name = "wide.csv"\n'
                 'data = (",".join(["step"] + [f"m{i}" for i in range(99_999)]) + "\\n"'
                 ' + ",".join(["1"] + ["0.5"] * 99_999) + "\\n").encode()')
    (name, msg), = r["errors"]
    assert name == "wide.csv" and "100,000 columns" in msg and "columns=10,000" in msg
    within_budget(r)
    assert r["sec"] < 5  # was over 60 s and 1.5 GB


def test_column_series_and_point_limits_lowered():
    header = ",".join(["step"] + [f"m{i}" for i in range(11)])
    csv = (header + "\n" + "\n".join(",".join([str(s)] + ["0.5"] * 11) for s in range(30)) + "\n").encode()
    assert "columns=10" in refused(csv, "w.csv", Limits(columns=10))
    log = parse_bytes("w.csv", csv, limits=Limits(series=3, points_per_series=20))
    assert sorted(set(log.df["key"])) == ["m0", "m1", "m2"] and len(log.df) == 3 * 20
    assert any("series=3" in w for w in log.warnings) and any("points_per_series=20" in w for w in log.warnings)


def test_text_series_and_points_limits_lowered():
    text = b"".join(b"step=%d m1=0.1 m2=0.2 m3=0.3 m4=0.4 m5=0.5\n" % i for i in range(200))
    log = parse_bytes("t.log", text, limits=Limits(series=2, points_per_series=50))
    assert sorted(set(log.df["key"])) == ["m1", "m2"]
    assert log.df.groupby("key", observed=True).size().tolist() == [50, 50]
    assert log.df["step"].max() == 49
    assert any("series=2" in w for w in log.warnings) and any("points_per_series=50" in w for w in log.warnings)


def test_lines_read_one_by_one_are_bounded():
    # Every line a different shape: no template takes them, so each goes through the slow path.
    text = "".join(f"step={i} key{i}=0.5\n" for i in range(300)).encode()
    log = parse_bytes("keys.log", text, limits=Limits(slow_lines=100))
    assert any("slow_lines=100" in w for w in log.warnings)
    assert log.df["step"].max() < 100


def test_a_wide_csv_within_the_limit_is_fast():
    r = measured('name = "w.csv"\n'
                 'data = (",".join(["step"] + [f"m{i}" for i in range(9_999)]) + "\\n" + "\\n".join('
                 '",".join([str(s)] + ["0.5"] * 9_999) for s in range(50)) + "\\n").encode()')
    assert r["errors"] == [] and r["n_logs"] == 1
    within_budget(r)
    assert r["sec"] < 10


# ----------------------------------------------------------------------------------------------
# 4. a log still being written: cut UTF-8 character, cut last line
def test_cut_utf8_character_at_the_end_is_dropped_with_a_note():
    text = "epoch=1 précision=0.5\nepoch=2 précision=0.75\n".encode()
    log = parse_bytes("live.log", text + "é".encode()[:1])  # was: the whole file refused
    assert log.df["value"].tolist() == [0.5, 0.75]
    assert any("cut UTF-8 character" in w and "live.log" in w for w in log.warnings)


def test_cut_last_line_is_dropped_with_a_note_and_a_whole_one_kept():
    lines = b"".join(b"epoch=%d loss=0.%d acc=0.%d\n" % (i, 9 - i, i) for i in range(1, 6))
    log = parse_bytes("live.log", lines + b"epoch=6 loss=0.")
    assert log.df["epoch"].max() == 5 and any("last line is incomplete" in w for w in log.warnings)
    whole = parse_bytes("done.log", lines + b"epoch=6 loss=0.3 acc=0.6")
    assert whole.df["epoch"].max() == 6 and not whole.warnings
    csv = parse_bytes("live.csv", b"step,loss,acc\n1,0.5,0.1\n2,0.4,0.2\n3,0.3")
    assert csv.df["step"].max() == 2 and csv.warnings
    jsonl = parse_bytes("live.jsonl", b'{"step": 1, "loss": 0.5}\n{"step": 2, "loss": 0.4}\n{"step": 3, "lo')
    assert jsonl.df["step"].max() == 2 and jsonl.n_unparsed == 0 and jsonl.warnings


def test_cut_character_and_cut_line_together_and_bad_bytes_inside_still_refused():
    log = parse_bytes("live.log", b"epoch=1 acc=0.5\nepoch=2 acc=0.6\nepoch=3 acc=0." + "€".encode()[:2])
    assert log.df["epoch"].max() == 2 and len(log.warnings) == 2
    # A cut character proves the last line is cut, whatever its shape.
    odd = parse_bytes("live.log", b"epoch=1 acc=0.5\nepoch=2 acc=0.6\nepoch=3 pr\xc3\xa9cision=0.\xe2\x82")
    assert odd.df["epoch"].max() == 2 and set(odd.df["key"]) == {"acc"}
    assert "not UTF-8 text" in refused("epoch=1 précision=0.5\n".encode("latin-1") * 3, "latin1.log")


# ----------------------------------------------------------------------------------------------
def test_limits_live_in_one_module_and_old_imports_still_work():
    from actlab.logs.limits import DEFAULT, MAX_FILE_BYTES
    from actlab.logs.loader import MAX_FILE_BYTES as from_loader
    assert from_loader == MAX_FILE_BYTES == DEFAULT.file_bytes == 200 * MB
    with pytest.raises(Exception):
        DEFAULT.line_chars = 1  # frozen: a limit is changed by passing Limits(...), not by mutation


def test_one_bad_file_does_not_discard_the_batch():
    good = (FIX / "generic_kv.log").read_bytes()
    res = load_uploads([("a_seed1.log", good), ("deep.json", b"[" * 5000 + b"1" + b"]" * 5000),
                        ("live_seed2.log", good + "é".encode()[:1])])
    assert [l.name for l in res.logs] == ["a_seed1.log", "live_seed2.log"]
    assert res.errors[0][0] == "deep.json" and "json_depth" in res.errors[0][1]
    assert DEFAULT_LIMITS.file_bytes == loader.MAX_FILE_BYTES


def test_fuzz_script_small_run(tmp_path):
    out = tmp_path / "fuzz.json"
    p = subprocess.run([sys.executable, str(ROOT / "bench" / "fuzz_uploads.py"), "--n", "30", "--seed", "3",
                        "--out", str(out)], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    res = json.loads(out.read_text())
    s = res["summary"]
    assert res["kind"] == "bench:fuzz_uploads" and res["meta"]["n"] == 30 and res["meta"]["seed"] == 3
    assert s["parsed"] + s["refused"] == 30 and s["traceback"] == 0 and s["hang"] == 0 and s["crash"] == 0
    assert 0 < s["worst_memory_ratio"] <= 1
    assert "30 inputs (seed 3)" in p.stdout
