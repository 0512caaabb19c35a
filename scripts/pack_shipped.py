"""Pack finished runs into the models that ship with KASP (assets/models/, kasp/models/shipped.py).

    .venv/bin/python scripts/pack_shipped.py --store runs/ship        # after scripts/train_shipped.sh

For each finished run ``<store>/<task>-<name>``: its weights in the compact export, its run record, and
``shipped.json`` with the dev metrics measured on exactly the packed weights (unpacked again and scored on
the whole dev set, as the app's tests re-score them); then ``assets/models/manifest.json``, and each student's
``retention.json`` against the shipped teacher (measured on the unpacked store, as the app reads it). Refuses a
student whose word embeddings were trained (it would not share them: 23 MB more).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import kasp.models.shipped as shipped  # noqa: E402
from kasp.analysis.retention import run_retention  # noqa: E402
from kasp.ground.runs import RunDir  # noqa: E402
from kasp.models.export import export_sparse, unpack, weight_files  # noqa: E402
from kasp.models.shipped import MANIFEST, RUN_FILES, _sha256  # noqa: E402
from kasp.training.evaluate import evaluate_checkpoint  # noqa: E402

RETENTION_SAMPLES = 128  # the Attention page's default number of dev examples
MAX_FILE_BYTES = 15_000_000  # weights in parts below this, so that no file in the repository reaches 20 MB


def pack(run: RunDir, task: str, name: str, out: Path, teacher: str | None) -> dict:
    rec = run.recipe()
    if not rec.get("freeze_word_embeddings"):
        raise SystemExit(f"{run.path}: trained without --freeze-word-embeddings; its embeddings cannot be shared")
    dest = out / task / name
    tmp = Path(tempfile.mkdtemp(dir=out, prefix=f".{task}-{name}."))
    try:
        sizes = export_sparse(run.checkpoint, tmp / "compact", compact=True, max_file_bytes=MAX_FILE_BYTES)
        for f in RUN_FILES:
            if (run.path / f).is_file() and f not in ("shipped.json", "retention.json"):
                shutil.copy2(run.path / f, tmp / f)
        with tempfile.TemporaryDirectory() as scratch:
            ck = unpack(tmp / "compact", Path(scratch) / "ck")
            res = evaluate_checkpoint(str(ck), task, max_seq_length=int(rec.get("max_seq_length") or 128))
        info = {"task": task, "name": name, "teacher": teacher, "bytes": sizes["file"],
                "dev": res["metrics"], "max_seq_length": res["max_length"],
                "measured": "the packed weights, unpacked (float16 values as float32), on the whole dev set",
                "trained_as": run.id, "recipe": rec}
        (tmp / "shipped.json").write_text(json.dumps(info, indent=2), encoding="utf-8")
        shutil.rmtree(dest, ignore_errors=True)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp.rename(dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {"task": task, "name": name, "teacher": teacher,
            "files": {f.name: _sha256(f) for f in weight_files(dest / "compact")}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--store", default=str(ROOT / "runs" / "ship"), help="the run store of scripts/train_shipped.sh")
    ap.add_argument("--out", default=str(ROOT / "assets" / "models"))
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    runs = [RunDir(p) for p in sorted(Path(a.store).iterdir()) if p.is_dir() and (p / "status.json").is_file()]
    runs = [r for r in runs if r.state() == "done" and r.checkpoint.is_dir()]
    teachers = {str(r.path.resolve()): r for r in runs if r.recipe().get("kind") == "finetune"}
    entries = []
    for r in sorted(runs, key=lambda r: r.recipe().get("kind") != "finetune"):
        task = r.recipe()["task"]
        name = r.path.name.removeprefix(f"{task}-")
        tpath = (r.report().get("teacher") or {}).get("path")
        t = next((teachers[k] for k in teachers if tpath and Path(tpath).resolve().is_relative_to(Path(k))), None)
        teacher = t.path.name.removeprefix(f"{task}-") if t is not None else None
        if r.recipe().get("kind") != "finetune" and teacher is None:
            raise SystemExit(f"{r.path}: its teacher ({tpath}) is not among the runs packed; pack it too")
        e = pack(r, task, name, out, teacher)
        info = json.loads((out / task / name / "shipped.json").read_text())
        print(f"packed {task}/{name}: {info['bytes'] / 1e6:.1f} MB, dev {info['dev']}", flush=True)
        entries.append(e)
    m = {"packed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "runs": entries}
    (out / MANIFEST).write_text(json.dumps(m, indent=2) + "\n", encoding="utf-8")
    # the students' retention against the shipped teacher, measured on the packed weights as the app unpacks them
    models_dir, shipped.models_dir = shipped.models_dir, lambda: out
    try:
        with tempfile.TemporaryDirectory() as cache:
            store = shipped.shipped_store(cache)
            for e in entries:
                if e["teacher"]:
                    run_retention(store / shipped.run_id(e["task"], e["name"]), samples=RETENTION_SAMPLES)
                    shutil.copy2(store / shipped.run_id(e["task"], e["name"]) / "retention.json", out / e["task"] / e["name"])
                    print(f"measured retention of {e['task']}/{e['name']} on {RETENTION_SAMPLES} dev examples", flush=True)
    finally:
        shipped.models_dir = models_dir  # the packing's store only; the installed models stay as they were
    m["packed_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())  # a new key: the app unpacks the retention too
    (out / MANIFEST).write_text(json.dumps(m, indent=2) + "\n", encoding="utf-8")
    total = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print(f"wrote {out / MANIFEST}: {len(entries)} models, {total / 1e6:.1f} MB in {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
