"""A word-level model end to end: ``build_vocab --level word``, ``preprocess --tokenizer roformer_word``,
``configs/roberta_word_tiny.yaml`` (scaled down) trained until it knows its sentences, exported with
``tokenizer_class: RoFormerTokenizer``, loaded by transformers' ``AutoTokenizer`` (same ids as ours) and
``pipeline("fill-mask")``, which fills a masked word with the whole word; then fine-tuned for pair
classification, NER and QA (sequence classification: tests/test_tokenizer_seam.py), keeping its kind.
The same chain through ``run_pretrain.sh`` and ``run_finetune.sh``: tests/test_journey.py (README "Word-level
vocabularies"); here training runs in-process, to spare a launch.

Budget: ~30 s (150 tiny steps, three 1-epoch fine-tunes).
"""
import json
import os
import random

import pytest

import _finetune_util as F
import _trainer_util as U
from data_tools.tokenizers import TokenizerSpec, load_tokenizer
from ernie_style import run_pretrain

WORD = TokenizerSpec(True, "roformer_word")
SENTENCES = ["今天天气很好，我们去公园散步。", "人工智能正在改变世界。", "北京是中国的首都。", "他喜欢打篮球和踢足球。",
             "图书馆里有很多学生在看书。", "医生建议大家多喝水。", "这家餐厅的饭菜非常好吃。", "火车站离这里不远。"]
# UER's recipe at a size that learns these sentences in seconds
SMALL = {"data.split": "90,5,5", "data.max_seq_len": 32, "data.num_workers": 0, "model.hidden_size": 64,
         "model.intermediate_size": 128, "model.hidden_dropout_prob": 0, "model.attention_probs_dropout_prob": 0,
         "train.micro_batch_size": 32, "train.global_batch_size": 32, "train.max_steps": 150,
         "train.save_steps": 150, "train.eval_steps": 150, "train.eval_iters": 2, "train.logging_steps": 50,
         "optim.max_lr": 2e-3, "optim.min_lr": 2e-4, "optim.warmup_ratio": 0, "optim.warmup_steps": 10,
         "optim.decay_steps": 150}


@pytest.fixture(scope="module")
def word_model(tmp_path_factory):
    """(vocab, checkpoint dir, exported HF dir) of the tiny word-level model."""
    from data_tools import build_vocab
    from data_tools.preprocess import main as preprocess
    from export import to_pytorch

    root = tmp_path_factory.mktemp("word_model")
    rng = random.Random(0)
    corpus = root / "corpus.txt"
    corpus.write_text("".join("".join(rng.choice(SENTENCES) for _ in range(rng.randint(3, 8))) + "\n"
                              for _ in range(300)), encoding="utf-8")
    vocab, prefix, out = str(root / "vocab.txt"), str(root / "data" / "w"), root / "out"
    os.makedirs(root / "data")
    assert build_vocab.main(["--level", "word", "--input", str(corpus), "--output", vocab]) == 0
    assert preprocess(["--tokenizer", "roformer_word", "--input", str(corpus), "--vocab", vocab, "--output-prefix",
                       prefix, "--quiet"]) == 0
    config = os.path.join(U.REPO, "configs", "roberta_word_tiny.yaml")
    over = [f"{k}={v}" for k, v in {**SMALL, "data.prefixes": f"[{prefix}]", "data.vocab_file": vocab,
                                    "train.output_dir": str(out)}.items()]
    assert run_pretrain.main(["--config", config, *over]) == 0
    log = open(out / "train.log", encoding="utf-8").read()
    assert "sop_loss: 0.000000" in log  # MLM only
    hf = str(root / "hf")
    assert to_pytorch.main([str(out / "checkpoints" / "latest"), hf]) == 0
    return vocab, str(out / "checkpoints" / "latest"), hf


