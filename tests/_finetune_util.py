"""Small learnable classification data sets for the fine-tuning tests (own generator, own vocab)."""
import json
import os

import numpy as np

from _trainer_util import N_PLAIN, SPECIALS

CHARS = [chr(0x4E00 + k) for k in range(N_PLAIN)]
# Topic k owns the keyword characters CHARS[8k : 8k+8]; the rest (from 40 on) are neutral filler.
N_TOPICS = 5
NEUTRAL = CHARS[40:]


def write_vocab(root: str) -> str:
    os.makedirs(root, exist_ok=True)
    path = os.path.join(root, "vocab.txt")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(SPECIALS + CHARS) + "\n")
    return path


def topic_text(rng, topic: int, n_key: int = 3) -> str:
    """Filler with ``n_key`` keyword characters of ``topic`` mixed in."""
    filler = list(rng.choice(NEUTRAL, size=int(rng.integers(4, 12))))
    for c in rng.choice(CHARS[8 * topic: 8 * topic + 8], size=n_key):
        filler.insert(int(rng.integers(0, len(filler) + 1)), c)
    return "".join(filler)


def seq_examples(n: int, seed: int, n_labels: int = 3):
    """[(label, text)]: the label names the topic of the text's keywords."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, n_labels, size=n)
    return [(f"t{k}", topic_text(rng, int(k))) for k in labels]


def pair_examples(n: int, seed: int):
    """[(label, a, b)]: each text has topic 0 or 1; the label is the sum of the two topics ("0", "1", "2"), so
    neither text alone decides it (predicting from one text is right about half the time)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        ta, tb = (int(x) for x in rng.integers(0, 2, size=2))
        out.append((str(ta + tb), topic_text(rng, ta), topic_text(rng, tb)))
    return out


def write_tsv(path: str, rows, header=("label", "text_a", "text_b"), labelled=True) -> str:
    with open(path, "w", encoding="utf-8") as f:
        names = list(header[:len(rows[0])]) if labelled else list(header[1:len(rows[0])])
        if header:
            f.write("\t".join(names) + "\n")
        for r in rows:
            f.write("\t".join(r if labelled else r[1:]) + "\n")
    return path


def write_jsonl(path: str, rows, keys=("sentence",), labelled=True) -> str:
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            obj = dict(zip(keys, r[1:]))
            if labelled:
                obj["label"] = r[0]
            f.write(json.dumps(obj, ensure_ascii=False) + "\n")
    return path


def seq_files(root: str, n_train: int = 480, n_dev: int = 90) -> dict:
    """3 topics: train/dev TSV with a header and a labelled CLUE-style test JSONL, under ``root``."""
    vocab = write_vocab(root)
    train = write_tsv(os.path.join(root, "train.tsv"), seq_examples(n_train, 0), header=("label", "text_a"))
    dev = write_tsv(os.path.join(root, "dev.tsv"), seq_examples(n_dev, 1), header=("label", "text_a"))
    test_rows = seq_examples(60, 2)
    test = write_jsonl(os.path.join(root, "test.jsonl"), test_rows)
    return {"root": root, "vocab": vocab, "train": train, "dev": dev, "test": test, "test_rows": test_rows}


def tiny_overrides(out: str, train: str, dev: str, vocab: str, test: str = "", **extra) -> list:
    items = {
        "model.init": "random", "data.vocab_file": vocab, "data.train_file": train, "data.dev_file": dev,
        "data.test_file": test, "data.max_seq_len": 64,
        "model.hidden_size": 32, "model.num_hidden_layers": 2, "model.num_attention_heads": 2,
        "model.intermediate_size": 64, "model.max_position_embeddings": 128,
        "model.hidden_dropout_prob": 0.0, "model.attention_probs_dropout_prob": 0.0,
        "train.output_dir": out, "train.epochs": 2, "train.micro_batch_size": 16, "train.logging_steps": 5,
        "train.resume": "none", "optim.max_lr": 3e-3,
    }
    items.update(extra)
    return [f"{k}={v}" for k, v in items.items()]


# The NER and QA end-to-end tests: a vocab of the specials, 100 CJK characters and a few Latin pieces, and one
# tiny random-init fine-tune run through ``ernie_style.finetune.main``.
TASK_CJK = [chr(0x4E00 + k) for k in range(100)]
TINY_RUN = {"model.init": "random", "model.hidden_size": 32, "model.num_hidden_layers": 2,
            "model.num_attention_heads": 2, "model.intermediate_size": 64, "model.max_position_embeddings": 64,
            "model.hidden_dropout_prob": 0.0, "model.attention_probs_dropout_prob": 0.0,
            "train.logging_steps": 20, "train.resume": "none", "optim.max_lr": 5e-3}


def write_task_vocab(tmp_path) -> str:
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(SPECIALS + TASK_CJK + ["xy", "##e", "7"]) + "\n", encoding="utf-8")
    return str(vocab)


def tiny_finetune(tmp_path, config, train, dev, test, **items):
    """(exit code, output dir) of a tiny run of ``config`` on the given files; ``items`` override TINY_RUN."""
    from ernie_style import finetune

    keys = dict(TINY_RUN, **{"data.vocab_file": write_task_vocab(tmp_path), "data.train_file": train,
                             "data.dev_file": dev, "data.test_file": test,
                             "train.output_dir": str(tmp_path / "out")})
    keys.update(items)
    rc = finetune.main([config, *[f"{k}={v}" for k, v in keys.items()]])
    return rc, tmp_path / "out"


def dev_predictions_by_world(config, overrides, worlds=(1, 2, 3)):
    """(task, model, [predictions of the dev split with its eval batches spread over W ranks, for W in worlds]):
    a tiny random model, its dev rows gathered by index the way ranks gather them."""
    import numpy as np
    import paddle

    from ernie_style import finetune
    from ernie_style.config.finetune import load_finetune_config

    task, _ = finetune.prepare(load_finetune_config(config, overrides), 1)
    paddle.seed(3)
    model = task.build_model()
    model.eval()
    task.build_data(1, 4, 1)
    split = task.valid

    def rows_for(world):
        full = np.zeros((len(split.features), task.row_width))
        for rank in range(world):
            for batch in split.batches(rank, world):
                t = {k: paddle.to_tensor(batch[k]) for k in task.tensor_keys}
                with paddle.no_grad():
                    full[batch["index"]] += task.eval_rows(batch, t, task.forward(model, t))
        return full

    return task, model, [task.predictions("dev", rows_for(w)) for w in worlds]


# Latin letters, digits and full-width forms, each alone and as a continuation piece, plus a few longer pieces, so
# that the tokenizer merges runs of them ("２０２１" -> "２０" "##２" "##１", "iPhone" -> "iphone", "ＡＢＣ" -> "ａｂｃ"):
# the NER tests' characters that share a token.
_MERGING = list("abcdefghijklmnopqrstuvwxyz0123456789") + [chr(0xFF10 + k) for k in range(10)] + \
    [chr(0xFF41 + k) for k in range(26)]
MERGING_VOCAB = SPECIALS + TASK_CJK + ["年", "月"] + _MERGING + ["##" + c for c in _MERGING] + ["2021", "20", "##21", "iphone",
                                                                                  "ａｂｃ", "２０"]
