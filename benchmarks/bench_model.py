"""Forward+backward step time: ernie_style's pretraining model vs what a PaddleNLP user writes.

--arch roformer (default)
  ours:      RoFormerForPretraining with the gathered MLM head (15% of the positions masked) + SOP head,
             loss from ernie_style.tasks.pretrain.pretraining_loss.
  reference: paddlenlp.transformers.RoFormerForMaskedLM computing logits at every position (labels -100 elsewhere)
             + nn.Linear(hidden, 2) SOP classifier on the pooled output, cross-entropy for both.
--arch bert
  ours:      BertForPretraining, the same gathered MLM head + SOP head and loss.
  reference: paddlenlp.transformers.BertForPretraining as its pretraining example calls it, twice: with
             ``masked_positions`` (its own gathered head: "paddlenlp_gathered") and without (logits at every
             position: "paddlenlp_full_head", the reference of the ratio, as for RoFormer).

Both models hold the same weights, run in training mode (dropout on) in the same process, and their steps are
interleaved so machine load hits both alike. Prints the median of --steps timed steps after --warmup steps, and
the ratio reference / ours (> 1 means ours is faster). A second table times the MLM head + loss alone on a
fixed encoder output, which is where the gathered head saves (the encoder is the same math in both).

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_model.py                # tiny and base (seq 512)
    .venv/bin/python benchmarks/bench_model.py --configs tiny --steps 20
    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_model.py --arch bert    # BERT-base: 12 x 768, seq 512
"""

import argparse
import os
import statistics
import time

import numpy as np
import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from ernie_style.arch.bert.modeling import BertConfig, BertForPretraining
from ernie_style.arch.bert.paddlenlp import load_state_dict_checked as load_bert
from ernie_style.arch.roformer.modeling import RoFormerConfig, RoFormerForPretraining
from ernie_style.arch.roformer.paddlenlp import load_state_dict_checked
from ernie_style.tasks.pretrain import pretraining_loss

VOCAB = 21128  # the Chinese BERT/ERNIE character vocab used by roformer_base_wwm_cluecorpussmall
CONFIGS = {
    # name: (model kwargs, batch, seq_len)
    "tiny": (dict(hidden_size=128, num_hidden_layers=2, num_attention_heads=2, intermediate_size=512), 8, 128),
    "base": (dict(), 2, 512),  # RoFormer-base: 12 x 768, 12 heads, FFN 3072
}


