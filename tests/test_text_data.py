import json

import pytest

from actlab import UserError
from actlab.models.text_data import load_beir, load_pairs, split_by_topic


def write_jsonl(path, rows):
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def make_rows(n_topics=10, per_topic=3):
    return [{"topic": f"t{t}", "argument": f"arg {t}-{i}", "counter": f"counter {t}-{i}"}
            for t in range(n_topics) for i in range(per_topic)]


def test_jsonl_and_csv_load_the_same_pairs(tmp_path):
    rows = make_rows(4, 2)
    a = load_pairs(write_jsonl(tmp_path / "p.jsonl", rows))
    csv = tmp_path / "p.csv"
    csv.write_text("topic,argument,counter\n" + "\n".join(f'{r["topic"]},"{r["argument"]}",{r["counter"]}' for r in rows))
    b = load_pairs(csv)
    assert list(a.columns) == ["topic", "argument", "counter"]
    assert len(a) == 8 and a.equals(b)


def test_missing_topic_makes_each_pair_its_own_topic(tmp_path):
    df = load_pairs(write_jsonl(tmp_path / "p.jsonl", [{"argument": "a", "counter": "b"}, {"argument": "c", "counter": "d"}]))
    assert df["topic"].nunique() == 2


def test_split_by_topic_never_leaks_a_topic():
    import pandas as pd

    df = pd.DataFrame(make_rows(20, 5))
    train, test = split_by_topic(df, 0.25, seed=3)
    assert set(train["topic"]).isdisjoint(set(test["topic"]))
    assert len(train) + len(test) == len(df)
    assert test["topic"].nunique() == 5
    # Same seed, same split: runs of one ablation see the same test set.
    assert split_by_topic(df, 0.25, seed=3)[1].equals(test)


def test_split_needs_two_topics():
    import pandas as pd

    with pytest.raises(UserError, match="2 topics"):
        split_by_topic(pd.DataFrame(make_rows(1, 4)), 0.5)


@pytest.mark.parametrize("content, problem", [
    ("", "empty"),
    ('{"argument": "a"}\n', "missing column\\(s\\) counter"),
    ('{"argument": "a", "counter": "b"}\n{not json\n', "line 2 is not valid JSON"),
    ('[1, 2]\n', "line 1 is a JSON list"),
    ('{"argument": "", "counter": "b"}\n', "row 1"),
])
def test_bad_jsonl_names_file_and_problem(tmp_path, content, problem):
    p = tmp_path / "bad.jsonl"
    p.write_text(content)
    with pytest.raises(UserError, match=f"bad.jsonl: .*{problem}"):
        load_pairs(p)


def test_bad_csv_and_unknown_type_and_missing(tmp_path):
    p = tmp_path / "bad.csv"
    p.write_text("argument,reply\nx,y\n")
    with pytest.raises(UserError, match="bad.csv: missing column\\(s\\) counter"):
        load_pairs(p)
    q = tmp_path / "pairs.xlsx"
    q.write_text("x")
    with pytest.raises(UserError, match="pairs.xlsx: unknown file type"):
        load_pairs(q)
    with pytest.raises(UserError, match="nope.jsonl: no such file"):
        load_pairs(tmp_path / "nope.jsonl")


def make_beir(folder, with_qrels=True):
    folder.mkdir()
    write_jsonl(folder / "corpus.jsonl", [
        {"_id": "test-env-abc-con01a", "title": "", "text": "counter one"},
        {"_id": "test-env-abc-pro01a", "title": "", "text": "argument one"},
        {"_id": "test-edu-xyz-con01b", "title": "", "text": "counter two"},
    ])
    write_jsonl(folder / "queries.jsonl", [
        {"_id": "test-env-abc-pro01a", "text": "argument one"},
        {"_id": "test-edu-xyz-pro01b", "text": "argument two"},
    ])
    if with_qrels:
        (folder / "qrels").mkdir()
        (folder / "qrels" / "test.tsv").write_text(
            "query-id\tcorpus-id\tscore\ntest-env-abc-pro01a\ttest-env-abc-con01a\t1\n"
            "test-edu-xyz-pro01b\ttest-edu-xyz-con01b\t1\n")
    return folder


def test_beir_arguana_layout(tmp_path):
    df = load_pairs(make_beir(tmp_path / "arguana"))
    assert df.to_dict("records") == [
        {"topic": "test-env-abc", "argument": "argument one", "counter": "counter one", "query_id": "test-env-abc-pro01a"},
        {"topic": "test-edu-xyz", "argument": "argument two", "counter": "counter two", "query_id": "test-edu-xyz-pro01b"},
    ]


