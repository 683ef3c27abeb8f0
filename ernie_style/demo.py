"""``make demo``: the whole journey on the embedded sample corpus, on CPU, in a few minutes.

vocab -> preprocess -> 2-process pretraining through run_pretrain.sh -> VisualDL curves ->
export to Hugging Face -> fill-mask in transformers.  Every step is the command a user
would type (printed before it runs), so the demo doubles as a worked example.

    python -m ernie_style.demo [--out demo_output] [--steps N] [--nproc 2]
"""
from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.path.join(REPO, "data_tools", "sample_data", "sample_corpus.txt")


def _run(cmd, env=None) -> None:
    print(f"\n$ {' '.join(shlex.quote(c) for c in cmd)}", flush=True)
    proc = subprocess.run(cmd, cwd=REPO, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"demo: step failed with exit code {proc.returncode}: {' '.join(cmd)}")


def _fill_mask(hf_dir: str, examples, top_k: int = 5) -> None:
    """Mask one character of corpus sentences and print transformers' top predictions."""
    import warnings

    warnings.filterwarnings("ignore")
    from transformers import pipeline

    fill = pipeline("fill-mask", model=hf_dir, tokenizer=hf_dir, device=-1)
    for text, answer in examples:
        pos = text.index(answer)
        masked = text[:pos] + fill.tokenizer.mask_token + text[pos + 1:]
        print(f"\nfill-mask: {masked}   (the corpus has: {answer})")
        for pred in fill(masked, top_k=top_k):
            print(f"  {pred['token_str']!s:>4}  p={pred['score']:.3f}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=os.path.join(REPO, "demo_output"))
    parser.add_argument("--steps", type=int, default=None, help="override train.max_steps of the demo config")
    parser.add_argument("--nproc", type=int, default=2, help="CPU training processes")
    args = parser.parse_args(argv)

    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    py = sys.executable
    # keep the demo's output to what matters: library deprecation chatter is not the user's business
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    vocab = os.path.join(out, "vocab.txt")
    prefix = os.path.join(out, "data", "sample")
    train_dir = os.path.join(out, "train")
    hf_dir = os.path.join(out, "hf_model")
    os.makedirs(os.path.dirname(prefix), exist_ok=True)
    t0 = time.time()

    _run([py, "-m", "data_tools.build_vocab", "--input", CORPUS, "--output", vocab])
    _run([py, "-m", "data_tools.preprocess", "--input", CORPUS, "--vocab", vocab, "--output-prefix", prefix,
          "--segmenter", "jieba", "--workers", "2"])
    _run([py, "-m", "data_tools.inspect", prefix, "--doc", "3", "--vocab", vocab])

    overrides = [f"data.prefixes=[{prefix}]", f"data.vocab_file={vocab}", f"train.output_dir={train_dir}",
                 "train.resume=none"]
    if args.steps:
        overrides.append(f"train.max_steps={args.steps}")
    # one BLAS/OpenMP thread per core and process: oversubscribed cores make every process slower
    threads = str(max(1, (os.cpu_count() or 1) // args.nproc))
    env = dict(os.environ, NPROC=str(args.nproc), PYTHON=py, OMP_NUM_THREADS=threads)
    _run(["bash", os.path.join(REPO, "run_pretrain.sh"), "configs/roformer_tiny_demo.yaml", *overrides], env=env)

    curves = os.path.join(train_dir, "curves.png")
    _run([py, "-m", "ernie_style.plot", train_dir, "--out", curves])
    latest = os.path.join(train_dir, "checkpoints", "latest")
    _run([py, "-m", "export.to_pytorch", latest, hf_dir, "--verify", "--overwrite"])

    # sentences of the corpus, one character each (a single-character word: WWM masks whole words)
    _fill_mask(hf_dir, [("很多人认为，家乡的味道是任何地方都替代不了的。", "的"),
                        ("天气预报说，这个周末会转晴，适合全家一起出去走走！", "会")])

    print(f"\n== demo finished in {time.time() - t0:.0f} s; artefacts ==")
    for what, path in [
        ("vocab", vocab),
        ("token data (.bin/.idx/.wwm/.meta.json)", prefix + ".*"),
        ("training log", os.path.join(train_dir, "train.log")),
        ("per-rank launcher logs", os.path.join(train_dir, "log")),
        ("VisualDL records (visualdl --logdir ...)", os.path.join(train_dir, "visualdl")),
        ("curves", curves),
        ("checkpoints", os.path.join(train_dir, "checkpoints")),
        ("Hugging Face model", hf_dir),
    ]:
        print(f"  {what:<42} {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
