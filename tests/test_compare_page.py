"""Compare page under AppTest: uploads go through st.file_uploader; assertions on the data shown."""
import base64
import json
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from actlab.store.runs import RunStore

PAGE = str(Path(__file__).resolve().parents[1] / "dashboard" / "views" / "compare.py")
FIX = Path(__file__).parent / "fixtures" / "logs"


def kv_log(top1_final: float) -> bytes:
    text = (FIX / "with_relu_seed1.log").read_text()
    return text.replace("acc/top1=0.4000", f"acc/top1={top1_final:.4f}").encode()


def table(at, column):
    """st.dataframe keeps no key without selections, so tables are found by a column only they have."""
    return next(d.value for d in at.dataframe if d.editing_mode == "read_only" and column in d.value.columns)


def arr(v):
    """Plotly sends numpy arrays as typed arrays ({dtype, bdata}); decode to a list."""
    if isinstance(v, dict) and "bdata" in v:
        return np.frombuffer(base64.b64decode(v["bdata"]), dtype=np.dtype(v["dtype"])).tolist()
    return list(v)


def spec(at, key):
    return json.loads(next(e for e in at.get("plotly_chart") if e.proto.id.endswith(key) or key in e.proto.id).proto.spec)


@pytest.fixture
def at(runs_dir):
    a = AppTest.from_file(PAGE, default_timeout=60)
    a.run()
    assert not a.exception
    return a


def test_empty_page_asks_for_logs(at):
    assert "Upload two or more logs" in at.info[0].value
    assert len(at.file_uploader) == 1 and at.file_uploader[0].accept_multiple_files


def test_upload_shows_tables_traces_and_verdict(at):
    files = [(f"relu_seed{i}.log", kv_log(v), "text/plain") for i, v in enumerate((0.40, 0.41, 0.42), 1)]
    files += [(f"gelu_seed{i}.log", kv_log(v), "text/plain") for i, v in enumerate((0.60, 0.61, 0.62), 1)]
    files += [("empty.log", b"", "text/plain")]
    at.file_uploader[0].set_value(files)
    at.run()
    assert not at.exception
    # The bad file is named with its problem; the others still load.
    assert any("empty.log" in e.value and "empty file" in e.value for e in at.error)
    runs = at.data_editor[0].value
    assert runs["run"].tolist() == [f"relu_seed{i}" for i in (1, 2, 3)] + [f"gelu_seed{i}" for i in (1, 2, 3)]
    assert runs["variant"].tolist() == ["relu"] * 3 + ["gelu"] * 3
    assert runs["seed"].tolist() == [1, 2, 3, 1, 2, 3]
    assert at.selectbox(key="metric").value == "acc/top1"

    per_run = table(at, "final")
    assert per_run.set_index("run")["final"].round(4).to_dict() == {
        "relu_seed1": 0.40, "relu_seed2": 0.41, "relu_seed3": 0.42,
        "gelu_seed1": 0.60, "gelu_seed2": 0.61, "gelu_seed3": 0.62}
    variants = table(at, "ci95").set_index("variant")
    assert variants.loc["relu", "mean"] == pytest.approx(0.41) and variants.loc["gelu", "n"] == 3
    assert variants.loc["gelu", "std"] == pytest.approx(0.01)

    curves = spec(at, "curves")["data"]
    assert [t["name"] for t in curves if not t["name"].endswith("(raw)")][:2] == ["relu_seed1", "relu_seed2"]
    raw = next(t for t in curves if t["name"] == "relu_seed1 (raw)")
    assert arr(raw["x"]) == [40, 80, 120] and arr(raw["y"]) == [0.3, 0.5, 0.4]
    smoothed = next(t for t in curves if t["name"] == "relu_seed1")
    assert arr(smoothed["y"])[0] == pytest.approx(0.3)  # debiased EMA starts at the first value
    bars = spec(at, "bars")["data"][0]
    assert arr(bars["x"]) == ["relu", "gelu"] and arr(bars["y"]) == pytest.approx([0.41, 0.61])
    assert arr(bars["error_y"]["array"]) == pytest.approx([0.01 * 4.302652729911275 / 3 ** 0.5] * 2)

    verdict = at.success[0].value
    assert "gelu beats relu by 20.0 points" in verdict and "Holm p" in verdict


def test_editing_variant_changes_the_groups(at):
    at.file_uploader[0].set_value([("a_seed1.log", kv_log(0.4), "text/plain"),
                                   ("b_seed1.log", kv_log(0.5), "text/plain")])
    at.run()
    key = at.data_editor[0].key
    at.session_state[key] = {"edited_rows": {1: {"variant": "a"}}, "added_rows": [], "deleted_rows": []}
    at.run()
    variants = table(at, "ci95")
    assert variants["variant"].tolist() == ["a"] and variants["n"].tolist() == [2]
    assert variants["mean"].tolist() == [pytest.approx(0.45)]


