"""The README's "Pretrain on your corpus" section, executed as written, on a small generated corpus.

Every fenced ``bash`` and ``python`` block of that section is parsed out of README.md and run in a
scratch directory laid out like a user's (``corpus/``, ``data/``, ``output/``, ``hf/``), so the README
cannot drift from the code. Two adaptations, both stated here: training commands get a few
overrides appended that make the model tiny and the run short (the commands themselves are the
README's), and the commands that cannot run on one CPU machine (``visualdl`` starts a web server;
``IPS=...`` needs several machines) are only checked for being recognised, not run.
"""
import glob
import gzip
import json
import os
import re
import shlex
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = [
    "model.hidden_size=32", "model.num_hidden_layers=1", "model.num_attention_heads=2",
    "model.intermediate_size=64", "data.max_seq_len=64", "data.num_workers=0",
    "train.micro_batch_size=4", "train.global_batch_size=8", "train.max_steps=4", "train.save_steps=2",
    "train.eval_steps=2", "train.eval_iters=1", "train.logging_steps=1", "data.split=90,8,2",
]


def readme_blocks():
    """(language, text) of every fenced block in the README's "Pretrain on your corpus" section."""
    text = open(os.path.join(REPO, "README.md"), encoding="utf-8").read()
    section = text.split("## Pretrain on your corpus", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```(\w+)\n(.*?)```", section, flags=re.S)


def bash_commands(block: str):
    """Commands of a bash block: continuations joined, comments dropped, ``VAR=x`` prefixes split off."""
    for line in block.replace("\\\n", " ").splitlines():
        words = shlex.split(line, comments=True)
        if not words:
            continue
        env = {}
        while "=" in words[0] and not words[0].startswith(("-", ".", "/")):
            key, value = words.pop(0).split("=", 1)
            env[key] = value
        yield env, words


def _write_corpus(root):
    from data_tools.sample_data.generate import generate

    os.makedirs(os.path.join(root, "corpus"))
    docs = generate(n_docs=240, seed=7)  # a corpus the project has not seen: another seed
    for part in range(2):
        lines = "".join(d + "\n" for d in docs[part::2])
        with open(os.path.join(root, "corpus", f"part{part}.txt"), "w", encoding="utf-8") as f:
            f.write(lines)
        with gzip.open(os.path.join(root, "corpus", f"part{part}.txt.gz"), "wt", encoding="utf-8") as f:
            f.write(lines)
    # "more text later, in another format": JSON lines for the merge example
    os.makedirs(os.path.join(root, "more"))
    with gzip.open(os.path.join(root, "more", "web.jsonl.gz"), "wt", encoding="utf-8") as f:
        for i, d in enumerate(generate(n_docs=60, seed=11)):
            f.write(json.dumps({"id": i, "text": d}, ensure_ascii=False) + "\n")


def _run(cwd, words, env_extra, timeout=600):
    words = [sys.executable if w == "python" else w for w in words]
    expanded = []
    for w in words:  # the shell's glob expansion, relative to the user's directory
        matches = sorted(glob.glob(os.path.join(cwd, w))) if any(c in w for c in "*?[") and "=" not in w else []
        expanded += [os.path.relpath(m, cwd) for m in matches] or [w]
    env = dict(os.environ, PYTHON=sys.executable, **env_extra)
    proc = subprocess.run(expanded, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"README command failed: {' '.join(expanded)}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout + proc.stderr


@pytest.mark.multiproc
def test_readme_journey(tmp_path):
    root = str(tmp_path)
    _write_corpus(root)
    os.symlink(os.path.join(REPO, "configs"), os.path.join(root, "configs"))
    os.symlink(os.path.join(REPO, "run_pretrain.sh"), os.path.join(root, "run_pretrain.sh"))
    os.makedirs(os.path.join(root, "data"))

    ran, recognised_only, train_cmd, continued = [], [], None, False
    for lang, block in readme_blocks():
        if lang == "python":
            out = _run(root, ["python", "-c", block], {"TRANSFORMERS_VERBOSITY": "error"})
            assert "score" in out and "token_str" in out  # the fill-mask pipeline printed predictions
            ran.append("python: fill-mask")
            continue
        assert lang == "bash", lang
        for env, words in bash_commands(block):
            if words[0] == "visualdl" or "IPS" in env or "NNODES" in env:
                assert words[0] in ("visualdl", "./run_pretrain.sh"), words
                recognised_only.append(" ".join(words))
                continue
            if words[0] == "./run_pretrain.sh":
                out = _run(root, words + TINY, env)
                assert "global step 4, loss:" in out
                if any(w.startswith("train.resume=") for w in words):  # continue from the HF conversion
                    assert "resume: initialised weights from model dir" in out
                    continued = True
                elif "output/roformer_base" in " ".join(words):  # the reference recipe (not "try it small")
                    train_cmd = train_cmd or (env, words)
            else:
                out = _run(root, words, env)
            ran.append(" ".join(words[:3]))

    assert train_cmd is not None and continued and len(ran) >= 12, ran
    assert recognised_only, "the README documents visualdl and several machines"
    meta = os.path.join(root, "data", "clue_corpus.meta.json")
    assert os.path.exists(meta)
    assert os.path.exists(os.path.join(root, "curves.png"))
    hf = os.path.join(root, "hf", "roformer_base")
    assert os.path.exists(os.path.join(hf, "model.safetensors")) and os.path.exists(os.path.join(hf, "config.json"))
    for prefix in ("more", "all"):  # the merge example
        assert os.path.exists(os.path.join(root, "data", f"{prefix}.meta.json")), prefix
    with open(os.path.join(root, "data", "all.meta.json"), encoding="utf-8") as f:
        merged = json.load(f)
    assert merged["counts"]["docs_out"] > 240, merged["counts"]
    assert os.path.exists(os.path.join(root, "paddlenlp", "roformer_base", "model_state.pdparams"))

    # "Re-running the same command resumes ... To train longer, raise train.max_steps."
    env, words = train_cmd
    out = _run(root, words + TINY + ["train.max_steps=6"], env)
    assert "global step 5, loss:" in out and "global step 1, loss:" not in out
    ckpts = os.path.join(root, "output", "roformer_base", "checkpoints")
    assert os.path.isdir(os.path.join(ckpts, "step_00000006"))
