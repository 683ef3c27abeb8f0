"""Tiny data and configs for the trainer tests (own synthetic corpus: no dependency on other fixtures)."""
import os
import subprocess
import sys

import numpy as np

from data_tools.indexed_dataset import MMapIndexedDatasetBuilder

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
N_PLAIN = 120


def make_data(root: str, n_docs: int = 120, seed: int = 0):
    """(prefix, vocab): documents of 2-6 sentences of random 1-3 token words over a 125-entry vocab."""
    os.makedirs(root, exist_ok=True)
    vocab = os.path.join(root, "vocab.txt")
    with open(vocab, "w", encoding="utf-8") as f:
        for tok in SPECIALS + [chr(0x4E00 + k) for k in range(N_PLAIN)]:
            f.write(tok + "\n")
    prefix = os.path.join(root, "tiny")
    rng = np.random.default_rng(seed)
    builder = MMapIndexedDatasetBuilder(prefix, np.uint16, with_wwm=True)
    for _ in range(n_docs):
        ids, flags, lengths = [], [], []
        for _ in range(int(rng.integers(2, 7))):
            word_lens = rng.integers(1, 4, size=int(rng.integers(4, 12)))
            n = int(word_lens.sum())
            # A learnable pattern: each token mostly follows its predecessor (+1), so MLM loss can fall.
            start = int(rng.integers(len(SPECIALS), len(SPECIALS) + N_PLAIN))
            tok = (start - len(SPECIALS) + np.arange(n)) % N_PLAIN + len(SPECIALS)
            f = np.zeros(n, np.uint8)
            f[np.cumsum(word_lens) - word_lens] = 1
            ids.append(tok)
            flags.append(f)
            lengths.append(n)
        builder.add_document(np.concatenate(ids), lengths, np.concatenate(flags))
    builder.finalize()
    return prefix, vocab


def tiny_overrides(prefix: str, vocab: str, out: str, **extra) -> list:
    """Overrides turning the tiny demo config into a seconds-long deterministic run (dropout off)."""
    items = {
        "data.prefixes": f"[{prefix}]", "data.vocab_file": vocab, "data.max_seq_len": 64, "data.num_workers": 0,
        "data.split": "90,5,5",
        "model.hidden_size": 32, "model.num_hidden_layers": 2, "model.num_attention_heads": 2,
        "model.intermediate_size": 64, "model.hidden_dropout_prob": 0.0, "model.attention_probs_dropout_prob": 0.0,
        "train.output_dir": out, "train.micro_batch_size": 8, "train.global_batch_size": 8, "train.max_steps": 3,
        "train.logging_steps": 1, "train.eval_steps": 1000, "train.eval_iters": 1, "train.save_steps": 1000,
        "train.resume": "none", "optim.max_lr": 1e-3, "optim.warmup_steps": 2, "optim.decay_steps": 100,
    }
    items.update(extra)
    return [f"{k}={v}" for k, v in items.items()]


def launch(nproc: int, config: str, overrides: list, log_dir: str, env=None, timeout=240, extra_launch=(),
           entry=("ernie_style.run_pretrain",)):
    """Run ernie_style.run_pretrain through the real paddle.distributed.launch on CPU (``entry``: the module and
    its leading arguments, e.g. ``("tests._faults", "exit", "1", "2", "ernie_style.run_pretrain")``)."""
    cmd = [sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node", str(nproc), "--log_dir", log_dir,
           *extra_launch, sys.executable, "-m", *entry, "--config", config, *overrides]
    e = dict(os.environ, OMP_NUM_THREADS="1")
    e.update(env or {})
    return subprocess.run(cmd, cwd=REPO, env=e, capture_output=True, text=True, timeout=timeout)


def log_losses(path: str) -> dict:
    """{step: 'loss: ...' text} of the ernie-1.0 log lines in a train.log."""
    out = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.startswith("global step "):
                step = int(line.split(",")[0].split()[-1])
                out[step] = line.split(", ")[1]
    return out


def log_fields(path: str) -> dict:
    """{step: {field: float}} of the ernie-1.0 log lines in a train.log (units after a value are dropped)."""
    out = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.startswith("global step "):
                head, *rest = line.rstrip("\n").split(", ")
                out[int(head.split()[-1])] = {k: float(v.split()[0].rstrip("%")) for k, v in
                                              (item.split(": ", 1) for item in rest)}
    return out
