"""The README's "Pretrain on your corpus" section, executed as written, on a small generated corpus.

Every fenced ``bash`` and ``python`` block of that section is parsed out of README.md and run in a
scratch directory laid out like a user's (``corpus/``, ``data/``, ``output/``, ``hf/``), so the README
cannot drift from the code. The adaptations, stated here: training commands get a few
overrides appended that make the model tiny and the run short (the commands themselves are the
README's), ``visualdl`` (it starts a web server) is only checked for being recognised, not run, and the
several-machines cluster check runs as two launchers on this host.
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


def _two_machines(cwd, words, env):
    """A several-machines command of the README run by two launchers on this host (MASTER at a free local port,
    one process each); both must succeed.  Returns the first one's output."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, PYTHON=sys.executable, NPROC="1", CHECK_CLUSTER_MB="1",
               **dict(env, MASTER=f"127.0.0.1:{port}"))
    procs = [subprocess.Popen(words, cwd=cwd, env=dict(env, LOG_DIR=os.path.join(cwd, f"log_machine{m}")),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for m in range(2)]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], f"README command failed: {' '.join(words)}\n" + "\n".join(outs)
    return outs[0]


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
            if "NNODES" in env and "--check-cluster" in words:
                # "Several machines": two launchers on this host stand for the two machines
                out = _two_machines(root, words + TINY, env)
                assert "cluster check: ok -- the real command would start (2 rank(s) on 2 machine(s))" in out, out
                ran.append(" ".join(words[:2]))
                continue
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
    assert recognised_only, "the README documents visualdl"
    assert "./run_pretrain.sh --check-cluster" in ran, "the README's several-machines section starts with the check"
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


# ---------------------------------------------------------------------------------------------------------------
# "Fine-tune and evaluate", executed as written on generated task files (the README's paths, a tiny pretraining).

FT_TINY = ["train.epochs=1", "train.micro_batch_size=4", "data.max_seq_len=64"]
FT_TINY_QA = ["data.doc_stride=24", "data.max_query_len=16"]
FT_TINY_RANDOM = ["model.hidden_size=32", "model.num_hidden_layers=1", "model.num_attention_heads=2",
                  "model.intermediate_size=64"]


