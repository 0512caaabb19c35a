"""The teacher-output cache (kasp/core/teacher_cache.py): cached and recomputed targets give the same loss."""

from __future__ import annotations

import pytest
import torch

from kasp.data.glue import Encoded, collate
from kasp.core.distill import KaspLoss, attention_loss, hidden_loss
from kasp.core.teacher_cache import open_cache


def _model(seed: int, layers: int = 2):
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=64, hidden_size=16, num_hidden_layers=layers, num_attention_heads=4,
                     intermediate_size=32, max_position_embeddings=40, num_labels=2)
    return BertForSequenceClassification(cfg).eval()


def _data(n: int = 12, seed: int = 0) -> Encoded:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(3, 20, (n,), generator=g).tolist()
    ids = [[2] + torch.randint(5, 64, (k - 2,), generator=g).tolist() + [3] for k in lengths]
    return Encoded(ids, [[0] * len(x) for x in ids], torch.randint(0, 2, (n,), generator=g))


@pytest.fixture()
def setup(tmp_path):
    teacher = _model(1)
    teacher.save_pretrained(tmp_path / "teacher")
    return teacher, tmp_path


def _cache(teacher, tmp_path, data, loss, cap_gb=1.0):
    amap, hmap = loss.cache_layout()
    return open_cache(tmp_path / "teacher", "sst2", 64, data, amap, hmap, teacher.config, 2, cap_gb,
                      root=tmp_path / "cache")


def _batch(data, idx):
    return collate(data, idx) | {"index": torch.tensor(idx)}


def test_cached_targets_give_the_recomputed_loss_in_any_batch(setup):
    """Written in one batch composition, read in another (other padded length): the loss terms equal the
    recomputed ones within fp16 rounding, and the teacher is not run for a stored batch."""
    teacher, tmp = setup
    import copy

    student, data = _model(2), _data()
    # one capture per model: the recomputing loss gets its own copies of the same two models
    s_plain, t_plain_model = copy.deepcopy(student), copy.deepcopy(teacher)
    plain = KaspLoss(s_plain, t_plain_model)
    cached = KaspLoss(student, teacher)
    cache = _cache(teacher, tmp, data, cached)
    cached.use_cache(cache)
    for idx in ([0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]):  # first epoch: all computed and stored
        cached(student, _batch(data, idx))
    assert cache.misses == 12 and cache.hits == 0
    calls = []
    teacher.register_forward_hook(lambda *a: calls.append("cached"))
    t_plain_model.register_forward_hook(lambda *a: calls.append("plain"))
    for idx in ([11, 0, 5], [2, 7, 9, 3], [1]):  # second epoch: other batches, other padding
        b = _batch(data, idx)
        assert b["attention_mask"].shape[1] == max(data.lengths[i] for i in idx)
        _, t_cached, _ = cached(student, b)
        n_calls = len(calls)
        _, t_plain, _ = plain(s_plain, b)
        assert calls[n_calls:] == ["plain"]  # only the uncached loss ran the teacher
        assert set(t_cached) == set(t_plain) == {"attention", "hidden", "prediction"}
        for k in t_plain:
            assert float(t_plain[k].detach()) > 0
            torch.testing.assert_close(t_cached[k], t_plain[k], rtol=2e-3, atol=1e-5)
    assert cache.hits == 8 and "cached" not in calls


