"""Pretraining must not change when the trainer is reshaped (issue 11's invariant): record, then compare.

    python benchmarks/check_invariant.py --record benchmarks/invariant_pretrain.json   # before the change
    python benchmarks/check_invariant.py --check benchmarks/invariant_pretrain.json    # after it

One run = a real 2-process ``paddle.distributed.launch`` of ``ernie_style.run_pretrain`` on the tiny synthetic corpus
of ``tests/_trainer_util.py``: 30 steps, micro batch 4 x accumulation 2 per rank (global 16), dropout on (so the
per-rank RNG streams count), eval every 10 steps.  Recorded: every logged loss (9 decimals as the log line prints
it) and every other field of the log line but the timings, the eval lines, the sha256 of the final weights and
optimizer state, and the final checkpoint's valid/test metrics at 9 decimals (``Trainer.evaluate`` in one process
x micro 8, so the same 16 eval samples, resumed from that checkpoint).  The figures are for this machine's CPU
math; re-record on another machine before comparing there.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)

STEPS = 30
EXTRA = {"model.hidden_dropout_prob": 0.1, "model.attention_probs_dropout_prob": 0.1,
         "train.micro_batch_size": 4, "train.global_batch_size": 16, "train.max_steps": STEPS,
         "train.eval_steps": 10, "train.eval_iters": 2, "train.save_steps": STEPS}


def _sha(state) -> str:
    h = hashlib.sha256()
    for k in sorted(state):
        v = state[k]
        h.update(k.encode())
        h.update(v.numpy().tobytes() if hasattr(v, "numpy") else repr(v).encode())
    return h.hexdigest()


def _trainer_util():
    """tests/_trainer_util.py (the tiny corpus generator shared with the tests), loaded by path."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("_trainer_util", os.path.join(REPO, "tests", "_trainer_util.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(work: str) -> dict:
    import paddle

    U = _trainer_util()

    prefix, vocab = U.make_data(os.path.join(work, "data"))
    out = os.path.join(work, "out")
    config = os.path.join(REPO, "configs", "roformer_tiny_demo.yaml")
    over = U.tiny_overrides(prefix, vocab, out, **EXTRA)
    p = U.launch(2, config, over, os.path.join(work, "log"), timeout=900)
    if p.returncode != 0:
        raise SystemExit(f"launch failed ({p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    log = os.path.join(out, "train.log")
    lines = open(log, encoding="utf-8").read().splitlines()
    train = {str(k): v for k, v in U.log_losses(log).items()}
    fields = U.log_fields(log)
    evals = [ln for ln in lines if ln.startswith(("eval at", "test at"))]
    ck = os.path.join(out, "checkpoints", f"step_{STEPS:08d}")
    weights = _sha(paddle.load(os.path.join(ck, "model_state.pdparams")))
    optim = [_sha(paddle.load(os.path.join(ck, f))) for f in sorted(os.listdir(ck)) if f.endswith(".pdopt")]
    # Metrics at full precision: one process, resumed from the final checkpoint, no further steps.
    code = (
        "import json, sys\n"
        "from ernie_style.config.pretrain import load_config\n"
        "from ernie_style.training.distributed import init_distributed\n"
        "from ernie_style.tasks.pretrain import PretrainTask\n"
        "from ernie_style.training.trainer import Trainer\n"
        "cfg = load_config(sys.argv[1], sys.argv[3:])\n"
        "tr = Trainer(cfg, init_distributed(cfg), PretrainTask(cfg))\n"
        "if hasattr(tr, 'valid_ds'):  # the trainer before the task seam: evaluate(ds, iters, tag)\n"
        "    res = {tag: tr.evaluate(ds, 2, tag) for tag, ds in (('eval', tr.valid_ds), ('test', tr.test_ds))}\n"
        "else:\n"
        "    res = {tag: tr.evaluate(split, tag) for tag, split in (('eval', tr.valid), ('test', tr.test))}\n"
        "json.dump({t: {k: float(v) for k, v in r.items()} for t, r in res.items()}, open(sys.argv[2], 'w'))\n")
    metrics_file = os.path.join(work, "metrics.json")
    over_eval = U.tiny_overrides(prefix, vocab, os.path.join(work, "eval_out"),
                                 **dict(EXTRA, **{"train.resume": ck, "train.micro_batch_size": 8}))
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=REPO)
    e = subprocess.run([sys.executable, "-c", code, config, metrics_file, *over_eval], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=600)
    if e.returncode != 0:
        raise SystemExit(f"eval failed:\n{e.stdout[-3000:]}\n{e.stderr[-3000:]}")
    metrics = json.load(open(metrics_file))
    timing = ("speed", "ips", "tokens/s")
    values = {str(k): {f: x for f, x in v.items() if f not in timing} for k, v in fields.items()}
    return {"train_loss": train, "log_values": values,
            "eval_lines": evals, "weights_sha256": weights, "optimizer_sha256": optim,
            "final_metrics": {t: {k: f"{v:.9f}" for k, v in r.items()} for t, r in metrics.items()}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--record", metavar="JSON")
    g.add_argument("--check", metavar="JSON")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as work:
        now = run(work)
    print(json.dumps({"last_loss": now["train_loss"][str(STEPS)], "final_metrics": now["final_metrics"],
                      "eval_lines": now["eval_lines"], "weights_sha256": now["weights_sha256"]}, indent=1))
    if args.record:
        with open(args.record, "w", encoding="utf-8") as f:
            json.dump(now, f, indent=1, sort_keys=True)
        print(f"recorded {args.record}")
        return 0
    with open(args.check, encoding="utf-8") as f:
        before = json.load(f)
    diffs = [k for k in before if before[k] != now[k]]
    for k in diffs:
        print(f"DIFFERS: {k}\n  before: {before[k]}\n  now:    {now[k]}")
    print("identical" if not diffs else f"{len(diffs)} of {len(before)} records differ")
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main())