def finetune_blocks():
    text = open(os.path.join(REPO, "README.md"), encoding="utf-8").read()
    section = text.split("## Fine-tune and evaluate", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```(\w+)\n(.*?)```", section, flags=re.S)


def _write_tsv(path, header, rows):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write("\t".join(header) + "\n")
        f.writelines("\t".join(r) + "\n" for r in rows)


def _write_task_files(root):
    """ChnSentiCorp-, LCQMC-, MSRA- and CMRC-shaped files under data/, made from the project's word lists;
    returns the number of dev examples of each."""
    import random

    from data_tools.sample_data import generate as g
    from data_tools.sample_data.word_topics import make_splits

    rng = random.Random(5)
    splits = make_splits(seed=5, frames_per_word=2)
    for name, split in zip(("train", "dev", "test"), splits):
        _write_tsv(os.path.join(root, "data", "chnsenticorp", f"{name}.tsv"), ["label", "text_a"], split[:40])
    for name, n in (("train", 40), ("dev", 16), ("test", 16)):
        rows = []
        for _ in range(n):
            a, b = rng.choice(g.FOODS), rng.choice(g.FOODS + g.CITIES)
            rows.append((f"{a}好吃吗", f"{b}好吃吗", str(int(a == b))))
        _write_tsv(os.path.join(root, "data", "lcqmc", f"{name}.tsv"), ["text_a", "text_b", "label"], rows)
    for name, n in (("train", 30), ("dev", 10), ("test", 10)):
        lines = []
        for _ in range(n):
            city, person = rng.choice(g.CITIES), rng.choice(g.PEOPLE)
            for text, tag in ((person, "PER"), ("昨天去了", None), (city, "LOC"), ("。", None)):
                for i, ch in enumerate(text):
                    lines.append(f"{ch} {'O' if tag is None else ('B-' if i == 0 else 'I-') + tag}")
            lines.append("")
        os.makedirs(os.path.join(root, "data", "msra_ner"), exist_ok=True)
        with open(os.path.join(root, "data", "msra_ner", f"{name}.txt"), "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
    os.makedirs(os.path.join(root, "data", "cmrc2018"), exist_ok=True)
    for name, n in (("train", 30), ("dev", 10)):
        paragraphs = []
        for i in range(n):
            city, food = rng.choice(g.CITIES), rng.choice(g.FOODS)
            context = f"说到{city}的美食，很多人第一个想到的就是{food}。这家小店开了十年。"
            paragraphs.append({"context": context, "qas": [{
                "id": f"{name}-{i}", "question": f"说到{city}的美食，人们想到什么？",
                "answers": [{"text": food, "answer_start": context.index(food)}]}]})
        with open(os.path.join(root, "data", "cmrc2018", f"{name}.json"), "w", encoding="utf-8") as f:
            json.dump({"version": "v1.0", "data": [{"title": name, "paragraphs": paragraphs}]}, f, ensure_ascii=False)
    n_dev = len(splits[1][:40])
    return {"chnsenticorp": n_dev, "chnsenticorp_random": n_dev, "lcqmc": 16, "msra_ner": 10, "cmrc2018": 10}


def _tiny_pretraining(root):
    """output/roformer_base: a 4-step pretraining run of the README's kind (vocab, preprocess, run)."""
    _write_corpus(root)
    _run(root, ["python", "-m", "data_tools.build_vocab", "--input", "corpus/part0.txt", "corpus/part1.txt",
                "--output", "data/vocab.txt"], {})
    _run(root, ["python", "-m", "data_tools.preprocess", "--input", "corpus/part0.txt", "corpus/part1.txt",
                "--vocab", "data/vocab.txt", "--output-prefix", "data/clue_corpus", "--quiet"], {})
    _run(root, ["python", "-m", "ernie_style.run_pretrain", "--config", "configs/roformer_base_wwm_cluecorpussmall.yaml",
                "data.prefixes=[data/clue_corpus]", "data.vocab_file=data/vocab.txt",
                "train.output_dir=output/roformer_base", *TINY], {})


@pytest.mark.multiproc
def test_readme_finetune_journey(tmp_path):
    root = str(tmp_path)
    for name in ("configs", "run_pretrain.sh", "run_finetune.sh"):
        os.symlink(os.path.join(REPO, name), os.path.join(root, name))
    os.makedirs(os.path.join(root, "data"))
    _tiny_pretraining(root)
    n_dev = _write_task_files(root)

    ran = []
    for lang, block in finetune_blocks():
        if lang == "python":
            out = _run(root, ["python", "-c", block], {"TRANSFORMERS_VERBOSITY": "error"})
            assert "label" in out and "score" in out, out  # the pipeline printed a prediction
            ran.append("python: text-classification")
            continue
        assert lang == "bash", lang
        for env, words in bash_commands(block):
            extra = []
            if words[0] == "./run_finetune.sh" or words[:3] == ["python", "-m", "ernie_style.finetune_grid"]:
                extra = FT_TINY + (FT_TINY_QA if "configs/finetune/qa.yaml" in words else []) + \
                    (FT_TINY_RANDOM if "model.init=random" in words else [])
            out = _run(root, words + extra, dict(env, NPROC="1"))
            ran.append(" ".join(words[:3]))

    assert len(ran) == 9, ran
    for run in n_dev:
        with open(os.path.join(root, "output", "ft", run, "results.json"), encoding="utf-8") as f:
            results = json.load(f)
        assert results["dev"] and "best_step" in results, (run, results)
        assert ("test" in results) == (run != "cmrc2018"), (run, results)
        with open(os.path.join(root, "output", "ft", run, "predictions_dev.jsonl"), encoding="utf-8") as f:
            assert len(f.readlines()) == n_dev[run], run  # one prediction per dev example
    assert os.path.exists(os.path.join(root, "output", "grid", "chnsenticorp", "grid.md"))
    table = open(os.path.join(root, "table.md"), encoding="utf-8").read()
    for task in ("chnsenticorp", "lcqmc", "msra_ner", "cmrc2018"):
        assert task in table, table
    with open(os.path.join(root, "hf", "chnsenticorp", "config.json"), encoding="utf-8") as f:
        hf = json.load(f)
    assert hf["architectures"] == ["RoFormerForSequenceClassification"] and len(hf["id2label"]) == 8, hf


# ---------------------------------------------------------------------------------------------------------------
# "Packing and masking", executed as written (the README's commands, the TINY overrides, one process each).

def packing_blocks():
    text = open(os.path.join(REPO, "README.md"), encoding="utf-8").read()
    section = text.split("## Packing and masking", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```(\w+)\n(.*?)```", section, flags=re.S)


@pytest.mark.multiproc
def test_readme_packing_and_masking_journey(tmp_path):
    root = str(tmp_path)
    for name in ("configs", "run_pretrain.sh"):
        os.symlink(os.path.join(REPO, name), os.path.join(root, name))
    os.makedirs(os.path.join(root, "data"))
    _write_corpus(root)
    _run(root, ["python", "-m", "data_tools.build_vocab", "--input", "corpus/part0.txt", "corpus/part1.txt",
                "--output", "data/vocab.txt"], {})
    _run(root, ["python", "-m", "data_tools.preprocess", "--input", "corpus/part0.txt", "corpus/part1.txt",
                "--vocab", "data/vocab.txt", "--output-prefix", "data/clue_corpus", "--quiet"], {})
    ran = []
    for lang, block in packing_blocks():
        assert lang == "bash", lang
        for env, words in bash_commands(block):
            assert words[0] == "./run_pretrain.sh", words
            out = _run(root, words + TINY + ["amp.enable=false"], dict(env, NPROC="1"))
            assert "global step 4, loss:" in out
            ran.append(" ".join(words[:2]))
            if "roberta_mlm_full_sentences_base" in words[1]:
                steps = [ln for ln in out.splitlines() if ln.startswith("global step")]
                assert steps and all(", sop_loss: 0.000000," in ln for ln in steps), steps
    assert len(ran) == 2, ran
    state = json.load(open(os.path.join(root, "output", "span", "checkpoints", "latest", "trainer_state.json")))
    assert state["data_fingerprint"]["data.masking"] == "span"


# ---------------------------------------------------------------------------------------------------------------
# "Watch downstream quality while pretraining", executed as written: the tiny pretraining above (checkpoints of
# steps 2 and 4), the ChnSentiCorp-shaped files, the fine-tunes made short with FT_TINY.


def watch_blocks():
    text = open(os.path.join(REPO, "README.md"), encoding="utf-8").read()
    section = text.split("## Watch downstream quality while pretraining", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```(\w+)\n(.*?)```", section, flags=re.S)


@pytest.mark.multiproc
def test_readme_watch_journey(tmp_path):
    root = str(tmp_path)
    for name in ("configs", "run_pretrain.sh", "run_finetune.sh"):
        os.symlink(os.path.join(REPO, name), os.path.join(root, name))
    os.makedirs(os.path.join(root, "data"))
    _tiny_pretraining(root)
    _write_task_files(root)

    ran, outputs = [], {}
    for lang, block in watch_blocks():
        assert lang == "bash", lang
        for env, words in bash_commands(block):
            if words[0] == "visualdl":  # a web server: only checked for naming the run's records
                assert words[1:] == ["--logdir", "output/roformer_base/visualdl"], words
                continue
            extra = FT_TINY if words[:3] == ["python", "-m", "ernie_style.watch"] else []
            outputs[words[2]] = _run(root, words + extra, env)
            ran.append(" ".join(words[:3]))
    assert ran == ["python -m ernie_style.watch", "python -m ernie_style.finetune_report", "python -m ernie_style.plot"]
    home = os.path.join(root, "output", "roformer_base", "probes", "chnsenticorp")
    with open(os.path.join(home, "probes.jsonl"), encoding="utf-8") as f:
        assert [json.loads(line)["step"] for line in f] == [2, 4]
    for step in (2, 4):
        assert os.path.isfile(os.path.join(home, f"step_{step:08d}", "predictions_dev.jsonl"))
    assert outputs["ernie_style.finetune_report"].splitlines()[0] == "| model | task | 2 | 4 |"
    assert os.path.exists(os.path.join(root, "curves.png"))
    assert glob.glob(os.path.join(root, "output", "roformer_base", "visualdl", "probe_chnsenticorp", "vdlrecords.*"))


# ---------------------------------------------------------------------------------------------------------------
# "Word-level vocabularies", executed as written (the README's paths; TINY/FT_TINY overrides; one process each).

@pytest.mark.multiproc
def test_readme_word_level_journey(tmp_path):
    root = str(tmp_path)
    for name in ("configs", "run_pretrain.sh", "run_finetune.sh"):
        os.symlink(os.path.join(REPO, name), os.path.join(root, name))
    os.makedirs(os.path.join(root, "data"))
    _write_corpus(root)
    _write_task_files(root)
    text = open(os.path.join(REPO, "README.md"), encoding="utf-8").read()
    section = text.split("## Word-level vocabularies", 1)[1].split("\n## ", 1)[0]
    ran = []
    for lang, block in re.findall(r"```(\w+)\n(.*?)```", section, flags=re.S):
        if lang == "python":
            out = _run(root, ["python", "-c", block], {"TRANSFORMERS_VERBOSITY": "error"})
            assert "score" in out and "token_str" in out  # the fill-mask pipeline printed predictions
            ran.append("python: fill-mask")
            continue
        assert lang == "bash", lang
        for env, words in bash_commands(block):
            extra = TINY if words[0] == "./run_pretrain.sh" else FT_TINY if words[0] == "./run_finetune.sh" else []
            out = _run(root, words + extra, dict(env, NPROC="1"))
            if words[0] == "./run_pretrain.sh":
                assert "global step 4, loss:" in out and "sop_loss: 0.000000" in out  # MLM only
            ran.append(" ".join(words[:3]))
    assert len(ran) == 6, ran
    with open(os.path.join(root, "data", "corpus_word.meta.json"), encoding="utf-8") as f:
        assert json.load(f)["tokenizer"] == {"do_lower_case": True, "kind": "roformer_word"}
    with open(os.path.join(root, "hf", "word_tiny", "tokenizer_config.json"), encoding="utf-8") as f:
        assert json.load(f)["tokenizer_class"] == "RoFormerTokenizer"
    with open(os.path.join(root, "output", "ft", "chnsenticorp_word", "best_model", "tokenizer_config.json")) as f:
        assert json.load(f) == {"do_lower_case": True, "kind": "roformer_word"}


# ---------------------------------------------------------------------------------------------------------------
# "Extending a model's vocabulary", executed as written: a domain corpus with characters the base vocab lacks (and
# repeated documents), the base model of the README's kind, the continued run on 2 CPU processes, the export.


def extend_blocks():
    text = open(os.path.join(REPO, "README.md"), encoding="utf-8").read()
    section = text.split("## Extending a model's vocabulary", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```(\w+)\n(.*?)```", section, flags=re.S)


@pytest.mark.multiproc
def test_readme_extend_vocab_journey(tmp_path):
    from data_tools.sample_data.generate import generate

    root = str(tmp_path)
    for name in ("configs", "run_pretrain.sh"):
        os.symlink(os.path.join(REPO, name), os.path.join(root, name))
    os.makedirs(os.path.join(root, "data"))
    _tiny_pretraining(root)
    base_vocab = open(os.path.join(root, "output", "roformer_base", "checkpoints", "latest", "vocab.txt"),
                      encoding="utf-8").read().splitlines()
    # domain text: each document gains a sentence of rare characters (CJK extension A, which the base lacks), 600 of
    # them (each at least twice), so that --add 500 adds exactly 500
    rare = [chr(0x3400 + k) for k in range(600)]
    assert not set(rare) & set(base_vocab)
    docs = generate(n_docs=100, seed=13)
    domain = ["".join(rare[(6 * k + j) % 600] for j in range(12)) + rare[k % 20] + "。" + d for k, d in enumerate(docs)]
    os.makedirs(os.path.join(root, "domain"))
    with open(os.path.join(root, "domain", "rare.txt"), "w", encoding="utf-8") as f:
        f.write("".join(d + "\n" for d in domain + domain[:5]))  # five documents twice

    outputs = []
    for lang, block in extend_blocks():
        assert lang == "bash", lang
        for env, words in bash_commands(block):
            outputs.append(_run(root, words + (TINY if words[0] == "./run_pretrain.sh" else []), env))
    assert len(outputs) == 4
    build, prep, train, export = outputs
    new_vocab = open(os.path.join(root, "data", "vocab_domain.txt"), encoding="utf-8").read().splitlines()
    n_old, n_new = len(base_vocab), len(new_vocab) - len(base_vocab)
    assert new_vocab[:n_old] == base_vocab and n_new == 500
    assert "500 added (500 characters" in build and "[UNK] share of the corpus" in build, build
    with open(os.path.join(root, "data", "domain.meta.json"), encoding="utf-8") as f:
        meta = json.load(f)
    assert meta["skipped"]["duplicate"] == 5 and meta["duplicates"]["dropped"]
    before_launch = [line for line in train.splitlines() if line.startswith("vocab extended:")]
    assert len(before_launch) == 1 and before_launch[0].startswith(
        f"vocab extended: {n_old} -> {n_old + n_new} tokens, {n_new} new rows;"), train[-3000:]
    assert "global step 4, loss:" in train
    log = open(os.path.join(root, "output", "roformer_domain", "train.log"), encoding="utf-8").read()
    assert "resume: vocab extended:" in log and "trainer: 2 rank(s)" in log
    assert "verify: max |logits(paddle) - logits(transformers)|" in export
    with open(os.path.join(root, "hf", "roformer_domain", "config.json"), encoding="utf-8") as f:
        assert json.load(f)["vocab_size"] == n_old + n_new


# ---------------------------------------------------------------------------------------------------------------
# "Training schedules: phases and batch changes", executed as written on the tiny corpus of tests/_trainer_util.py
# laid out as the README's data/; appended: a tiny model, small eval/save intervals, one process (NPROC=1).

SCHEDULE_TINY = ["model.hidden_size=32", "model.num_hidden_layers=1", "model.num_attention_heads=2",
                 "model.intermediate_size=64", "data.num_workers=0", "data.split=90,8,2", "train.eval_steps=2",
                 "train.eval_iters=1", "train.logging_steps=1", "train.save_steps=2"]


@pytest.mark.multiproc
def test_readme_schedules_journey(tmp_path):
    import _trainer_util as U

    root = str(tmp_path)
    prefix, _ = U.make_data(os.path.join(root, "data"))
    for path in glob.glob(prefix + ".*"):  # data/tiny.* -> data/clue_corpus.*, the README's prefix
        os.rename(path, path.replace(prefix, os.path.join(root, "data", "clue_corpus")))
    os.symlink(os.path.join(REPO, "configs"), os.path.join(root, "configs"))
    os.symlink(os.path.join(REPO, "run_pretrain.sh"), os.path.join(root, "run_pretrain.sh"))
    text = open(os.path.join(REPO, "README.md"), encoding="utf-8").read()
    section = text.split("## Training schedules: phases and batch changes", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```(\w*)\n(.*?)```", section, flags=re.S)
    outs = []
    for lang, block in blocks:
        if lang != "bash":
            continue
        for env, words in bash_commands(block):
            assert words[0] == "./run_pretrain.sh", words
            outs.append(_run(root, words + SCHEDULE_TINY, dict(env, NPROC="1")))
    assert len(outs) == 3
    phased, first, resumed = outs
    assert "schedule: phase 2 of 2, steps 5-6: max_seq_len 128" in phased and "phase: 2" in phased
    assert "phase 2: sample index for max_seq_len 128" in phased
    assert "global step 4, loss:" in first and "global step 5" not in first
    line = [ln for ln in section.splitlines() if ln.startswith("resume: train.global_batch_size")]
    assert line and line[0] in resumed, resumed[-3000:]
    assert "global step 6, loss:" in resumed and "global step 4, loss:" not in resumed


# ---------------------------------------------------------------------------------------------------------------
# "Continue from a BERT checkpoint (HFL, UER)", executed as written (issue 18's "Done when"): a BERT directory in
# HFL's layout made by transformers (BertForPreTraining keys in pytorch_model.bin, gamma/beta names, position_ids,
# the 21,128-line vocab; tiny sizes, matching TINY), continued through run_pretrain.sh with 2 processes, exported
# back and loaded by transformers 4.x and 5.x; a fine-tune from that directory exported as
# BertForSequenceClassification.

def bert_blocks():
    text = open(os.path.join(REPO, "README.md"), encoding="utf-8").read()
    section = text.split("## Continue from a BERT checkpoint", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```(\w+)\n(.*?)```", section, flags=re.S)


@pytest.mark.multiproc
def test_readme_bert_journey(tmp_path):
    import _hf5_util as H
    import _hf_bert_util as B

    root = str(tmp_path)
    for name in ("configs", "run_pretrain.sh", "run_finetune.sh"):
        os.symlink(os.path.join(REPO, name), os.path.join(root, name))
    os.makedirs(os.path.join(root, "data"))
    _write_corpus(root)
    _write_task_files(root)
    hfl = B.write_hf_bert(os.path.join(root, "hfl", "chinese-roberta-wwm-ext"), "pretraining", tf_names=True,
                          hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                          max_position_embeddings=512)
    ran = []
    for lang, block in bert_blocks():
        assert lang == "bash", lang
        for env, words in bash_commands(block):
            extra, run_env = [], dict(env)
            if words[0] == "./run_pretrain.sh":
                extra = TINY + ["amp.enable=false"]  # 2 processes: run_pretrain.sh's default on CPU
            elif words[0] == "./run_finetune.sh":
                extra, run_env = FT_TINY, dict(env, NPROC="1")
            out = _run(root, words + extra, run_env)
            ran.append(" ".join(words[:3]))
            if words[0] == "./run_pretrain.sh":
                assert "global step 4, loss:" in out and "resume: initialised weights from model dir" in out, out
                assert "dropped cls.seq_relationship.* (this model is MLM-only: no SOP head)" in out, out[-3000:]
            if words[:3] == ["python", "-m", "export.from_pytorch"]:
                assert "becomes our binary head" in out and "verify: max |logits(transformers)" in out, out
    assert len(ran) == 6, ran
    with open(os.path.join(root, "hf", "roberta_chnsenticorp", "config.json"), encoding="utf-8") as f:
        ft = json.load(f)
    assert ft["architectures"] == ["BertForSequenceClassification"] and len(ft["id2label"]) == 8, ft
    reports = H.load_everywhere([{"dir": os.path.join(root, "hf", "roberta_wwm_ext"), "texts": ["我是中国人"],
                                  "fill": "我是中[MASK]人"},
                                 {"dir": os.path.join(root, "hf", "roberta_chnsenticorp"), "texts": ["很好吃"]}],
                                tmp_path)
    for major, (mlm, cls) in reports.items():
        H.assert_clean_load(mlm)
        H.assert_clean_load(cls)
        assert (mlm["class"], cls["class"]) == ("BertForMaskedLM", "BertForSequenceClassification"), major
        assert mlm["ids"] == reports["4"][0]["ids"] and len(mlm["fill"]) == 5, mlm
    assert os.path.isfile(hfl + "/pytorch_model.bin")
