"""Loaders for every shipped task (row counts from data/README.md) and GLUE metrics on known values."""

import hashlib
import shutil

import numpy as np
import pytest

from kasp.data.glue import (DATA_DIR, TASKS, LengthBucketSampler, get_task, load_split, read_task_tsv, read_user_tsv,
                       shipped_splits)
from kasp.ground.errors import KaspError
from kasp.spec.metrics import glue_metrics

ROWS = {("cola", "train"): 8551, ("cola", "dev"): 1043, ("sst2", "train"): 67349, ("sst2", "dev"): 872,
        ("mrpc", "train"): 3668, ("mrpc", "dev"): 408, ("stsb", "train"): 5749, ("stsb", "dev"): 1500,
        ("qnli", "dev"): 5463, ("rte", "train"): 2490, ("rte", "dev"): 277, ("wnli", "train"): 635, ("wnli", "dev"): 71}
LABELS = {("sst2", "train"): {0: 29780, 1: 37569}, ("cola", "dev"): {0: 322, 1: 721}, ("mrpc", "train"): {0: 1194, 1: 2474},
          ("qnli", "dev"): {0: 2702, 1: 2761}, ("rte", "train"): {0: 1249, 1: 1241}, ("wnli", "dev"): {0: 40, 1: 31}}


@pytest.mark.parametrize("task,split", sorted(ROWS))
def test_shipped_row_counts(task, split):
    df = load_split(task, split)
    assert len(df) == ROWS[(task, split)]
    assert df["text_a"].str.len().min() > 0
    if TASKS[task].text_b:
        assert df["text_b"].str.len().min() > 0
    if (task, split) in LABELS:
        assert df["label"].value_counts().to_dict() == LABELS[(task, split)]


def test_stsb_scores_are_floats():
    df = load_split("stsb", "dev")
    assert df["label"].dtype == np.float32 and df["label"].mean() == pytest.approx(2.36, abs=0.01)


def test_checksums_match_readme():
    readme = (DATA_DIR.parent / "README.md").read_text()
    for task in TASKS.values():
        for f in ("train.tsv", "dev.tsv"):
            p = DATA_DIR / task.folder / f
            if p.exists():
                assert hashlib.sha256(p.read_bytes()).hexdigest() in readme, p


def test_missing_task_offline_lists_shipped(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(KaspError, match=r"sst2 \(train\+dev\)"):
        load_split("mnli", "train")
    with pytest.raises(KaspError, match="not shipped"):
        load_split("qnli", "train")
    assert shipped_splits()["qnli"] == ["dev"]


def test_unknown_task():
    with pytest.raises(KaspError, match="choose one of"):
        get_task("imdb")
    assert get_task("SST-2").name == "sst2"


def test_user_tsv_errors_name_the_line(tmp_path):
    sst2 = get_task("sst2")
    p = tmp_path / "mine.tsv"
    p.write_text("sentence\tlabel\ngood film \t1\nbad film \tpositive\n")
    with pytest.raises(KaspError, match=r"line 3: label 'positive'"):
        read_task_tsv(sst2, p)
    p.write_text("text\tlabel\ngood\t1\n")
    with pytest.raises(KaspError, match=r"missing column\(s\) \['sentence'\]"):
        read_task_tsv(sst2, p)
    p.write_text("sentence\tlabel\ngood\t1\nbad\t0\textra\tfields\n")
    with pytest.raises(KaspError, match="malformed TSV"):
        read_task_tsv(sst2, p)
    p.write_text("sentence\tlabel\n\t1\n")
    with pytest.raises(KaspError, match="line 2: empty text"):
        read_task_tsv(sst2, p)
    p.write_text("sentence\tlabel\nfine \"quoted\t1\nok\t0\n")
    assert read_task_tsv(sst2, p)["label"].tolist() == [1, 0]


def test_length_bucket_sampler_covers_everything_once():
    lengths = list(np.random.default_rng(0).integers(3, 60, size=1000))
    s = LengthBucketSampler(lengths, 32, seed=1)
    batches = list(s)
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(1000)) and len(batches) == len(s)
    padded = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    plain = LengthBucketSampler(lengths, 32, seed=1, bucket=False)
    padded_plain = sum(len(b) * max(lengths[i] for i in b) for b in plain)
    assert padded < 0.75 * padded_plain
    s.set_epoch(1)
    assert list(s) != batches