def test_exported_word_model_loads_with_auto_tokenizer_and_fills_a_masked_word(word_model):
    from transformers import AutoTokenizer, RoFormerTokenizer, pipeline

    vocab, _, hf = word_model
    with open(os.path.join(hf, "tokenizer_config.json")) as f:
        assert json.load(f)["tokenizer_class"] == "RoFormerTokenizer"
    with open(os.path.join(hf, "config.json")) as f:
        assert json.load(f)["tokenizer_class"] == "RoFormerTokenizer"
    with open(os.path.join(hf, "README.md")) as f:
        card = f.read()
    assert "pip install rjieba" in card and "use_fast=False" in card
    tok = AutoTokenizer.from_pretrained(hf, use_fast=False)
    assert type(tok) is RoFormerTokenizer
    ours = load_tokenizer(os.path.join(hf, "vocab.txt"), WORD)
    for text in SENTENCES + ["今天天气很好，Hello WORLD 3.14 c++ 😀 中华人民共和国！"]:
        assert tok(text)["input_ids"] == [ours.cls_id, *ours.encode(text).tolist(), ours.sep_id], text
    # back from transformers, the directory is a word-level model again (RoFormerTokenizer names the kind)
    from ernie_style.arch.model_reader import read_checkpoint
    from export import from_pytorch

    back = os.path.join(os.path.dirname(hf), "back")
    assert from_pytorch.main([hf, back]) == 0
    with open(os.path.join(back, "tokenizer_config.json")) as f:
        assert json.load(f) == {"do_lower_case": True, "kind": "roformer_word"}
    assert read_checkpoint(back).tokenizer_kind == "roformer_word"
    fill = pipeline("fill-mask", model=hf, tokenizer=tok)
    for masked, word in (("今天天气很好，我们去[MASK]散步。", "公园"), ("北京是中国的[MASK]。", "首都")):
        best = fill(masked, top_k=3)[0]
        assert best["token_str"] == word and best["sequence"].replace(" ", "") == masked.replace("[MASK]", word)


def _qa_file(path, rng, n):
    paragraphs = []
    for k in range(n):
        s = rng.sample(SENTENCES, 3)
        answer = rng.choice(["公园", "首都", "人工智能", "图书馆"])
        context = s[0] + f"答案是{answer}。" + s[1] + s[2]
        start = context.index(answer, len(s[0]))
        paragraphs.append({"context": context, "qas": [{"id": f"q{k}", "question": "答案是什么",
                                                        "answers": [{"text": answer, "answer_start": start}]}]})
    path.write_text(json.dumps({"version": "t", "data": [{"title": "t", "paragraphs": paragraphs}]},
                               ensure_ascii=False), encoding="utf-8")
    return str(path)


def _ner_file(path, rng, n):
    with open(path, "w", encoding="utf-8") as f:
        for _ in range(n):
            for word, tag in ((rng.choice(SENTENCES)[:-1], "O"), (rng.choice(["北京", "中国"]), "LOC"), ("。", "O")):
                for i, ch in enumerate(word):
                    f.write(f"{ch}\t{'O' if tag == 'O' else ('B-' if i == 0 else 'I-') + tag}\n")
            f.write("\n")
    return str(path)


@pytest.mark.parametrize("task", ["pair_cls", "ner", "qa"])
def test_word_model_fine_tunes_and_keeps_its_kind(word_model, task, tmp_path):
    from ernie_style import finetune
    from ernie_style.arch.model_reader import read_checkpoint

    vocab, ckpt, _ = word_model
    rng = random.Random(1)
    if task == "pair_cls":
        files = [F.write_tsv(str(tmp_path / f"{n}.tsv"), [(lab, rng.choice(SENTENCES), rng.choice(SENTENCES))
                                                          for lab in "01" * 16]) for n in ("train", "dev")]
    elif task == "ner":
        files = [_ner_file(tmp_path / f"{n}.txt", rng, 32) for n in ("train", "dev")]
    else:
        files = [_qa_file(tmp_path / f"{n}.json", rng, 32) for n in ("train", "dev")]
    extra = {"qa": {"data.max_query_len": 8, "data.doc_stride": 16}, "ner": {"data.doc_stride": 16}}.get(task, {})
    out = tmp_path / "out"
    items = {"model.init": ckpt, "data.vocab_file": vocab, "data.train_file": files[0], "data.dev_file": files[1],
             "data.test_file": "", "data.max_seq_len": 48, "train.output_dir": str(out), "train.epochs": 1,
             "train.micro_batch_size": 16, "train.resume": "none", **extra}
    config = os.path.join(U.REPO, "configs", "finetune", f"{task}.yaml")
    assert finetune.main([config, *[f"{k}={v}" for k, v in items.items()]]) == 0
    best = read_checkpoint(str(out / "best_model"))
    assert best.task == task and best.tokenizer_kind == "roformer_word"
    if task == "qa":  # predictions are cut out of the contexts through the word tokens' offsets
        with open(out / "predictions_dev.jsonl", encoding="utf-8") as f:
            preds = [json.loads(line)["prediction"] for line in f]
        contexts = [p["context"] for p in json.load(open(files[1], encoding="utf-8"))["data"][0]["paragraphs"]]
        assert len(preds) == 32 and all(p in c for p, c in zip(preds, contexts))