def test_beir_lines_naming_missing_records_are_skipped_and_counted(tmp_path, capsys):
    from actlab.models.text_data import read_beir

    c = make_beir(tmp_path / "c")
    (c / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\ntest-env-abc-pro01a\ttest-env-abc-con01a\t1\n"
        "test-edu-xyz-pro01b\tghost\t1\n"            # the query's only judgement: the query goes too
        "test-env-abc-pro01a\tphantom\t1\n"
        "nobody\ttest-env-abc-con01a\t1\n"
        "test-env-abc-pro01a\ttest-env-abc-pro01a\t0\n")  # judged non-relevant: kept as a judgement, not a pair
    data = read_beir(c, "test")
    assert data.qrels == {"test-env-abc-pro01a": {"test-env-abc-con01a": 1, "test-env-abc-pro01a": 0}}
    assert data.skipped_qrels == ["test.tsv:3 document 'ghost' is not in corpus.jsonl",
                                  "test.tsv:4 document 'phantom' is not in corpus.jsonl",
                                  "test.tsv:5 query 'nobody' is not in queries.jsonl"]
    assert data.skipped_queries == ["test-edu-xyz-pro01b"]
    df = load_pairs(c)  # training follows the same rule and says what it dropped
    assert df["argument"].tolist() == ["argument one"]
    err = capsys.readouterr().err
    assert "warning: skipped 3 qrels line(s): test.tsv:3 document 'ghost'" in err
    assert "warning: skipped 1 query(ies) with no relevant document in the corpus: 'test-edu-xyz-pro01b'" in err
    # Four skipped lines: the warning names the first three and counts the rest.
    with open(c / "qrels" / "test.tsv", "a") as f:
        f.write("test-env-abc-pro01a\tspectre\t1\n")
    read_beir(c).warn()
    assert "(and 1 more)" in capsys.readouterr().err
    # A corpus as BEIR encodes it: title + " " + text.
    assert data.doc_text("test-env-abc-con01a") == "counter one"
    write_jsonl(c / "corpus.jsonl", [{"_id": "test-env-abc-con01a", "title": "Title", "text": "counter one"}])
    assert read_beir(c).doc_text("test-env-abc-con01a") == "Title counter one"


def test_bad_beir_layouts(tmp_path):
    with pytest.raises(UserError, match="no qrels"):
        load_beir(make_beir(tmp_path / "a", with_qrels=False))
    b = make_beir(tmp_path / "b")
    (b / "queries.jsonl").unlink()
    with pytest.raises(UserError, match="queries.jsonl is missing"):
        load_pairs(b)
    c = make_beir(tmp_path / "c")
    (c / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\ntest-env-abc-pro01a\tghost\t1\n")
    with pytest.raises(UserError, match="test.tsv: no usable judgements: 1 line\\(s\\) name a missing query or document "
                                        "\\(first: test.tsv:2 document 'ghost'"):
        load_pairs(c)
    d = make_beir(tmp_path / "d")
    write_jsonl(d / "corpus.jsonl", [{"id": "x", "text": "y"}])
    with pytest.raises(UserError, match="corpus.jsonl: line 1: a BEIR record needs '_id'"):
        load_pairs(d)
    with pytest.raises(UserError, match="unknown split 'train': no qrels/train.tsv \\(splits here: test\\)"):
        load_beir(make_beir(tmp_path / "e"), split="train")


def test_demo_default_reads_the_bundled_file_or_says_it_is_missing(tmp_path, monkeypatch):
    import actlab.models.text_data as td

    monkeypatch.setattr(td, "DEMO_PATH", tmp_path / "demo_pairs.jsonl")
    with pytest.raises(UserError, match="demo_pairs.jsonl: the bundled demo pairs are missing"):
        load_pairs("demo")
    write_jsonl(tmp_path / "demo_pairs.jsonl", make_rows(3, 2))
    assert len(load_pairs("demo")) == 6


def test_real_demo_file_has_enough_topics():
    import actlab.models.text_data as td

    assert td.DEMO_PATH.exists(), "the offline demo set ships in core/assets/demo_pairs.jsonl"
    df = load_pairs("demo")
    assert len(df) >= 200 and df["topic"].nunique() >= 40
    train, test = split_by_topic(df, 0.2)
    assert set(train["topic"]).isdisjoint(test["topic"]) and len(test) > 0