def test_store_runs_and_percent_note(at, runs_dir):
    store = RunStore(runs_dir)
    for name, vals in {"relu_seed1": (0.5, 0.7), "relu_seed2": (0.6, 0.8)}.items():
        w = store.create(name, {"variant": "relu"})
        for step, v in enumerate(vals, 1):
            w.log_scalars(step, {"acc/test": v})
        w.close()
    at.run()
    at.multiselect(key="store_runs").set_value(["relu_seed1", "relu_seed2"])
    at.file_uploader[0].set_value([("pct_seed1.log", b"epoch 1 acc/test 55%\nepoch 2 acc/test 75%\n", "text/plain")])
    at.run()
    assert not at.exception
    assert any("divided by 100: acc/test" in i.value for i in at.info)
    per_run = table(at, "final").set_index("run")
    assert per_run.loc["pct_seed1", "final"] == pytest.approx(0.75)
    assert per_run.loc["relu_seed2", "final"] == pytest.approx(0.8)
    assert per_run.loc["relu_seed1", "variant"] == "relu"


def _zip_folder(root: Path) -> bytes:
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for f in sorted(root.rglob("*")):
            if f.is_file():
                z.write(f, f.relative_to(root.parent).as_posix())
    return buf.getvalue()


def test_first_view_picks_shared_top1_and_shows_verdict_pairs_and_forest(at):
    """Done when: a zip of text and tabular ablation logs plus one MNIST run log, nothing chosen."""
    from actlab.analysis import compare
    from actlab import logs

    data = Path(__file__).parent / "data" / "ablation"
    files = [("ablation.zip", _zip_folder(data), "application/zip"),
             ("mnist_seed.log", (FIX / "mnist_seed.log").read_bytes(), "text/plain")]
    at.file_uploader[0].set_value(files)
    at.run()
    assert not at.exception
    assert at.selectbox(key="metric").value == "top1_acc"
    assert any(c.value.startswith("Default metric top1_acc: logged by 12 of 13 runs in 4 variants") for c in at.caption)

    # the same numbers the core computes from the same files
    res = logs.load_uploads([(n, d) for n, d, _ in files])
    expected = compare.summarize(res.scalars(), None, runs=logs.variant_seed_of(res))
    assert at.success[0].value == expected["summary"]
    assert expected["summary"].startswith("On the final top1_acc of 12 runs in 4 variants")

    pairs = table(at, "p_adjusted")
    assert len(pairs) == 6
    want = compare.pair_table(expected["comparisons"])
    for col in ("diff", "diff_lo", "diff_hi", "p_value", "p_adjusted", "prob_improvement", "mde"):
        assert pairs[col].to_numpy() == pytest.approx(want[col].to_numpy())
    assert pairs["seeds_needed"].tolist() == want["seeds_needed"].tolist()
    assert pairs["verdict"].tolist().count("with_relu") == 1

    forest = spec(at, "forest")
    (trace,) = forest["data"]
    # first pair drawn on top: the trace runs bottom-up
    assert arr(trace["y"]) == [f"{a} − {b}" for a, b in zip(want["a"], want["b"])][::-1]
    assert arr(trace["x"]) == pytest.approx(want["diff"].to_numpy()[::-1])
    assert arr(trace["error_x"]["array"]) == pytest.approx((want["diff_hi"] - want["diff"]).to_numpy()[::-1])
    assert arr(trace["error_x"]["arrayminus"]) == pytest.approx((want["diff"] - want["diff_lo"]).to_numpy()[::-1])
    (zero,) = [s for s in forest["layout"]["shapes"] if s["type"] == "line"]
    assert zero["x0"] == zero["x1"] == 0


def test_changing_the_metric_says_it_was_chosen(at):
    files = [(f"relu_seed{i}.log", kv_log(v), "text/plain") for i, v in enumerate((0.40, 0.41, 0.42), 1)]
    files += [(f"gelu_seed{i}.log", kv_log(v), "text/plain") for i, v in enumerate((0.60, 0.61, 0.62), 1)]
    at.file_uploader[0].set_value(files)
    at.run()
    at.selectbox(key="metric").set_value("mrr")
    at.run()
    assert not at.exception
    assert any(c.value.startswith("Metric mrr, chosen by you (the default would be acc/top1") for c in at.caption)
    # every run's final mrr is 0.61: an exact permutation test, p = 1
    assert at.info[0].value == ("On the final mrr of 6 runs in 2 variants (higher is better): "
                                "no pair differs beyond seed noise (smallest Holm p 1).")


