"""Training-step speed: ours vs the same step built from PaddleNLP's RoFormerModel.

    python benchmarks/bench_train.py configs/roformer_tiny_demo.yaml [--batch 8] [--seq 512] [key=value ...]

"Ours" is ``ernie_style.training.trainer.TrainStep`` (the exact code the trainer runs: gathered MLM head over the
masked positions only, AdamW + clipping through the AMP path).  "PaddleNLP" is what a PaddleNLP user
writes: ``paddlenlp.transformers.RoFormerModel`` + an MLM head computing logits for every position
(decoder tied to the word embeddings) + an SOP classifier, cross-entropy with ignore_index, the same
optimizer.  Both get the same synthetic batch (seq = --seq, 15% masked) and the same config.

Each variant runs in its own process (so peak RSS is its own); the figure is the median of --steps timed
steps after --warmup.  Also prints a GPU estimate for the reference recipe (from FLOPs; run this script on a GPU to measure it).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BASE_CONFIG = os.path.join(REPO, "configs", "roformer_base_wwm_cluecorpussmall.yaml")
# Dense fp16/bf16 tensor-core peaks (vendor datasheets): V100 SXM2, A100 SXM4, H100 SXM5.
GPU_PEAK_TFLOPS = {"V100": 125.0, "A100": 312.0, "H100": 989.0}


def _load(config, overrides, vocab_size):
    from ernie_style.config.pretrain import load_config

    return load_config(config, [f"model.vocab_size={vocab_size}", "data.vocab_file=", *overrides])


def synthetic_batch(batch, seq, vocab_size, seed=0, mask_prob=0.15):
    rng = np.random.default_rng(seed)
    ids = rng.integers(5, vocab_size, size=(batch, seq)).astype(np.int64)
    ids[:, 0] = 2
    types = np.zeros((batch, seq), np.int64)
    types[:, seq // 2:] = 1
    n_mask = max(1, int(round(seq * mask_prob)))
    pos = np.stack([np.sort(rng.choice(np.arange(1, seq), n_mask, replace=False)) for _ in range(batch)])
    labels = ids[np.arange(batch)[:, None], pos]
    flat = (pos + np.arange(batch)[:, None] * seq).reshape(-1)
    return {
        "input_ids": ids, "token_type_ids": types, "attention_mask": np.ones((batch, seq), np.int64),
        "masked_positions": flat, "masked_labels": labels.reshape(-1),
        "sop_labels": rng.integers(0, 2, size=batch).astype(np.int64),
        "num_tokens": batch * seq, "padding_fraction": 0.0,
    }


def _ours(cfg, batch):
    import paddle

    from ernie_style.arch.roformer.modeling import RoFormerForPretraining
    from ernie_style.training.amp import Amp
    from ernie_style.training.distributed import DistInfo
    from ernie_style.training.optim import GradNorm, WarmupLinearDecay, build_optimizer
    from ernie_style.training.trainer import TrainStep

    info = DistInfo(0, 1, 0, "gpu" if paddle.device.is_compiled_with_cuda() and
                    paddle.device.cuda.device_count() > 0 else "cpu")
    paddle.seed(0)
    model = RoFormerForPretraining(cfg.model)
    sched = WarmupLinearDecay(cfg.optim)
    opt = build_optimizer(model, cfg.optim, sched)
    amp = Amp(cfg.amp, info.device, log=lambda m: None)
    model, opt = amp.decorate(model, opt)
    import contextlib

    from ernie_style.tasks.pretrain import PretrainTask

    step = TrainStep(PretrainTask(cfg), model, opt, sched, amp, contextlib.nullcontext, GradNorm(model.parameters()),
                     info, len(batch["sop_labels"]))
    return lambda: step([batch])


def _paddlenlp(cfg, batch):
    import paddle
    import paddle.nn as nn
    import paddle.nn.functional as F
    from paddlenlp.transformers import RoFormerConfig, RoFormerModel

    from ernie_style.training.amp import Amp
    from ernie_style.training.optim import WarmupLinearDecay, build_optimizer

    m = cfg.model
    pcfg = RoFormerConfig(vocab_size=m.vocab_size, embedding_size=m.embedding_size, hidden_size=m.hidden_size,
                          num_hidden_layers=m.num_hidden_layers, num_attention_heads=m.num_attention_heads,
                          intermediate_size=m.intermediate_size, hidden_act=m.hidden_act,
                          hidden_dropout_prob=m.hidden_dropout_prob,
                          attention_probs_dropout_prob=m.attention_probs_dropout_prob,
                          max_position_embeddings=m.max_position_embeddings, type_vocab_size=m.type_vocab_size,
                          layer_norm_eps=m.layer_norm_eps, rotary_value=m.rotary_value)

    class Pretraining(nn.Layer):
        """RoFormerModel + full-sequence MLM logits [B, L, V] + SOP logits [B, 2]."""

        def __init__(self):
            super().__init__()
            self.roformer = RoFormerModel(pcfg)
            self.transform = nn.Linear(m.hidden_size, m.embedding_size)
            self.layer_norm = nn.LayerNorm(m.embedding_size, epsilon=m.layer_norm_eps)
            self.decoder_bias = self.create_parameter([m.vocab_size], is_bias=True)
            self.sop = nn.Linear(m.hidden_size, 2)

        def forward(self, input_ids, token_type_ids, attention_mask):
            # attention_mask=None: PaddleNLP builds it from pad ids (the synthetic batch has none)
            seq, pooled = self.roformer(input_ids, token_type_ids=token_type_ids)
            h = self.layer_norm(F.gelu(self.transform(seq)))
            logits = paddle.matmul(h, self.roformer.embeddings.word_embeddings.weight, transpose_y=True)
            return logits + self.decoder_bias, self.sop(pooled)

    paddle.seed(0)
    model = Pretraining()
    sched = WarmupLinearDecay(cfg.optim)
    opt = build_optimizer(model, cfg.optim, sched)
    amp = Amp(cfg.amp, "cpu", log=lambda m: None)
    b, s = batch["input_ids"].shape
    labels = np.full((b * s,), -100, np.int64)
    labels[batch["masked_positions"]] = batch["masked_labels"]
    t = {k: paddle.to_tensor(v) for k, v in batch.items() if isinstance(v, np.ndarray)}
    labels = paddle.to_tensor(labels.reshape(b, s))

    def step():
        with amp.autocast():
            logits, sop = model(t["input_ids"], t["token_type_ids"], t["attention_mask"])
        lm = F.cross_entropy(logits.astype("float32"), labels.unsqueeze(-1), ignore_index=-100)
        loss = lm + F.cross_entropy(sop.astype("float32"), t["sop_labels"].unsqueeze(-1))
        amp.scale(loss).backward()
        amp.step(opt)
        sched.step()
        opt.clear_grad()
        return float(loss)

    return step


def worker(args) -> dict:
    import paddle

    cfg = _load(args.config, args.overrides, args.vocab_size)
    batch = synthetic_batch(args.batch, args.seq, cfg.model.vocab_size)
    step = (_ours if args.worker == "ours" else _paddlenlp)(cfg, batch)
    times = []
    for i in range(args.warmup + args.steps):
        t0 = time.perf_counter()
        step()
        if paddle.device.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0:
            paddle.device.synchronize()
        if i >= args.warmup:
            times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    return {"step_s": med, "seqs_s": args.batch / med, "tokens_s": args.batch * args.seq / med,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0}


def model_flops_per_step(cfg, global_batch, seq, mask_prob=0.15) -> float:
    """Training FLOPs (fwd + bwd = 3 x fwd, 2 FLOPs per MAC) of our step: encoder matmuls on every token,
    attention scores/values, and the gathered MLM head on masked tokens only."""
    m = cfg.model
    h, layers, ffn, v, e = m.hidden_size, m.num_hidden_layers, m.intermediate_size, m.vocab_size, m.embedding_size
    tokens = global_batch * seq
    per_token_layer = 4 * h * h + 2 * h * ffn  # q,k,v,out + two FFN matmuls (MACs)
    attn = 2 * seq * h  # QK^T and AV per token per layer (MACs)
    head = (h * e + e * v) * mask_prob  # transform + tied decoder on masked tokens only
    macs = tokens * (layers * (per_token_layer + attn) + head)
    return 6.0 * macs  # 2 FLOPs/MAC x 3 (forward + backward)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config")
    p.add_argument("overrides", nargs="*")
    p.add_argument("--batch", type=int, default=None, help="sequences per step (default: train.micro_batch_size)")
    p.add_argument("--seq", type=int, default=None, help="sequence length (default: data.max_seq_len)")
    p.add_argument("--vocab-size", type=int, default=21128, help="vocab size (the Chinese BERT vocab by default)")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--worker", choices=["ours", "paddlenlp"], help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    cfg = _load(args.config, args.overrides, args.vocab_size)
    args.batch = args.batch or cfg.train.micro_batch_size
    args.seq = args.seq or cfg.data.max_seq_len
    if args.worker:
        print(json.dumps(worker(args)))
        return 0

    print(f"config {args.config}: hidden {cfg.model.hidden_size}, layers {cfg.model.num_hidden_layers}, "
          f"vocab {cfg.model.vocab_size}; batch {args.batch} x seq {args.seq}; AMP {cfg.amp.enable} "
          f"(no-op on CPU); median of {args.steps} steps after {args.warmup} warm-up; "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}")
    res = {}
    for name in ("ours", "paddlenlp"):
        cmd = [sys.executable, os.path.abspath(__file__), args.config, *args.overrides, "--batch", str(args.batch),
               "--seq", str(args.seq), "--vocab-size", str(args.vocab_size), "--steps", str(args.steps),
               "--warmup", str(args.warmup), "--worker", name]
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode != 0:
            print(out.stderr[-3000:], file=sys.stderr)
            return 1
        res[name] = json.loads(out.stdout.strip().splitlines()[-1])
        r = res[name]
        print(f"  {name:<10} step {r['step_s'] * 1000:9.1f} ms   {r['seqs_s']:8.2f} seqs/s   "
              f"{r['tokens_s']:10.0f} tokens/s   peak RSS {r['peak_rss_mb']:7.0f} MB")
    ratio = res["ours"]["step_s"] / res["paddlenlp"]["step_s"]
    print(f"  ratio ours / PaddleNLP step time: {ratio:.3f}  (target <= 0.8)")

    base = _load(BASE_CONFIG, [], args.vocab_size)
    gbs, seq = base.train.global_batch_size, base.data.max_seq_len
    flops = model_flops_per_step(base, gbs, seq)
    print(f"\nestimated from FLOPs (not a measurement): roformer_base, seq {seq}, global batch {gbs}: "
          f"{flops / 1e12:.1f} TFLOPs per optimizer step")
    for gpu, peak in GPU_PEAK_TFLOPS.items():
        steps_s = 0.4 * peak * 1e12 / flops
        print(f"  1x {gpu}: at 40% MFU of {peak:.0f} TFLOPS -> {steps_s * gbs:7.0f} seqs/s "
              f"(4x: {4 * steps_s * gbs:7.0f} seqs/s)")
    ref_mfu = 287.0 / gbs * flops / (4 * GPU_PEAK_TFLOPS["V100"] * 1e12)
    print(f"  the reference run's 287 seqs/s on 4x V100 is {100 * ref_mfu:.0f}% MFU by this count")
    return 0


if __name__ == "__main__":
    sys.exit(main())
