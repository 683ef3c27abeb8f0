"""The tokenizer seam (data_tools.tokenizers): the kind is recorded in meta.json and in checkpoints, every caller
gets its tokenizer through the registry and uses only the ``Tokenizer`` protocol's members.

The second kind, ``roformer_word`` (data_tools/word_tokenizer.py + its C++ and one KINDS line), is the seam's
test: preprocess makes data of that kind (``--tokenizer``) and records it, the data trains, its checkpoint records
the kind, export names the kind's transformers class and fine-tuned models keep the kind -- and no module outside
the kinds' own files names a kind or imports a kind's module.  Budget: ~10 s.
"""
import json
import os
import re

import numpy as np
import pytest

import _trainer_util as U
from data_tools import meta as dmeta
from data_tools import tokenizers
from data_tools.tokenizer import BertTokenizer
from data_tools.tokenizers import DEFAULT_KIND, KINDS, Tokenizer, TokenizerSpec
from ernie_style import run_pretrain

CONFIG = os.path.join(U.REPO, "configs", "roformer_tiny_demo.yaml")
WORD = "roformer_word"
# the modules that may know a kind by name: the kinds themselves, the registry, and the vocab builder (which
# builds each kind's vocabulary)
KIND_FILES = {"data_tools/tokenizer.py", "data_tools/word_tokenizer.py", "data_tools/tokenizers.py",
              "data_tools/build_vocab.py"}
# what naming a kind looks like in code: constructing one, its document encoder, importing its module, a kind
# name as a string literal
NAMES_A_KIND = re.compile(r"BertTokenizer\(|RoFormerWordTokenizer|DocumentEncoder|encode_document|"
                          r"data_tools\.(word_)?tokenizer\b|[\"']({})[\"']".format("|".join(KINDS)))


@pytest.fixture(scope="module")
def word_vocab(tmp_path_factory):
    import _pipeline_util as P
    from data_tools.build_vocab import build_word_vocab

    d = tmp_path_factory.mktemp("wv")
    corpus = P.write_lines(str(d / "c.txt"), P.sample_docs(300))
    build_word_vocab([corpus], str(d / "vocab.txt"), min_word_freq=2)
    return corpus, str(d / "vocab.txt")


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


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_kind_implements_the_protocol(kind, word_vocab):
    tok = tokenizers.load_tokenizer(word_vocab[1], TokenizerSpec(True, kind))
    assert isinstance(tok, Tokenizer) and tok.kind == kind
    members = [m for m in vars(Tokenizer) if not m.startswith("_")] + list(Tokenizer.__annotations__)
    missing = [m for m in members if not hasattr(tok, m)]
    assert not missing, f"{kind} lacks {missing}"
    text = "北京的人工智能研究，Hello World！"
    ids = tok.encode(text)
    o_ids, starts, ends = tok.encode_with_offsets(text)
    np.testing.assert_array_equal(ids, o_ids)
    assert tok.convert_ids_to_tokens(ids) == tok.tokenize(text) and tok.decode(ids).replace(" ", "")
    assert all(0 <= a < b <= len(text) for a, b in zip(starts, ends))
    seg = tok.segmenter()  # the kind's default segmenter
    doc = tok.document_encoder(seg, max_sentence_tokens=8).encode(text)
    np.testing.assert_array_equal(doc.ids, ids)
    assert doc.wwm.shape == ids.shape and doc.sentence_lengths.sum() == ids.size and doc.wwm[0] == 1
    assert tok.hf_tokenizer_config(False)["tokenizer_class"] == tok.hf_class == tokenizers.hf_tokenizer_class(kind)
    assert isinstance(tok.hf_model_card, str)
    assert {i for i in tok.special_ids} >= {tok.pad_id, tok.unk_id, tok.cls_id, tok.sep_id, tok.mask_id}


def test_nothing_outside_the_kinds_names_a_kind():
    """The seam reaches everywhere: no module outside KIND_FILES constructs a kind, imports a kind's module or
    branches on a kind's name (the grep DESIGN.md asks for when a second case lands)."""
    hits = []
    for top in ("data_tools", "ernie_style", "export"):
        for root, _, names in os.walk(os.path.join(U.REPO, top)):
            for name in names:
                rel = os.path.relpath(os.path.join(root, name), U.REPO).replace(os.sep, "/")
                if not name.endswith(".py") or rel in KIND_FILES:
                    continue
                with open(os.path.join(root, name), encoding="utf-8") as f:
                    hits += [f"{rel}:{n}: {line.strip()}" for n, line in enumerate(f, 1) if NAMES_A_KIND.search(line)]
    assert not hits, "\n".join(hits)


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


def test_the_word_level_kind_flows_from_the_data_to_the_checkpoint_and_export(tmp_path, capsys, word_vocab):
    import _pipeline_util as P
    from data_tools.preprocess import main as preprocess

    corpus, vocab = word_vocab
    prefix = str(tmp_path / "word")
    assert preprocess(["--input", corpus, "--vocab", vocab, "--output-prefix", prefix, "--tokenizer", WORD,
                       "--quiet"]) == 0
    meta = dmeta.read_meta(prefix)
    assert meta.tokenizer == TokenizerSpec(True, WORD) and meta.segmenter.name == "jieba_dag"
    with open(dmeta.meta_path(prefix)) as f:
        assert json.load(f)["tokenizer"] == {"do_lower_case": True, "kind": WORD}
    # the word segmentation is the tokenization: another segmenter is refused in one line
    assert preprocess(["--input", corpus, "--vocab", vocab, "--output-prefix", str(tmp_path / "x"), "--tokenizer",
                       WORD, "--segmenter", "jieba", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "cuts the words of rjieba.cut(text, False) as RoFormerTokenizer does" in err and len(err.splitlines()) == 1, err
    default = str(tmp_path / "default")  # other text of today's kind: merge refuses to mix the two kinds
    assert preprocess(["--input", P.write_lines(str(tmp_path / "d.txt"), P.sample_docs(50)), "--vocab", vocab,
                       "--output-prefix", default, "--quiet"]) == 0
    from data_tools import merge

    assert merge.main(["--inputs", default, prefix, "--output-prefix", str(tmp_path / "m"), "--quiet"]) == 2
    assert f"tokenizer '{WORD}' differs from" in capsys.readouterr().err
    out = tmp_path / "out"
    over = U.tiny_overrides(prefix, vocab, str(out), **{"train.save_steps": 2, "train.max_steps": 2})
    assert run_pretrain.main(["--config", CONFIG, *over]) == 0
    ckpt_dir = out / "checkpoints" / "latest"
    with open(ckpt_dir / "tokenizer_config.json") as f:
        assert json.load(f) == {"do_lower_case": True, "kind": WORD}

    from ernie_style.arch.model_reader import read_checkpoint
    from export.to_pytorch import hf_config, tokenizer_config

    ckpt = read_checkpoint(str(ckpt_dir))
    assert ckpt.tokenizer_kind == WORD
    assert tokenizer_config(ckpt)["tokenizer_class"] == "RoFormerTokenizer"
    hf = hf_config(ckpt.config, "float32", tokenizer_kind=ckpt.tokenizer_kind)
    assert hf["tokenizer_class"] == "RoFormerTokenizer"

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
        assert json.load(f) == {"do_lower_case": True, "kind": WORD}
    best = read_checkpoint(str(ft_out / "best_model"))
    assert best.task == "seq_cls" and best.tokenizer_kind == WORD
    assert tokenizer_config(best)["tokenizer_class"] == "RoFormerTokenizer"
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
