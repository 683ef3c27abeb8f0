"""Tiny data and configs for the trainer tests; the synthetic-corpus writer the dataset tests share (this file
imports only the repository's packages: benchmarks/check_invariant.py loads it by path)."""
import os
import subprocess
import sys
from typing import Callable, Tuple

import numpy as np

from data_tools.indexed_dataset import MMapIndexedDatasetBuilder

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
N_PLAIN = 120
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def write_vocab(path: str, n_plain: int) -> str:
    """BERT-style vocab: the five specials first, then ``n_plain`` CJK characters."""
    with open(path, "w", encoding="utf-8") as f:
        for tok in SPECIALS + [chr(0x4E00 + k) for k in range(n_plain)]:
            f.write(tok + "\n")
    return path


def write_corpus(path_prefix: str, rng, n_docs: int, n_sentences: Callable[[int], int],
                 tokens: Callable[[int], np.ndarray], *, words: Tuple[int, int], word_len: Tuple[int, int]) -> str:
    """A corpus with word-start flags: document ``d`` has ``n_sentences(d)`` sentences, each of
    ``rng.integers(*words)`` words of ``rng.integers(*word_len)`` tokens whose ids are ``tokens(n)`` (the token
    pattern).  The callables may draw from ``rng`` too: the draws interleave, so the corpus is fixed by the seed."""
    builder = MMapIndexedDatasetBuilder(path_prefix, np.uint16, with_wwm=True)
    for d in range(n_docs):
        ids, flags, lengths = [], [], []
        for _ in range(n_sentences(d)):
            word_lens = rng.integers(*word_len, size=int(rng.integers(*words)))
            n = int(word_lens.sum())
            f = np.zeros(n, np.uint8)
            f[np.cumsum(word_lens) - word_lens] = 1
            ids.append(tokens(n))
            flags.append(f)
            lengths.append(n)
        builder.add_document(np.concatenate(ids), lengths, np.concatenate(flags))
    builder.finalize()
    return path_prefix


def make_data(root: str, n_docs: int = 120, seed: int = 0):
    """(prefix, vocab): documents of 2-6 sentences of random 1-3 token words over a 125-entry vocab."""
    os.makedirs(root, exist_ok=True)
    vocab = write_vocab(os.path.join(root, "vocab.txt"), N_PLAIN)
    rng = np.random.default_rng(seed)

    def tokens(n):
        # A learnable pattern: each token mostly follows its predecessor (+1), so MLM loss can fall.
        start = int(rng.integers(len(SPECIALS), len(SPECIALS) + N_PLAIN))
        return (start - len(SPECIALS) + np.arange(n)) % N_PLAIN + len(SPECIALS)

    prefix = write_corpus(os.path.join(root, "tiny"), rng, n_docs, lambda d: int(rng.integers(2, 7)), tokens,
                          words=(4, 12), word_len=(1, 4))
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


def real_enabled_scaler(cls=None, **kw):
    """A real ``paddle.amp.GradScaler`` with ``enable=True`` on CPU.  Paddle turns the scaler off when the current
    place is a CPU (its constructor checks the place only in dynamic mode); the test bypasses that one check so
    that everything else -- the attributes ``ernie_style.training.paddle_internals`` reads,
    state_dict/load_state_dict -- is the real object's, and a rename in Paddle fails here."""
    # Paddle: this file is also loaded by benchmarks/check_invariant.py, which needs none of it
    import paddle
    import paddle.amp.grad_scaler as gs

    cls = cls or paddle.amp.GradScaler
    real = gs.in_dynamic_mode
    gs.in_dynamic_mode = lambda: False
    try:
        return cls(**kw)
    finally:
        gs.in_dynamic_mode = real