def make_batch(batch, seq, rng, mask_prob=0.15):
    ids = rng.integers(5, VOCAB, size=(batch, seq))
    ids[:, 0] = 1  # [CLS]
    types = np.zeros_like(ids)
    types[:, seq // 2 :] = 1
    n_mask = max(1, int(round(batch * seq * mask_prob)))
    flat = np.sort(rng.choice(np.arange(batch * seq), size=n_mask, replace=False))
    labels = ids.reshape(-1)[flat].copy()
    full_labels = np.full(batch * seq, -100)
    full_labels[flat] = labels
    sop = rng.integers(0, 2, size=batch)
    t = paddle.to_tensor
    return dict(ids=t(ids), types=t(types), positions=t(flat), labels=t(labels),
                full_labels=t(full_labels.reshape(batch, seq)), sop=t(sop))  # fmt: skip


def build(kw):
    import paddlenlp.transformers as pnlp

    cfg = RoFormerConfig(vocab_size=VOCAB, **kw)
    pcfg = pnlp.RoFormerConfig(vocab_size=VOCAB, embedding_size=cfg.embedding_size, **kw)
    paddle.seed(0)
    ref = pnlp.RoFormerForMaskedLM(pcfg)
    ref_sop = nn.Linear(cfg.hidden_size, 2)
    ours = RoFormerForPretraining(cfg)
    load_state_dict_checked(ours, ref.state_dict(), allow_missing_heads=True)
    ref.train()
    ours.train()
    return ours, ref, ref_sop


def build_bert(kw):
    """(ours, PaddleNLP BertForPretraining) with the same weights (PaddleNLP's init loaded into ours)."""
    import paddlenlp.transformers as pnlp

    kw = dict(vocab_size=VOCAB, max_position_embeddings=512, type_vocab_size=2, **kw)  # PaddleNLP's default: 16 types
    paddle.seed(0)
    ref = pnlp.BertForPretraining(pnlp.BertConfig(**kw))
    ours = BertForPretraining(BertConfig(**kw))
    load_bert(ours, ref.state_dict())
    ref.train()
    ours.train()
    return ours, ref


def step_ref_bert(model, b, gathered):
    """PaddleNLP BertForPretraining: its gathered head (``masked_positions``) or logits at every position."""
    if gathered:
        mlm, sop = model(b["ids"], token_type_ids=b["types"], masked_positions=b["positions"])[:2]
        lm = F.cross_entropy(mlm, b["labels"].unsqueeze(-1))
    else:
        mlm, sop = model(b["ids"], token_type_ids=b["types"])[:2]
        lm = F.cross_entropy(mlm.reshape([-1, VOCAB]), b["full_labels"].reshape([-1, 1]), ignore_index=-100)
    loss = lm + F.cross_entropy(sop, b["sop"].unsqueeze(-1))
    loss.backward()
    model.clear_gradients()
    return float(loss)


def step_ours(model, b):
    mlm, sop = model(b["ids"], b["types"], masked_positions=b["positions"])
    loss = pretraining_loss(mlm, sop, b["labels"], b["sop"])[0]
    loss.backward()
    model.clear_gradients()
    return float(loss)


def step_ref(model, sop_head, b):
    seq_out, pooled = model.roformer(b["ids"], token_type_ids=b["types"])[:2]
    logits = model.cls(seq_out)  # (B, L, V): every position
    lm = F.cross_entropy(logits.reshape([-1, VOCAB]), b["full_labels"].reshape([-1, 1]), ignore_index=-100)
    loss = lm + F.cross_entropy(sop_head(pooled), b["sop"].unsqueeze(-1))
    loss.backward()
    model.clear_gradients()
    sop_head.clear_gradients()
    return float(loss)


def head_runners(ours, ref, b, hidden_size, encoder="roformer"):
    """MLM head + its loss alone, on a fixed encoder output: where the gathered head saves its time."""
    batch, seq = b["ids"].shape
    h = paddle.randn([batch, seq, hidden_size])
    h.stop_gradient = False
    words = getattr(ours, encoder).embeddings.word_embeddings.weight
    ref_head_fn = ref.cls.predictions if encoder == "bert" else ref.cls  # PaddleNLP's MLM head: h -> (B, L, V)

    def ours_head():
        x = paddle.gather(h.reshape([-1, hidden_size]), b["positions"])  # (K, H)
        F.cross_entropy(ours.cls.predictions(x, words), b["labels"].unsqueeze(-1)).backward()
        ours.clear_gradients()

    def ref_head():
        logits = ref_head_fn(h).reshape([-1, VOCAB])  # (B*L, V)
        F.cross_entropy(logits, b["full_labels"].reshape([-1, 1]), ignore_index=-100).backward()
        ref.clear_gradients()

    return {"paddlenlp_full_head": ref_head, "ours_gathered_head": ours_head}


def timed(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def run(name, steps, warmup, impls, arch="roformer"):
    kw, batch, seq = CONFIGS[name]
    b = make_batch(batch, seq, np.random.default_rng(0))
    if arch == "bert":
        ours, ref = build_bert(kw)
        runners = {"paddlenlp_full_head": lambda: step_ref_bert(ref, b, gathered=False),
                   "paddlenlp_gathered": lambda: step_ref_bert(ref, b, gathered=True)}
    else:
        ours, ref, ref_sop = build(kw)
        runners = {"paddlenlp_full_head": lambda: step_ref(ref, ref_sop, b)}
    for impl in impls:
        runners[f"ours_{impl}"] = (lambda impl=impl: (ours.set_attention_impl(impl), step_ours(ours, b)))
    title = (f"[{arch} {name}] batch={batch} seq={seq} vocab={VOCAB} hidden={ours.config.hidden_size} "
             f"layers={ours.config.num_hidden_layers} masked={b['positions'].shape[0]} steps={steps} "
             f"warmup={warmup} OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}")  # fmt: skip
    report(title + "\n  full model step (forward + backward):", runners, steps, warmup)
    report("  MLM head + loss only (forward + backward):",
           head_runners(ours, ref, b, ours.config.hidden_size, arch), steps, warmup)


def report(title, runners, steps, warmup):
    times = {k: [] for k in runners}
    for i in range(warmup + steps):
        for key, fn in runners.items():  # interleaved: load drifts hit every variant alike
            dt = timed(fn)
            if i >= warmup:
                times[key].append(dt)
    ref_med = statistics.median(times["paddlenlp_full_head"])
    print("\n" + title)
    for key, ts in times.items():
        med = statistics.median(ts)
        print(f"  {key:22s} median {med * 1e3:9.1f} ms/step  (min {min(ts) * 1e3:9.1f})  "
              f"ratio paddlenlp/this = {ref_med / med:5.2f}  this/paddlenlp = {med / ref_med:5.2f}")  # fmt: skip


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", default="tiny,base", help="comma list of: " + ", ".join(CONFIGS))
    ap.add_argument("--steps", type=int, default=None, help="timed steps (default: tiny 10, base 3)")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--impls", default="plain,sdpa", help="our kernel sets to time (see ernie_style.arch.common.kernels)")
    ap.add_argument("--arch", default="roformer", choices=["roformer", "bert"], help="the architecture to time")
    args = ap.parse_args()
    paddle.set_device("gpu" if paddle.is_compiled_with_cuda() and paddle.device.cuda.device_count() else "cpu")
    print(f"device={paddle.get_device()} paddle={paddle.__version__}")
    for name in args.configs.split(","):
        if name not in CONFIGS:
            raise SystemExit(f"--configs: unknown config {name!r}; expected one of {', '.join(CONFIGS)}")
        steps = args.steps or (10 if name == "tiny" else 3)
        run(name, steps, args.warmup, args.impls.split(","), args.arch)


if __name__ == "__main__":
    main()
