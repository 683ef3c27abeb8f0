"""Fine-tune step speed: ours vs PaddleNLP's and transformers' RoFormerForSequenceClassification; and the saving of
length-bucketed eval batches.

    python benchmarks/bench_finetune.py [--widths tiny,base] [--batch 32] [--seq 128] [--runs 3] [--steps 3] [--warmup 3]

"Ours" is ``ernie_style.training.trainer.TrainStep`` running the ``seq_cls`` task (the exact code ``ernie_style.finetune``
runs: the task's model, loss and metrics, AdamW + global-norm clipping through the AMP path, LR schedule).
"Ours" runs with the process settings ``ernie_style.training.distributed.init_distributed`` applies on CPU
(``ernie_style.training.cpu_runtime``: malloc keeps freed memory, Paddle's stride kernels off); "PaddleNLP (tuned)" (``paddlenlp_tuned``) is
PaddleNLP's step with those same settings, to show what comes from them and what from the model code.
"PaddleNLP" is what a PaddleNLP user writes: ``paddlenlp.transformers.RoFormerForSequenceClassification`` +
cross-entropy + ``paddle.optimizer.AdamW`` (same lr, betas, eps, weight decay on the same parameters, clip 1.0).
"torch" is ``transformers.RoFormerForSequenceClassification`` + ``torch.optim.AdamW`` + ``clip_grad_norm_`` on
CPU with as many threads as OMP_NUM_THREADS. Same config (vocab 21128, the width's sizes, dropout 0.1, 2 labels),
same synthetic batch (batch x seq, no padding, two segments).

Each measurement is its own process (a fresh allocator and thread pool); the variants alternate in every run
(interleaved, the order rotating), each process reports the median of --steps timed steps after --warmup, and the
printed ratios are medians over runs of the per-run ratios (this VM drifts by tens of percent over minutes).

Eval: a dev set of --eval-examples texts with lengths drawn from two shapes (short, TNEWS-like; long,
ChnSentiCorp-like, capped at --seq) run through our eval (length-bucketed batches) and the same examples padded to
--seq in input order; the model forward in eval mode, no grad, median of --runs.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VOCAB = 21128
WIDTHS = {  # hidden, layers, heads, ffn
    "tiny": dict(hidden_size=128, num_hidden_layers=2, num_attention_heads=4, intermediate_size=512),
    "base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072),
}
OPTIM = dict(lr=2e-5, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.01, clip=1.0)
NUM_LABELS = 2


def model_dict(width: str) -> dict:
    return dict(vocab_size=VOCAB, hidden_act="gelu", hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1,
                max_position_embeddings=512, type_vocab_size=2, initializer_range=0.02, layer_norm_eps=1e-12,
                pad_token_id=0, rotary_value=False, **WIDTHS[width])


def synthetic_batch(batch: int, seq: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    ids = rng.integers(5, VOCAB, size=(batch, seq)).astype(np.int64)
    ids[:, 0] = 2  # [CLS]
    types = np.zeros_like(ids)
    types[:, seq // 2:] = 1
    return {"input_ids": ids, "token_type_ids": types, "attention_mask": np.ones((batch, seq), np.int64),
            "labels": rng.integers(0, NUM_LABELS, size=batch).astype(np.int64)}


def eval_lengths(shape: str, n: int, seq: int, seed: int = 0) -> np.ndarray:
    """Token counts ([CLS] text [SEP]) of a dev set: "short" ~ TNEWS titles, "long" ~ ChnSentiCorp reviews."""
    rng = np.random.default_rng(seed)
    if shape == "short":
        lengths = rng.normal(24, 8, size=n)
    else:
        lengths = rng.lognormal(np.log(110), 0.6, size=n)
    return np.clip(np.round(lengths), 4, seq).astype(np.int64)


# ---------------------------------------------------------------------------------------------- workers


def _task(width, batch_size, seq):
    """The seq_cls task as ``ernie_style.finetune`` builds it from a config (random init of the width, a generated
    21128-token vocab, an 8-line training file) and its config for the trainer."""
    import tempfile

    from ernie_style.finetune import prepare
    from ernie_style.config.finetune import load_finetune_config

    tmp = tempfile.mkdtemp(prefix="bench_finetune.")
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    with open(os.path.join(tmp, "vocab.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(specials + [chr(0x4E00 + k) for k in range(VOCAB - len(specials))]) + "\n")
    with open(os.path.join(tmp, "train.tsv"), "w", encoding="utf-8") as f:
        f.write("label\ttext_a\n" + "".join(f"{k % NUM_LABELS}\t{chr(0x4E00 + k) * 20}\n" for k in range(8)))
    arch = {f"model.{k}": v for k, v in model_dict(width).items() if k not in ("vocab_size", "pad_token_id")}
    cfg = load_finetune_config(None, [f"{k}={v}" for k, v in {
        "task.type": "seq_cls", "model.init": "random", "data.vocab_file": os.path.join(tmp, "vocab.txt"),
        "data.train_file": os.path.join(tmp, "train.tsv"), "data.dev_file": os.path.join(tmp, "train.tsv"),
        "data.max_seq_len": seq, "train.micro_batch_size": batch_size, "train.output_dir": os.path.join(tmp, "out"),
        "optim.max_lr": OPTIM["lr"], "optim.weight_decay": OPTIM["weight_decay"], **arch}.items()])
    return prepare(cfg, 1)


def _ours(width, batch):
    """The step ``ernie_style.finetune`` runs: ``TrainStep`` over the seq_cls task's model, with the optimizer,
    schedule and AMP the trainer builds."""
    import contextlib

    import paddle

    from ernie_style.training.amp import Amp
    from ernie_style.training.cpu_runtime import tune_cpu_process
    from ernie_style.training.distributed import DistInfo
    from ernie_style.training.optim import GradNorm, WarmupLinearDecay, build_optimizer
    from ernie_style.training.trainer import TrainStep

    b, seq = batch["input_ids"].shape
    runtime = tuple(tune_cpu_process())  # what init_distributed applies on CPU
    task, run = _task(width, b, seq)
    paddle.seed(0)
    model = task.build_model()
    model.train()
    sched = WarmupLinearDecay(run.optim)
    opt = build_optimizer(model, run.optim, sched)
    amp = Amp(run.amp, "cpu", log=lambda m: None)
    model, opt = amp.decorate(model, opt)
    step = TrainStep(task, model, opt, sched, amp, contextlib.nullcontext, GradNorm(model.parameters()),
                     DistInfo(0, 1, 0, "cpu", runtime), b)
    micro = {**batch, "num_tokens": int(batch["attention_mask"].sum())}
    return lambda: step([micro])


def _paddlenlp_tuned(width, batch):
    """PaddleNLP's step in a process with our CPU process settings (``ernie_style.training.cpu_runtime``): how much of the
    difference is the model code and how much the process settings."""
    from ernie_style.training.cpu_runtime import tune_cpu_process

    tune_cpu_process()
    return _paddlenlp(width, batch)


def _paddlenlp(width, batch):
    import paddle
    import paddle.nn.functional as F
    from paddlenlp.transformers import RoFormerConfig, RoFormerForSequenceClassification

    paddle.seed(0)
    model = RoFormerForSequenceClassification(RoFormerConfig(**model_dict(width), num_labels=NUM_LABELS))
    model.train()
    no_decay = {p.name for n, p in model.named_parameters() if p.ndim < 2}
    opt = paddle.optimizer.AdamW(learning_rate=OPTIM["lr"], parameters=model.parameters(), beta1=OPTIM["beta1"],
                                 beta2=OPTIM["beta2"], epsilon=OPTIM["eps"], weight_decay=OPTIM["weight_decay"],
                                 apply_decay_param_fun=lambda name: name not in no_decay,
                                 grad_clip=paddle.nn.ClipGradByGlobalNorm(OPTIM["clip"]))
    t = {k: paddle.to_tensor(v) for k, v in batch.items()}

    def step():
        logits = model(t["input_ids"], token_type_ids=t["token_type_ids"], attention_mask=t["attention_mask"])
        loss = F.cross_entropy(logits, t["labels"])
        loss.backward()
        opt.step()
        opt.clear_grad()
        return float(loss)

    return step


def _torch(width, batch):
    import torch
    import transformers

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    torch.manual_seed(0)
    cfg = transformers.RoFormerConfig(**model_dict(width), num_labels=NUM_LABELS)
    model = transformers.RoFormerForSequenceClassification(cfg).train()
    decay = [p for p in model.parameters() if p.ndim >= 2]
    rest = [p for p in model.parameters() if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": OPTIM["weight_decay"]},
                             {"params": rest, "weight_decay": 0.0}], lr=OPTIM["lr"],
                            betas=(OPTIM["beta1"], OPTIM["beta2"]), eps=OPTIM["eps"])
    t = {k: torch.from_numpy(v) for k, v in batch.items()}

    def step():
        out = model(input_ids=t["input_ids"], token_type_ids=t["token_type_ids"],
                    attention_mask=t["attention_mask"], labels=t["labels"])
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), OPTIM["clip"])
        opt.step()
        opt.zero_grad(set_to_none=True)
        return float(out.loss)

    return step


class _PaddedSplit:
    """The counterfactual: batches in input order, every one padded to ``seq``."""

    def __init__(self, split, seq, pad_id):
        self.split, self.seq, self.pad_id = split, seq, pad_id

    def batches(self, rank, world):
        n, b = len(self.split.features), self.split.batch_size
        for k in range(0, n, b):
            chunk = np.arange(k, min(k + b, n))
            batch = self.split.collator([self.split.features[i] for i in chunk])
            for key in ("input_ids", "token_type_ids", "attention_mask"):
                a = batch[key]
                fill = self.pad_id if key == "input_ids" else 0
                batch[key] = np.pad(a, ((0, 0), (0, self.seq - a.shape[1])), constant_values=fill)
            batch["index"] = chunk
            yield batch

    def accumulator(self):
        return self.split.accumulator()


def _eval(width, shape, args):
    """Our dev evaluation (``BucketedEvalSplit`` + the loop of ``Trainer.evaluate``) vs the same with padding."""
    import paddle

    from ernie_style.training.distributed import DistInfo
    from ernie_style.tasks.finetuning import BucketedEvalSplit

    lengths = eval_lengths(shape, args.eval_examples, args.seq)
    rng = np.random.default_rng(1)
    task, _ = _task(width, args.eval_batch, args.seq)
    features = [{"input_ids": [2] + rng.integers(5, VOCAB, size=n - 2).tolist() + [3], "token_type_ids": [0] * n,
                 "label": k % NUM_LABELS} for k, n in enumerate(lengths)]
    task.dev_features = features
    paddle.seed(0)
    model = task.build_model()
    model.eval()
    info = DistInfo(0, 1, 0, "cpu")
    bucketed = BucketedEvalSplit("dev", features, args.eval_batch, task.collate, task)
    padded = _PaddedSplit(bucketed, args.seq, task.tokenizer.pad_id)

    def run(split):
        slots, acc = 0, split.accumulator()
        t0 = time.perf_counter()
        with paddle.no_grad():
            for batch in split.batches(info.rank, info.world_size):
                t = {key: paddle.to_tensor(batch[key]) for key in task.tensor_keys}
                acc.add(batch, t, task.forward(model, t))
                slots += batch["input_ids"].size
        metrics = acc.result(info)
        return time.perf_counter() - t0, slots, metrics, bucketed.last_rows

    run(bucketed)  # warm-up
    bucketed_s, bucketed_slots, m_b, rows_b = run(bucketed)
    padded_s, padded_slots, m_p, rows_p = run(padded)
    return {"bucketed_s": bucketed_s, "padded_s": padded_s, "bucketed_slots": bucketed_slots,
            "padded_slots": padded_slots, "mean_len": float(lengths.mean()),
            "max_logit_diff": float(np.max(np.abs(rows_b - rows_p))), "max_metric_diff": max(abs(m_b[k] - m_p[k]) for k in m_b)}


def worker(args) -> dict:
    if args.worker.startswith("eval-"):
        return _eval(args.width, args.worker.split("-", 1)[1], args)
    batch = synthetic_batch(args.batch, args.seq)
    step = {"ours": _ours, "paddlenlp": _paddlenlp, "paddlenlp_tuned": _paddlenlp_tuned,
            "torch": _torch}[args.worker](args.width, batch)
    times = []
    for i in range(args.warmup + args.steps):
        t0 = time.perf_counter()
        step()
        if i >= args.warmup:
            times.append(time.perf_counter() - t0)
    return {"step_s": statistics.median(times)}


def _spawn(args, width, name) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", name, "--width", width, "--batch", str(args.batch),
           "--seq", str(args.seq), "--steps", str(args.steps), "--warmup", str(args.warmup),
           "--eval-examples", str(args.eval_examples), "--eval-batch", str(args.eval_batch)]
    out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": REPO})
    if out.returncode != 0:
        raise RuntimeError(f"{name} ({width}) failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--widths", default="tiny,base", help="comma list of: " + ", ".join(WIDTHS))
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--runs", type=int, default=3, help="interleaved runs (each a fresh process per variant)")
    p.add_argument("--steps", type=int, default=3, help="timed steps per process (median)")
    p.add_argument("--warmup", type=int, default=3,
                   help="untimed steps first (with malloc keeping freed memory the heap reaches its size in ~3)")
    p.add_argument("--eval-examples", type=int, default=512)
    p.add_argument("--eval-batch", type=int, default=64)
    p.add_argument("--no-eval", action="store_true", help="skip the eval bucketing measurement")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--width", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args)))
        return 0
    print(f"seq_cls fine-tune step, batch {args.batch} x seq {args.seq}, vocab {VOCAB}, {NUM_LABELS} labels; "
          f"{args.runs} interleaved runs, median of {args.steps} steps after {args.warmup} warm-up per process; "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}")
    variants = ["ours", "paddlenlp", "paddlenlp_tuned", "torch"]
    for width in args.widths.split(","):
        per_run = {v: [] for v in variants}
        for r in range(args.runs):
            order = variants[r % len(variants):] + variants[:r % len(variants)]
            for v in order:
                per_run[v].append(_spawn(args, width, v)["step_s"])
            print(f"  {width} run {r + 1}: " + "  ".join(f"{v} {per_run[v][-1] * 1000:.0f} ms" for v in variants),
                  flush=True)
        med = {v: statistics.median(per_run[v]) for v in variants}
        r_pn = statistics.median(o / b for o, b in zip(per_run["ours"], per_run["paddlenlp"]))
        r_t = statistics.median(o / b for o, b in zip(per_run["ours"], per_run["torch"]))
        r_pt = statistics.median(o / b for o, b in zip(per_run["ours"], per_run["paddlenlp_tuned"]))
        print(f"{width}: step ours {med['ours'] * 1000:.0f} ms, PaddleNLP {med['paddlenlp'] * 1000:.0f} ms "
              f"({med['paddlenlp_tuned'] * 1000:.0f} ms with our CPU process settings), torch {med['torch'] * 1000:.0f} "
              f"ms; ours/PaddleNLP {r_pn:.3f} (goal <= 0.8; {r_pt:.3f} against PaddleNLP with our process "
              f"settings), ours/torch {r_t:.3f}")
    if not args.no_eval:
        width = args.widths.split(",")[0]
        for shape in ("short", "long"):
            res = [_spawn(args, width, f"eval-{shape}") for _ in range(args.runs)]
            bucketed = statistics.median(x["bucketed_s"] for x in res)
            padded = statistics.median(x["padded_s"] for x in res)
            r0 = res[0]
            print(f"eval {width}, {shape} texts ({args.eval_examples} examples, mean length {r0['mean_len']:.0f} of "
                  f"{args.seq}): bucketed {bucketed:.2f} s ({r0['bucketed_slots']} token slots) vs padded to "
                  f"{args.seq} {padded:.2f} s ({r0['padded_slots']} slots): {100 * (1 - bucketed / padded):.0f}% "
                  f"less time (same logits within {r0['max_logit_diff']:.0e}, metrics within "
                  f"{r0['max_metric_diff']:.0e})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
