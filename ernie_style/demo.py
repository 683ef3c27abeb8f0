"""``make demo``: the whole journey on the embedded sample corpus, on CPU, in a few minutes.

vocab -> preprocess -> 2-process pretraining through run_pretrain.sh -> VisualDL curves ->
export to Hugging Face -> fill-mask in transformers -> does pretraining help? the pretrained model and a
random init fine-tuned with identical settings on a generated downstream task (data_tools.sample_data.
word_topics), side by side -> what each checkpoint of the pretraining is worth on that task (ernie_style.watch:
a short fine-tune per checkpoint, the accuracy per pretraining step).  Every step is the command a user would
type (printed before it runs), so the demo doubles as a worked example.

    python -m ernie_style.demo [--out demo_output] [--steps N] [--nproc 2]
"""
from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
import time

from ernie_style.constants import FINETUNE_RESULTS, LATEST, MODEL_CONFIG, VOCAB
from ernie_style.finetune_report import PROBES_DIR, SERIES_FILE
from ernie_style.training.parent_death import run_child

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.path.join(REPO, "data_tools", "sample_data", "sample_corpus.txt")


def _show(cmd) -> str:
    return " ".join(shlex.quote(c) for c in cmd)


def _run(cmd, env=None) -> None:
    print(f"\n$ {_show(cmd)}", flush=True)
    # dies with the demo however it ends; a Ctrl-C is passed on once, so a training step stops with a checkpoint
    rc, signum = run_child(cmd, cwd=REPO, env=env)
    if signum:
        raise SystemExit(128 + signum)
    if rc != 0:
        raise SystemExit(f"demo: step failed with exit code {rc}: {' '.join(cmd)}")


def _run_pair(cmds, env, logs) -> None:
    """Two commands side by side (one core each), their output to ``logs``; a failure shows its log's tail."""
    procs = []
    for cmd, log in zip(cmds, logs):
        print(f"\n$ {_show(cmd)} > {log}", flush=True)
        with open(log, "w", encoding="utf-8") as f:
            procs.append(subprocess.Popen(cmd, cwd=REPO, env=env, stdout=f, stderr=subprocess.STDOUT))
    for proc, cmd, log in zip(procs, cmds, logs):
        if proc.wait() != 0:
            with open(log, encoding="utf-8") as f:
                tail = f.read()[-3000:]
            raise SystemExit(f"demo: step failed with exit code {proc.returncode}: {_show(cmd)}\n{tail}")


# The downstream stage: identical settings for both inits (a tiny model needs a larger LR than the 2e-5..1e-4
# of base models); two seeds each, averaged, because the dev/test sets are small (~160 examples).
FINETUNE_SEEDS = (42, 43)
# a fresh run every time the demo runs (an earlier demo's checkpoints are kept beside it, never pruned)
FINETUNE_SETTINGS = ["train.epochs=8", "train.micro_batch_size=8", "optim.max_lr=1e-3", "train.resume=none",
                     "train.overwrite_output=true"]
ARCH_KEYS = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "hidden_act",
             "max_position_embeddings", "type_vocab_size")


def _finetune_stage(out: str, checkpoint: str, vocab: str, py: str) -> None:
    """Fine-tune the pretrained checkpoint and a random init of the same architecture on word_topics."""
    import json

    task_dir = os.path.join(out, "word_topics")
    _run([py, "-m", "data_tools.sample_data.word_topics", "--out", task_dir])
    with open(os.path.join(checkpoint, MODEL_CONFIG), encoding="utf-8") as f:
        arch = json.load(f)
    random_init = ["model.init=random", f"data.vocab_file={vocab}"] + [f"model.{k}={arch[k]}" for k in ARCH_KEYS]
    data = [f"data.{s}_file={os.path.join(task_dir, s + '.tsv')}" for s in ("train", "dev", "test")]
    # one process per run, the two inits side by side: the same two cores as the pretraining's two ranks
    env = dict(os.environ, NPROC="1", PYTHON=py, OMP_NUM_THREADS="1")
    runs = {"pretrained": [], "random": []}
    for seed in FINETUNE_SEEDS:
        cmds, logs = [], []
        for name, init in (("pretrained", [f"model.init={checkpoint}"]), ("random", random_init)):
            run_dir = os.path.join(out, "finetune", f"{name}_seed{seed}")
            runs[name].append(run_dir)
            cmds.append(["bash", os.path.join(REPO, "run_finetune.sh"), "configs/finetune/seq_cls.yaml", *init,
                         *data, *FINETUNE_SETTINGS, f"train.seed={seed}", f"train.output_dir={run_dir}"])
            logs.append(run_dir + ".log")
        os.makedirs(os.path.dirname(logs[0]), exist_ok=True)
        _run_pair(cmds, env, logs)

    def mean(name, split):
        values = []
        for run_dir in runs[name]:
            with open(os.path.join(run_dir, FINETUNE_RESULTS), encoding="utf-8") as f:
                values.append(json.load(f)[split]["accuracy"])
        return sum(values) / len(values)

    table = os.path.join(out, "finetune", "table.md")
    _run([py, "-m", "ernie_style.finetune_report", *runs["pretrained"], *runs["random"], "--out", table])
    print(f"\n== does pretraining help? word_topics: 8 classes, the dev/test words never seen in fine-tuning "
          f"(chance 12.5%); accuracy, mean of {len(FINETUNE_SEEDS)} seeds ==")
    print(f"  {'init':<12} {'dev':>7} {'test':>7}")
    for name in runs:
        print(f"  {name:<12} {mean(name, 'dev'):>7.1%} {mean(name, 'test'):>7.1%}")
    gain = {split: mean("pretrained", split) - mean("random", split) for split in ("dev", "test")}
    if gain["dev"] > 0 and gain["test"] > 0:
        print(f"  pretraining helped: {100 * gain['dev']:+.1f} points on dev, {100 * gain['test']:+.1f} on test")
    else:
        print(f"  warning: pretraining did not help here ({100 * gain['dev']:+.1f} points on dev, "
              f"{100 * gain['test']:+.1f} on test); "
              "the demo's pretraining is short: try `python -m ernie_style.demo --steps 1000`")