def test_metrics_known_values():
    assert glue_metrics("accuracy", [1, 0, 1, 1], [1, 1, 1, 0]) == {"accuracy": 0.5}
    # tp=2 fp=1 fn=1 -> precision 2/3, recall 2/3, F1 2/3
    m = glue_metrics("f1_accuracy", [1, 1, 0, 1, 0], [1, 0, 1, 1, 0])
    assert m["f1"] == pytest.approx(2 / 3) and m["accuracy"] == pytest.approx(3 / 5)
    # MCC = (tp*tn - fp*fn) / sqrt((tp+fp)(tp+fn)(tn+fp)(tn+fn)) = (2*1 - 1*1) / sqrt(3*3*2*2) = 1/6
    assert glue_metrics("mcc", [1, 1, 0, 1, 0], [1, 0, 1, 1, 0])["mcc"] == pytest.approx(1 / 6)
    c = glue_metrics("correlation", [1.0, 2.0, 3.0, 4.0], [2.0, 4.0, 6.0, 100.0])
    assert c["spearman"] == pytest.approx(1.0) and 0.7 < c["pearson"] < 0.9
    with pytest.raises(ValueError):
        glue_metrics("accuracy", [1], [1, 0])


# --- a user's TSV (kasp evaluate --data, the app's Evaluate): real CSV parsing, checked per line -----------


def test_user_tsv_trailing_tabs_crlf_and_quoted_tabs_and_newlines(tmp_path):
    sst2 = get_task("sst2")
    p = tmp_path / "reviews.tsv"
    p.write_bytes(b'sentence\tlabel\t\r\n"a film, in\ttwo\r\nlines"\t1\t\r\n"he said ""no"""\t0\r\nplain "quote\t1\r\n')
    df = read_user_tsv(sst2, p)
    assert df["text_a"].tolist() == ["a film, in\ttwo\r\nlines", 'he said "no"', 'plain "quote']
    assert df["label"].tolist() == [1, 0, 1]


def test_user_tsv_extra_leading_column_is_refused_or_taken_by_name(tmp_path):
    sst2 = get_task("sst2")
    p = tmp_path / "shifted.tsv"
    p.write_text("sentence\tlabel\n0\tgood film\t1\n1\tbad film\t0\n")  # an index column the header does not name
    with pytest.raises(KaspError, match=r"line 2: .*3 tab-separated field\(s\) where the header has 2"):
        read_user_tsv(sst2, p)
    p.write_text("id\tsentence\tlabel\n0\tgood film\t1\n1\tbad film\t0\n")  # named: columns are taken by name
    df = read_user_tsv(sst2, p)
    assert df["text_a"].tolist() == ["good film", "bad film"] and df["label"].tolist() == [1, 0]
    cola = get_task("cola")  # header-less layout: an extra column cannot be placed, so it is refused
    p.write_text("7\tgj04\t1\t\tThe sailors rode the breeze.\n")
    with pytest.raises(KaspError, match="line 1: .*5 tab-separated field"):
        read_user_tsv(cola, p)


def test_user_tsv_bad_lines_are_named(tmp_path):
    sst2 = get_task("sst2")
    p = tmp_path / "bad.tsv"
    p.write_text("sentence\tlabel\ngood\t1\nbad\t0\textra\tfields\n")
    with pytest.raises(KaspError, match="line 3: malformed TSV"):
        read_user_tsv(sst2, p)
    p.write_text('sentence\tlabel\n"good\tx"y\t1\nfine\t0\n')  # bad quoting, and 3 fields read without quoting
    with pytest.raises(KaspError, match="line 2: malformed TSV .*bad quoting"):
        read_user_tsv(sst2, p)
    p.write_text("sentence\tlabel\ngood\t1\nbad\tpositive\n")
    with pytest.raises(KaspError, match=r"line 3: label 'positive'"):
        read_user_tsv(sst2, p)
    p.write_text('sentence\tlabel\n"one\t1\ntwo"\t0\n')  # complete both ways, different row counts
    with pytest.raises(KaspError, match="line 2: ambiguous quoting"):
        read_user_tsv(sst2, p)


@pytest.mark.parametrize("task", ["mrpc", "stsb", "rte", "qnli"])
def test_copies_of_glue_files_with_bare_quotes_read_exactly_as_shipped(task, tmp_path):
    t = get_task(task)
    src = DATA_DIR / t.folder / t.dev_file
    assert any(f.startswith('"') for line in src.read_text(encoding="utf-8-sig").splitlines()
               for f in line.split("\t"))  # the files hold unquoted fields that start with "
    copy = tmp_path / "copy.tsv"
    shutil.copy(src, copy)
    assert read_user_tsv(t, copy).equals(read_task_tsv(t, src))


def test_evaluate_data_errors_are_one_line(tmp_path, capsys, tiny_store):
    from kasp.cli import main

    p = tmp_path / "shifted.tsv"
    p.write_text("sentence\tlabel\n0\tgood film\t1\n")
    assert main(["evaluate", str(tiny_store / "teacher"), "--data", str(p)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "line 2" in err and "header has 2" in err
