"""The demo's downstream task: held-out words, neutral frames, deterministic files."""
import re

from data_tools.sample_data import word_topics as wt


def _word(text):
    for frame in sorted(wt.FRAMES, key=len, reverse=True):  # "{x}" alone matches anything: last
        m = re.fullmatch(re.escape(frame).replace(re.escape("{x}"), "(.+)"), text)
        if m:
            return m.group(1)
    raise AssertionError(f"no frame matches {text!r}")


def test_train_and_eval_words_are_disjoint_per_class():
    train, dev, test = wt.make_splits(seed=7)
    train_words = {(label, _word(t)) for label, t in train}
    eval_words = {(label, _word(t)) for label, t in dev + test}
    assert train_words and eval_words and not (train_words & eval_words)
    # every class is in every split, and each word really belongs to its class's list
    for split in (train, dev, test):
        assert {label for label, _ in split} == set(wt.CLASSES)
    for label, word in train_words | eval_words:
        assert word in wt.CLASSES[label]


def test_files_are_deterministic(tmp_path):
    for out in ("a", "b"):
        assert wt.main(["--out", str(tmp_path / out), "--seed", "7"]) == 0
    for name in ("train.tsv", "dev.tsv", "test.tsv"):
        a = (tmp_path / "a" / name).read_text(encoding="utf-8")
        assert a == (tmp_path / "b" / name).read_text(encoding="utf-8")
        assert a.splitlines()[0] == "label\ttext_a"
    assert wt.main(["--out", str(tmp_path / "c"), "--seed", "8"]) == 0
    assert (tmp_path / "c" / "train.tsv").read_text(encoding="utf-8") != (tmp_path / "a" / "train.tsv").read_text(
        encoding="utf-8")
