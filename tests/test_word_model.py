"""A word-level model end to end: ``build_vocab --level word``, ``preprocess --tokenizer roformer_word``,
``configs/roberta_word_tiny.yaml`` (scaled down) trained until it knows its sentences, exported with
``tokenizer_class: RoFormerTokenizer``, loaded by transformers' ``AutoTokenizer`` (same ids as ours) and
``pipeline("fill-mask")``, which fills a masked word with the whole word; then fine-tuned for pair
classification, NER and QA (sequence classification: tests/test_tokenizer_seam.py), keeping its kind: from our
checkpoint, from the exported directory itself (``model.init=HF_DIR``) and from it imported back, and through each
fine-tuned model's export (``RoFormerFor<Task>``) and import back.  ``train.resume=HF_DIR`` reads the kind too.
The same chain through ``run_pretrain.sh`` and ``run_finetune.sh``: tests/test_journey.py (README "Word-level
vocabularies"); here training runs in-process, to spare a launch.

Budget: ~30 s (150 tiny steps, four 1-epoch fine-tunes, a 2-step resume from the exported directory).
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
         "optim.max_lr": 5e-3, "optim.min_lr": 5e-4, "optim.warmup_ratio": 0, "optim.warmup_steps": 10,
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


@pytest.fixture(scope="module")
def word_imported(word_model):
    """The exported HF directory imported back by ``export.from_pytorch``."""
    from export import from_pytorch

    hf = word_model[2]
    back = os.path.join(os.path.dirname(hf), "back")
    assert from_pytorch.main([hf, back]) == 0
    return back


def test_exported_word_model_loads_with_auto_tokenizer_and_fills_a_masked_word(word_model, word_imported):
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

    back = word_imported
    with open(os.path.join(back, "tokenizer_config.json")) as f:
        assert json.load(f) == {"do_lower_case": True, "kind": "roformer_word"}
    assert read_checkpoint(back).tokenizer_kind == "roformer_word"
    fill = pipeline("fill-mask", model=hf, tokenizer=tok)
    # A 150-step model on 300 lines: the word among the top 3 (which one is first depends on the init's luck), and
    # what fills the slot is one whole word, not a character.
    for masked, word in (("今天天气很好，我们去[MASK]散步。", "公园"), ("北京是中国的[MASK]。", "首都")):
        top = fill(masked, top_k=3)
        assert word in [t["token_str"] for t in top], (masked, top)
        hit = next(t for t in top if t["token_str"] == word)
        assert hit["sequence"].replace(" ", "") == masked.replace("[MASK]", word)
        assert len(top[0]["token_str"]) >= 2, top[0]  # a word-level prediction


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


# Where each task's fine-tune starts: our checkpoint, the exported Hugging Face directory itself (model.init=HF_DIR:
# its tokenizer_class names the kind), and that directory imported back by export.from_pytorch.
INITS = {"pair_cls": "checkpoint", "ner": "hf", "qa": "imported"}


def _fine_tune(task, init, vocab, files, out):
    from ernie_style import finetune
    from ernie_style.arch.model_reader import read_checkpoint

    extra = {"qa": {"data.max_query_len": 8, "data.doc_stride": 16}, "ner": {"data.doc_stride": 16}}.get(task, {})
    items = {"model.init": init, "data.vocab_file": vocab, "data.train_file": files[0], "data.dev_file": files[1],
             "data.test_file": "", "data.max_seq_len": 48, "train.output_dir": str(out), "train.epochs": 1,
             "train.micro_batch_size": 16, "train.resume": "none", **extra}
    config = os.path.join(U.REPO, "configs", "finetune", f"{task}.yaml")
    assert finetune.main([config, *[f"{k}={v}" for k, v in items.items()]]) == 0
    best = read_checkpoint(str(out / "best_model"))
    assert best.task == task and best.tokenizer_kind == "roformer_word", (init, best.tokenizer_kind)
    return str(out / "best_model")


@pytest.mark.parametrize("task", ["pair_cls", "ner", "qa"])
def test_word_model_fine_tunes_and_keeps_its_kind(word_model, word_imported, task, tmp_path):
    from ernie_style.arch.model_reader import read_checkpoint
    from ernie_style.storage import model_dir
    from export import from_pytorch, to_pytorch

    vocab, ckpt, hf_pretrained = word_model
    rng = random.Random(1)
    if task == "pair_cls":
        files = [F.write_tsv(str(tmp_path / f"{n}.tsv"), [(lab, rng.choice(SENTENCES), rng.choice(SENTENCES))
                                                          for lab in "01" * 16]) for n in ("train", "dev")]
    elif task == "ner":
        files = [_ner_file(tmp_path / f"{n}.txt", rng, 32) for n in ("train", "dev")]
    else:
        files = [_qa_file(tmp_path / f"{n}.json", rng, 32) for n in ("train", "dev")]
    init = {"checkpoint": ckpt, "hf": hf_pretrained, "imported": word_imported}[INITS[task]]
    best = _fine_tune(task, init, vocab, files, tmp_path / "out")
    # to transformers (RoFormerFor<Task>, tokenizer_class RoFormerTokenizer) and back: still word-level
    hf, back = str(tmp_path / "hf"), str(tmp_path / "back")
    assert to_pytorch.main([best, hf]) == 0
    with open(os.path.join(hf, "tokenizer_config.json")) as f:
        assert json.load(f)["tokenizer_class"] == "RoFormerTokenizer"
    assert from_pytorch.main([hf, back]) == 0
    imported = read_checkpoint(back)
    assert imported.task == task and imported.tokenizer_kind == "roformer_word"
    assert model_dir.read_tokenizer(hf) == model_dir.read_tokenizer(back) == WORD  # the HF dir itself too
    if task == "pair_cls":  # a fine-tune from the re-imported fine-tuned model tokenizes word-level too
        _fine_tune(task, back, vocab, files, tmp_path / "again")
    if task == "qa":  # predictions are cut out of the contexts through the word tokens' offsets
        with open(tmp_path / "out" / "predictions_dev.jsonl", encoding="utf-8") as f:
            preds = [json.loads(line)["prediction"] for line in f]
        contexts = [p["context"] for p in json.load(open(files[1], encoding="utf-8"))["data"][0]["paragraphs"]]
        assert len(preds) == 32 and all(p in c for p, c in zip(preds, contexts))


def test_pretraining_resumes_from_the_word_level_hf_dir_and_refuses_other_tokens(word_model, tmp_path, capsys):
    """``train.resume=HF_DIR`` of a word-level export: the directory's tokenizer_class names its kind, which must be
    the data's -- the same vocab.txt preprocessed character-level (it holds every character) is refused before
    launch; on the word-level data the run initialises from it and its checkpoints stay word-level."""
    from data_tools.preprocess import main as preprocess
    from ernie_style.arch.model_reader import read_checkpoint

    vocab, _, hf = word_model
    root = os.path.dirname(hf)
    config = os.path.join(U.REPO, "configs", "roberta_word_tiny.yaml")
    chars = str(tmp_path / "chars")
    assert preprocess(["--input", os.path.join(root, "corpus.txt"), "--vocab", vocab, "--output-prefix", chars,
                       "--quiet"]) == 0

    def args(prefix, out, *extra):
        items = {**SMALL, "data.prefixes": f"[{prefix}]", "data.vocab_file": vocab, "train.output_dir": str(out),
                 "train.resume": hf, "train.max_steps": 2, "train.save_steps": 2, "train.eval_steps": 2,
                 "train.logging_steps": 1, "optim.decay_steps": 2, "optim.warmup_steps": 0}
        return ["--config", config, *[f"{k}={v}" for k, v in items.items()], *extra]

    capsys.readouterr()
    assert run_pretrain.main(args(chars, tmp_path / "refused", "--check")) == 2
    err = capsys.readouterr().err
    assert f"train.resume={hf!r}: the Hugging Face dir {hf} was trained on 'roformer_word' tokens" in err, err
    assert "tokenized by 'bert_wordpiece'" in err, err
    out = tmp_path / "resumed"
    assert run_pretrain.main(args(os.path.join(root, "data", "w"), out)) == 0
    assert read_checkpoint(str(out / "checkpoints" / "latest")).tokenizer_kind == "roformer_word"