def test_exports_pair_csv_summary_markdown_and_each_chart_as_html_and_png(at, monkeypatch):
    """Done when: pair table CSV, each chart PNG and HTML, summary Markdown. The files are caught
    where Streamlit stores them (eager ones at add, deferred ones as their callables)."""
    import io

    import pandas as pd
    from streamlit.runtime.media_file_manager import MediaFileManager

    from actlab.analysis import compare
    from actlab import logs
    from actlab.dashboard.charts.export import png_export_problem

    eager, deferred = {}, {}
    add, add_deferred = MediaFileManager.add, MediaFileManager.add_deferred

    def spy_add(self, data, mimetype, coordinates, file_name=None, *a, **kw):
        eager[file_name] = data
        return add(self, data, mimetype, coordinates, file_name, *a, **kw)

    def spy_deferred(self, fn, mimetype, coordinates, file_name=None, **kw):
        deferred[file_name] = fn
        return add_deferred(self, fn, mimetype, coordinates, file_name, **kw)

    monkeypatch.setattr(MediaFileManager, "add", spy_add)
    monkeypatch.setattr(MediaFileManager, "add_deferred", spy_deferred)
    files = [(f"relu_seed{i}.log", kv_log(v), "text/plain") for i, v in enumerate((0.40, 0.41, 0.42), 1)]
    files += [(f"gelu_seed{i}.log", kv_log(v), "text/plain") for i, v in enumerate((0.60, 0.61, 0.62), 1)]
    at.file_uploader[0].set_value(files)
    at.run()
    assert not at.exception
    labels = [b.label for b in at.get("download_button")]
    charts = ["forest", "curves", "bands", "bars"]
    assert labels == ["Pair table (CSV)", "Summary (Markdown)", "Summary (JSON)", "Tidy table (CSV)"] + [
        f"{c} ({kind})" for c in charts for kind in ("HTML", "PNG")]

    res = logs.load_uploads([(n, d) for n, d, _ in files])
    expected = compare.summarize(res.scalars(), None, runs=logs.variant_seed_of(res))
    as_text = lambda d: d.decode() if isinstance(d, bytes) else d  # noqa: E731
    csv = pd.read_csv(io.StringIO(as_text(eager["pairs.csv"])))
    want = compare.pair_table(expected["comparisons"])
    assert csv[["a", "b", "verdict"]].values.tolist() == [["relu", "gelu", "gelu"]]
    for col in ("diff", "diff_lo", "diff_hi", "p_value", "p_adjusted", "prob_improvement", "mde", "seeds_needed"):
        assert csv[col].to_numpy(float) == pytest.approx(want[col].to_numpy(float))
    md = as_text(eager["summary.md"])
    assert md == compare.summary_markdown(expected) and expected["summary"] in md and "| relu | gelu |" in md

    assert sorted(deferred) == sorted(f"{c}.{ext}" for c in charts for ext in ("html", "png"))
    for c in charts:
        html = deferred[f"{c}.html"]()
        assert html.startswith("<!doctype html>") and "Plotly.newPlot(" in html and "<script src=" not in html
    assert "relu − gelu" in deferred["forest.html"]() or "relu \\u2212 gelu" in deferred["forest.html"]()
    if png_export_problem() is None:  # kaleido and a local Chromium; one chart is enough (each starts a browser)
        png = deferred["forest.png"]()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


def test_bad_uploads_are_named_and_the_good_ones_compared(at):
    files = [(f"relu_seed{i}.log", kv_log(v), "text/plain") for i, v in enumerate((0.40, 0.41), 1)]
    files += [("gelu_seed1.log", kv_log(0.60), "text/plain"),
              ("gelu_seed2.log", kv_log(0.61) + "é".encode()[:1], "text/plain"),  # still being written
              ("deep.json", b"[" * 5000 + b"1" + b"]" * 5000, "application/json"),
              ("one_line.log", b"acc=0.5 " * 200_000, "text/plain")]
    at.file_uploader[0].set_value(files)
    at.run()
    assert not at.exception
    errors = [e.value for e in at.error]
    assert any("deep.json" in e and "json_depth=64" in e for e in errors)
    assert any("one_line.log" in e and "line_chars=1,048,576" in e for e in errors)
    assert any("gelu_seed2.log" in w.value and "cut UTF-8 character" in w.value for w in at.warning)
    assert at.data_editor[0].value["run"].tolist() == ["relu_seed1", "relu_seed2", "gelu_seed1", "gelu_seed2"]
    assert table(at, "ci95").set_index("variant").loc["gelu", "n"] == 2
