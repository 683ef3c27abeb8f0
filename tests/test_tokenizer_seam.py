"""The tokenizer seam (data_tools.tokenizers): the kind is recorded in meta.json and in checkpoints, and every
caller gets its tokenizer through the registry.

A second kind is registered the documented way (one class + one line in ``KINDS``); preprocess makes data of that
kind (``--tokenizer``) and records it, the data trains, its checkpoint records the kind and export names the
kind's transformers class -- without a change to any caller.  Budget: ~10 s.
"""
import json
import os

import numpy as np
import pytest

import _trainer_util as U
from data_tools import meta as dmeta
from data_tools import tokenizers
from data_tools.tokenizer import BertTokenizer
from data_tools.tokenizers import DEFAULT_KIND, TokenizerSpec
from ernie_style import run_pretrain

CONFIG = os.path.join(U.REPO, "configs", "roformer_tiny_demo.yaml")

TOY_TOKENIZER = '''
"""A toy second tokenizer kind in one file (the BERT algorithm under another name and transformers class)."""
from data_tools.tokenizer import BertTokenizer

BUILT = []


class ToyWordTokenizer(BertTokenizer):
    kind = "toy_words"

    def __init__(self, vocab_file, do_lower_case=True, **options):
        BUILT.append(vocab_file)
        super().__init__(vocab_file, do_lower_case=do_lower_case, **options)
'''


def test_the_default_kind_is_todays_bert_tokenizer(tmp_path):
    prefix, vocab = U.make_data(str(tmp_path / "d"), n_docs=4)
    tok = tokenizers.load_tokenizer(vocab)
    assert type(tok) is BertTokenizer and tok.kind == DEFAULT_KIND == BertTokenizer.kind
    text = "一丁七万丈三 Hello"
    np.testing.assert_array_equal(tok.encode(text), BertTokenizer(vocab).encode(text))
    assert tokenizers.hf_tokenizer_class() == "BertTokenizer"
    assert dmeta.data_tokenizer(prefix) == TokenizerSpec()  # no meta.json: today's kind
    assert TokenizerSpec(False).to_dict() == {"do_lower_case": False}  # the bytes files had before kinds
    assert TokenizerSpec.from_dict({"do_lower_case": False}) == TokenizerSpec(False, DEFAULT_KIND)
    with pytest.raises(ValueError, match="tokenizer kind 'words': not a tokenizer this version knows"):
        tokenizers.load_tokenizer(vocab, TokenizerSpec(kind="words"))


def _write_meta(prefix, vocab, kind):
    """meta.json of U.make_data's prefix (which has none), recording ``kind``, through the one writer."""
    from data_tools.io_utils import sha256_file

    files = {ext: dmeta.FileInfo(prefix + ext, os.path.getsize(prefix + ext), sha256_file(prefix + ext))
             for ext in (".bin", ".idx", ".wwm")}
    m = dmeta.DatasetMeta(
        created_by="test", vocab=dmeta.VocabInfo(vocab, sha256_file(vocab), 125),
        tokenizer=TokenizerSpec(True, kind), segmenter=dmeta.SegmenterInfo("none", "", ""), settings={},
        dtype="uint16", wwm_encoding="uint8", inputs=[], counts=dmeta.Counts(), skipped={}, skipped_first={},
        repaired={}, repaired_first={}, files=files, run={})
    with open(dmeta.meta_path(prefix), "w", encoding="utf-8") as f:
        json.dump(m.to_dict(), f)


