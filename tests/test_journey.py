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