def test_padding_does_not_change_an_examples_loss_terms():
    """The same examples padded to a longer batch: the summed squared errors are unchanged (padded rows
    and positions count 0), which is what lets one stored record serve every batch."""
    student, teacher, data = _model(2), _model(1), _data()
    loss = KaspLoss(student, teacher)
    short = collate(data, [0, 1])
    T = short["attention_mask"].shape[1]
    long = collate(Encoded(data.input_ids[:2] + [[2] + [7] * 30 + [3]], data.token_type_ids[:2] + [[0] * 32],
                           data.labels[:3]), [0, 1, 2])
    terms_short = loss(student, short)[1]
    # the long batch's first two rows, through the loss with the third row dropped
    rows = {k: v[:2] for k, v in long.items()}
    terms_long = loss(student, rows)[1]
    L = rows["attention_mask"].shape[1]
    scale_att = (L * L) / (T * T)
    scale_hid = L / T
    torch.testing.assert_close(terms_long["attention"] * scale_att, terms_short["attention"], rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(terms_long["hidden"] * scale_hid, terms_short["hidden"], rtol=1e-4, atol=1e-6)


def test_padded_rows_are_ignored_by_the_losses():
    s = [torch.zeros(1, 2, 3, 3)]
    t = [torch.zeros(1, 2, 3, 3)]
    t[0][0, :, 2, :] = 5.0  # the padded query row only
    am = torch.tensor([[1, 1, 0]])
    assert float(attention_loss(s, t, am)) == 0.0 and float(attention_loss(s, t)) > 0
    h_s, h_t = (torch.zeros(1, 3, 4),), (torch.zeros(1, 3, 4),)
    h_t[0][0, 2] = 1.0
    assert float(hidden_loss(h_s, h_t, am)) == 0.0 and float(hidden_loss(h_s, h_t)) > 0


def test_size_cap_caches_a_prefix_and_falls_back(setup):
    teacher, tmp = setup
    student, data = _model(2), _data()
    loss = KaspLoss(student, teacher)
    amap, hmap = loss.cache_layout()
    from kasp.core.teacher_cache import Layout

    lay = Layout(2, len(hmap), 16, len(amap), 4)
    first5 = sum(lay.record(n) for n in data.lengths[:5]) * 2  # bytes of the first five records
    cache = _cache(teacher, tmp, data, loss, cap_gb=(first5 + 1) / (1 << 30))
    loss.use_cache(cache)
    assert cache.cached_examples == 5
    loss(student, _batch(data, [0, 6]))  # 6 is past the cap: computed, 0 stored
    assert cache.has([0]) and not cache.has([6]) and not cache.has([0, 6])
    calls = []
    teacher.register_forward_hook(lambda *a: calls.append(1))
    loss(student, _batch(data, [0, 6]))
    assert calls == [1]  # a batch with an uncached example runs the teacher
    assert cache.stored_bytes == 2 * lay.record(data.lengths[0])


def test_another_teacher_or_data_gets_another_folder(setup):
    teacher, tmp = setup
    student, data = _model(2), _data()
    loss = KaspLoss(student, teacher)
    a = _cache(teacher, tmp, data, loss)
    loss.use_cache(a)
    loss(student, _batch(data, [0, 1]))
    again = _cache(teacher, tmp, data, loss)
    assert again.folder == a.folder and again.has([0, 1])  # reopened: what was stored is kept
    other = _model(5)
    other.save_pretrained(tmp / "teacher")  # the same path, other weights
    b = _cache(other, tmp, data, loss)
    assert b.folder != a.folder and not b.has([0])
    c = _cache(other, tmp, _data(seed=3), loss)
    assert c.folder not in (a.folder, b.folder)


@pytest.mark.slow
def test_cached_run_trains_as_the_recomputed_one(tiny_store, tiny_pretrained, tmp_path, monkeypatch):
    """A 3-epoch KASP prune with and without the cache: the same masks, the same loss curve within fp16
    rounding, and the report counts the reads."""
    from safetensors.torch import load_file

    from kasp.cli import main
    from kasp.ground.runs import RunDir

    monkeypatch.setenv("KASP_CACHE_DIR", str(tmp_path / "cache"))
    args = ["prune", "--task", "sst2", "--model", str(tiny_pretrained), "--sparsity", "0.8", "--max-steps", "18",
            "--pruning-events", "6", "--max-train-samples", "192", "--max-eval-samples", "32", "--eval-every", "0",
            "--log-every", "3", "--no-progress", "--runs-dir", str(tiny_store),
            # the paper's lr and loss weights: SST-2's adopted 4e-4 and prediction weight 3 turn fp16 rounding of
            # the cached outputs into a few flipped weights at the magnitude threshold of this tiny random model
            "--lr", "1e-4", "--prediction-weight", "1"]
    runs = {}
    for name, flag in (("on", "--teacher-cache"), ("off", "--no-teacher-cache"), ("warm", "--teacher-cache")):
        assert main([*args, flag, "--out", str(tmp_path / name)]) == 0
        runs[name] = RunDir(tmp_path / name)
    rep = runs["on"].report()["teacher_cache"]
    assert rep["misses"] == 192 and rep["hits"] == 2 * 192  # 6 batches a epoch, 3 epochs
    assert "teacher_cache" not in runs["off"].report()
    assert runs["warm"].report()["teacher_cache"]["hits"] == 3 * 192  # every batch read from the first run's cache
    w_warm = load_file(str(runs["warm"].checkpoint / "model.safetensors"))
    w_on, w_off = (load_file(str(r.checkpoint / "model.safetensors")) for r in (runs["on"], runs["off"]))
    for k in w_on:
        if w_on[k].ndim == 2 and "encoder" in k:
            assert torch.equal(w_on[k] == 0, w_off[k] == 0), k  # the same masks
    assert all(torch.equal(w_on[k], w_warm[k]) for k in w_on)  # a warm cache changes nothing
    curve = {n: [r["loss"] for r in runs[n].progress() if r["type"] == "train"] for n in runs}
    assert len(curve["on"]) == len(curve["off"]) > 3
    assert curve["on"] == pytest.approx(curve["off"], rel=1e-2)


def test_the_cap_holds_across_cache_folders(setup):
    """Opening a cache removes the least recently opened other folders until all of them fit the cap; a folder
    in use (its lock held) stays."""
    import os

    from filelock import FileLock

    from kasp.core.teacher_cache import disk_bytes

    teacher, tmp = setup
    student = _model(2)
    loss = KaspLoss(student, teacher)
    folders = []
    for seed in (10, 11, 12):  # three training sets: three folders, each filled
        data = _data(seed=seed)
        c = _cache(teacher, tmp, data, loss)
        loss.use_cache(c)
        loss(student, _batch(data, list(range(len(data)))))
        c.close()
        folders.append(c.folder)
    for i, f in enumerate(folders):  # opened in this order, a second apart
        os.utime(f / "meta.json", (1000 + i, 1000 + i))
    one = max(disk_bytes(f) for f in folders)
    from kasp.core.teacher_cache import Layout

    amap, hmap = loss.cache_layout()
    lay = Layout(2, len(hmap), 16, len(amap), 4)

    def cap_for(data, others: float) -> float:  # GiB: the new folder's own records plus room for `others` folders
        return (2 * sum(lay.record(n) for n in data.lengths) + others * one) / (1 << 30)

    data = _data(seed=13)
    new = _cache(teacher, tmp, data, loss, cap_gb=cap_for(data, 2.5))
    assert not folders[0].exists()  # the least recently opened went
    assert folders[1].exists() and folders[2].exists() and new.folder.exists()
    loss.use_cache(new)
    loss(student, _batch(data, list(range(len(data)))))  # filled: three full folders besides the next one
    new.close()
    os.utime(new.folder / "meta.json", (2000, 2000))
    with FileLock(str(folders[1]) + ".lock"):  # folder 1, now the oldest, is in use by another run
        data = _data(seed=14)
        newer = _cache(teacher, tmp, data, loss, cap_gb=cap_for(data, 2.5))
    assert folders[1].exists() and not folders[2].exists() and new.folder.exists() and newer.folder.exists()