def test_a_new_kind_flows_from_the_data_to_the_checkpoint_and_export(tmp_path, monkeypatch, capsys):
    (tmp_path / "toy_tokenizer.py").write_text(TOY_TOKENIZER, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(tokenizers.KINDS, "toy_words",
                        tokenizers.Kind("toy_tokenizer:ToyWordTokenizer", "ToyTokenizer"))  # the registry line
    import toy_tokenizer

    import _pipeline_util as P
    from data_tools.preprocess import main as preprocess

    docs = P.sample_docs(300)
    vocab = P.write_vocab(str(tmp_path / "vocab.txt"), docs)
    prefix = str(tmp_path / "toy")
    assert preprocess(["--input", P.write_lines(str(tmp_path / "c.txt"), docs), "--vocab", vocab,
                       "--output-prefix", prefix, "--tokenizer", "toy_words", "--quiet"]) == 0
    assert dmeta.read_meta(prefix).tokenizer == TokenizerSpec(True, "toy_words")
    with open(dmeta.meta_path(prefix)) as f:
        assert json.load(f)["tokenizer"] == {"do_lower_case": True, "kind": "toy_words"}
    default = str(tmp_path / "default")  # other text of today's kind: merge refuses to mix the two kinds
    assert preprocess(["--input", P.write_lines(str(tmp_path / "d.txt"), docs[:50]), "--vocab", vocab,
                       "--output-prefix", default, "--quiet"]) == 0
    from data_tools import merge

    assert merge.main(["--inputs", default, prefix, "--output-prefix", str(tmp_path / "m"), "--quiet"]) == 2
    assert "tokenizer 'toy_words' differs from" in capsys.readouterr().err
    out = tmp_path / "out"
    over = U.tiny_overrides(prefix, vocab, str(out), **{"train.save_steps": 2, "train.max_steps": 2})
    assert run_pretrain.main(["--config", CONFIG, *over]) == 0
    assert os.path.abspath(vocab) in toy_tokenizer.BUILT  # the dataset's special ids came from the data's kind
    ckpt_dir = out / "checkpoints" / "latest"
    with open(ckpt_dir / "tokenizer_config.json") as f:
        assert json.load(f) == {"do_lower_case": True, "kind": "toy_words"}

    from ernie_style.arch.model_reader import read_checkpoint
    from export.to_pytorch import hf_config, tokenizer_config

    ckpt = read_checkpoint(str(ckpt_dir))
    assert ckpt.tokenizer_kind == "toy_words"
    assert tokenizer_config(ckpt)["tokenizer_class"] == "ToyTokenizer"
    assert hf_config(ckpt.config, "float32", tokenizer_kind=ckpt.tokenizer_kind)["tokenizer_class"] == "ToyTokenizer"

    # fine-tuned from that checkpoint, the kind travels on: best_model/ records it and its export names the class
    import _finetune_util as F
    from ernie_style import finetune

    files = F.seq_files(str(tmp_path / "ft"), n_train=64, n_dev=32)
    ft_out = tmp_path / "ft_out"
    assert finetune.main([os.path.join(U.REPO, "configs", "finetune", "seq_cls.yaml"),
                          f"model.init={ckpt_dir}", f"data.vocab_file={vocab}", f"data.train_file={files['train']}",
                          f"data.dev_file={files['dev']}", "data.test_file=", "data.max_seq_len=32",
                          f"train.output_dir={ft_out}",
                          "train.epochs=1", "train.micro_batch_size=16", "train.resume=none"]) == 0
    with open(ft_out / "best_model" / "tokenizer_config.json") as f:
        assert json.load(f) == {"do_lower_case": True, "kind": "toy_words"}
    best = read_checkpoint(str(ft_out / "best_model"))
    assert best.task == "seq_cls" and best.tokenizer_kind == "toy_words"
    assert tokenizer_config(best)["tokenizer_class"] == "ToyTokenizer"
    capsys.readouterr()  # the fine-tune's output

    # data recorded as a kind this version does not know: refused before launch, one line
    prefix, vocab = U.make_data(str(tmp_path / "d"))
    _write_meta(prefix, vocab, "unknown_words")
    assert run_pretrain.main(["--config", CONFIG, *U.tiny_overrides(prefix, vocab, str(tmp_path / "o2"))]) == 2
    err = capsys.readouterr().err.strip()
    assert "was tokenized by a 'unknown_words' tokenizer" in err and len(err.splitlines()) == 1, err


def test_todays_checkpoints_keep_their_tokenizer_config_bytes(tmp_path):
    prefix, vocab = U.make_data(str(tmp_path / "d"), n_docs=40)
    out = tmp_path / "out"
    over = U.tiny_overrides(prefix, vocab, str(out), **{"train.save_steps": 1, "train.max_steps": 1})
    assert run_pretrain.main(["--config", CONFIG, *over]) == 0
    with open(out / "checkpoints" / "latest" / "tokenizer_config.json", "rb") as f:
        assert f.read() == b'{"do_lower_case": true}'
