"""Wall time and peak RSS of the converters on a base-size RoFormer (random weights).

    python benchmarks/bench_export.py [--runs 3] [--layers 12] [--hidden 768] [--vocab 18000]

The checkpoint (model_config.json, model_state.pdparams, vocab.txt) is written with numpy +
pickle in paddle.save's format first. Each converter runs in a fresh process; peak RSS is that
process's ru_maxrss (os.wait4). Targets (issue 5): to_pytorch <= 15 s and peak RSS <= 3x the
checkpoint size. Reference, measured in the same run: a naive conversion in a fresh process
(unrestricted pickle.load + safetensors.numpy.save_file of the same tensors, no renaming or
transposes), to show what the format work itself costs.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

from ernie_style.arch.state_dict_adapter import expected_ours
from ernie_style.storage.pdparams import save_pdparams

NAIVE = """
import pickle, sys
from safetensors.numpy import save_file
sd = pickle.load(open(sys.argv[1], "rb"))
sd.pop("StructuredToParameterName@@", None)
save_file(sd, sys.argv[2], metadata={"format": "pt"})
"""


def make_checkpoint(d, layers, hidden, vocab):
    cfg = dict(vocab_size=vocab, embedding_size=hidden, hidden_size=hidden, num_hidden_layers=layers,
               num_attention_heads=hidden // 64, intermediate_size=4 * hidden, hidden_act="gelu",
               hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1, max_position_embeddings=512,
               type_vocab_size=2, initializer_range=0.02, layer_norm_eps=1e-12, pad_token_id=0, rotary_value=False)
    rng = np.random.default_rng(0)
    state = {k: rng.standard_normal(s, dtype=np.float32) * 0.02 for k, s in expected_ours(cfg).items()}
    os.makedirs(d)
    with open(os.path.join(d, "model_config.json"), "w") as f:
        json.dump(cfg, f)
    save_pdparams(os.path.join(d, "model_state.pdparams"), state)
    toks = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"t{i}" for i in range(vocab - 5)]
    with open(os.path.join(d, "vocab.txt"), "w") as f:
        f.write("".join(t + "\n" for t in toks))
    with open(os.path.join(d, "tokenizer_config.json"), "w") as f:
        json.dump({"do_lower_case": True}, f)
    return os.path.getsize(os.path.join(d, "model_state.pdparams"))


def run(argv):
    """(wall seconds, peak RSS bytes) of one child process."""
    t0 = time.perf_counter()
    p = subprocess.Popen(argv, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        raise SystemExit(f"{argv} failed with exit code {p.returncode}")
    return wall, usage.ru_maxrss * 1024


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--hidden", type=int, default=768)
    ap.add_argument("--vocab", type=int, default=18000)
    args = ap.parse_args(argv)
    py = sys.executable
    with tempfile.TemporaryDirectory(prefix="bench_export_") as tmp:
        ckpt = os.path.join(tmp, "ckpt")
        size = make_checkpoint(ckpt, args.layers, args.hidden, args.vocab)
        print(f"checkpoint: {args.layers} layers, hidden {args.hidden}, vocab {args.vocab}: "
              f"model_state.pdparams {size / 2**20:.1f} MiB; {os.cpu_count()} cpus, load {os.getloadavg()[0]:.1f}")
        jobs = {
            "to_pytorch fp32": lambda i: [py, "-m", "export.to_pytorch", ckpt, os.path.join(tmp, f"hf{i}")],
            "to_pytorch bf16": lambda i: [py, "-m", "export.to_pytorch", ckpt, os.path.join(tmp, f"hfb{i}"),
                                          "--dtype", "bfloat16"],
            "from_pytorch": lambda i: [py, "-m", "export.from_pytorch", os.path.join(tmp, "hf0"), os.path.join(tmp, f"back{i}")],
            "to_paddlenlp": lambda i: [py, "-m", "export.to_paddlenlp", ckpt, os.path.join(tmp, f"pn{i}")],
            "naive reference": lambda i: [py, "-c", NAIVE, os.path.join(ckpt, "model_state.pdparams"),
                                          os.path.join(tmp, f"naive{i}.safetensors")],
        }
        results = {}
        for i in range(args.runs):
            for name, cmd in jobs.items():
                results.setdefault(name, []).append(run(cmd(i)))
        ref_t = statistics.median(w for w, _ in results["naive reference"])
        print(f"{'job':<18}{'median s':>10}{'vs naive':>10}{'peak RSS MiB':>14}{'RSS/ckpt':>10}")
        for name, rs in results.items():
            t = statistics.median(w for w, _ in rs)
            m = statistics.median(r for _, r in rs)
            print(f"{name:<18}{t:>10.2f}{t / ref_t:>10.2f}{m / 2**20:>14.0f}{m / size:>10.2f}")
        t = statistics.median(w for w, _ in results["to_pytorch fp32"])
        m = statistics.median(r for _, r in results["to_pytorch fp32"])
        print(f"targets: to_pytorch {t:.2f} s (<= 15: {'ok' if t <= 15 else 'MISSED'}), "
              f"peak RSS {m / size:.2f}x checkpoint (<= 3: {'ok' if m <= 3 * size else 'MISSED'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