# The probes: one short fine-tune per checkpoint (fewer epochs than above: the series is about the trend).
PROBE_EPOCHS = 3
PROBE_SETTINGS = [f"train.epochs={PROBE_EPOCHS}", "train.micro_batch_size=8", "optim.max_lr=1e-3", "train.seed=42"]


def _probe_stage(out: str, train_dir: str, py: str) -> None:
    """Fine-tune every checkpoint of the pretraining run on word_topics; say whether accuracy rose with the steps."""
    import json

    task_dir = os.path.join(out, "word_topics")
    data = [f"data.{s}_file={os.path.join(task_dir, s + '.tsv')}" for s in ("train", "dev", "test")]
    # one process, both cores' threads: the pretraining has finished
    env = dict(os.environ, NPROC="1", PYTHON=py, OMP_NUM_THREADS=str(max(1, min(2, os.cpu_count() or 1))))
    name = "word_topics"
    home = os.path.join(train_dir, PROBES_DIR, name)
    shutil.rmtree(home, ignore_errors=True)  # a re-run of the demo probes its new checkpoints
    _run([py, "-m", "ernie_style.watch", train_dir, "configs/finetune/seq_cls.yaml", *data, *PROBE_SETTINGS,
          "--name", name], env=env)
    _run([py, "-m", "ernie_style.finetune_report", "--probes", train_dir, "--split", "dev"])
    with open(os.path.join(home, SERIES_FILE), encoding="utf-8") as f:
        series = [json.loads(line) for line in f if line.strip()]
    print(f"\n== what each checkpoint is worth: word_topics dev/test accuracy after a {PROBE_EPOCHS}-epoch "
          "fine-tune, per pretraining step ==")
    for p in series:
        print(f"  step {p['step']:>5}: dev {p['dev']['accuracy']:>6.1%}   test {p['test']['accuracy']:>6.1%}")
    if len(series) < 2:
        print("  (one checkpoint only: no trend to show)")
        return
    first, last = series[0], series[-1]
    rise = {split: last[split]["accuracy"] - first[split]["accuracy"] for split in ("dev", "test")}
    said = (f"step {first['step']} -> {last['step']}: {100 * rise['dev']:+.1f} points on dev, "
            f"{100 * rise['test']:+.1f} on test")
    if rise["dev"] > 0 and rise["test"] > 0:
        print(f"  accuracy rose with pretraining ({said})")
    else:
        print(f"  warning: accuracy did not rise with pretraining here ({said}); the demo's pretraining is short: "
              "try `python -m ernie_style.demo --steps 1000`")


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
    vocab = os.path.join(out, VOCAB)
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
                 "train.resume=none", "train.overwrite_output=true"]  # a re-run of the demo starts over
    if args.steps:
        overrides.append(f"train.max_steps={args.steps}")
    # one BLAS/OpenMP thread per core and process: oversubscribed cores make every process slower
    threads = str(max(1, (os.cpu_count() or 1) // args.nproc))
    env = dict(os.environ, NPROC=str(args.nproc), PYTHON=py, OMP_NUM_THREADS=threads)
    _run(["bash", os.path.join(REPO, "run_pretrain.sh"), "configs/roformer_tiny_demo.yaml", *overrides], env=env)

    curves = os.path.join(train_dir, "curves.png")
    _run([py, "-m", "ernie_style.plot", train_dir, "--out", curves])
    latest = os.path.join(train_dir, "checkpoints", LATEST)
    _run([py, "-m", "export.to_pytorch", latest, hf_dir, "--verify", "--overwrite"])

    # sentences of the corpus, one character each (a single-character word: WWM masks whole words)
    _fill_mask(hf_dir, [("很多人认为，家乡的味道是任何地方都替代不了的。", "的"),
                        ("天气预报说，这个周末会转晴，适合全家一起出去走走！", "会")])

    _finetune_stage(out, os.path.realpath(latest), vocab, py)
    _probe_stage(out, train_dir, py)
    probe_curves = os.path.join(train_dir, "curves_probes.png")
    _run([py, "-m", "ernie_style.plot", train_dir, "--out", probe_curves])

    print(f"\n== demo finished in {time.time() - t0:.0f} s; artefacts ==")
    for what, path in [
        ("vocab", vocab),
        ("token data (.bin/.idx/.wwm/.meta.json)", prefix + ".*"),
        ("training log", os.path.join(train_dir, "train.log")),
        ("per-rank launcher logs", os.path.join(train_dir, "log")),
        ("VisualDL records (visualdl --logdir ...)", os.path.join(train_dir, "visualdl")),
        ("curves", curves),
        ("curves with the probes under the loss", probe_curves),
        ("checkpoints", os.path.join(train_dir, "checkpoints")),
        ("Hugging Face model", hf_dir),
        ("downstream task (TSV)", os.path.join(out, "word_topics")),
        ("fine-tune runs (results.json, predictions)", os.path.join(out, "finetune")),
        ("probes of the checkpoints (probes.jsonl)", os.path.join(train_dir, "probes", "word_topics")),
    ]:
        print(f"  {what:<42} {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
