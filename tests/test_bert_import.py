"""Issue 18 points 6-7: the BERT directories HFL and UER publish, in and out of ``export``.

In: ``export.from_pytorch`` takes them as they are (architecture from config.json's ``model_type``):
``pytorch_model.bin`` (``weights_only=True``) or ``model.safetensors``; ``BertForPreTraining`` keys (the NSP head
becomes our binary head, said in one note), ``BertForMaskedLM`` keys, bare ``BertModel`` keys; the ``position_ids``
buffer; ``gamma``/``beta`` LayerNorm names; 3 token-type rows; ``layer_norm_eps`` kept; HFL's 21,128-line vocab.
What does not fit the architecture config.json names is refused, naming what differs -- also the RoFormer-v2 trap
(a RoFormer-v2 checkpoint has no biases and no LayerNorm weights; transformers' RoFormer class loads it without an
error and predicts nonsense).  Out: HF -> ours -> HF bit-identical; to_paddlenlp for BERT.

The directories are made by transformers in the test (tests/_hf_bert_util.py).  Budget: < 20 s.
"""
import json
import os

import numpy as np
import pytest
import torch  # the test extra: a missing one is an install error, never a skip
import transformers

import _hf_bert_util as B
from ernie_style.storage.safetensors_io import read_safetensors
from export import from_pytorch, to_paddlenlp, to_pytorch



def _import(src, out, capsys, *extra):
    rc = from_pytorch.main([str(src), str(out), *extra])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    return captured.out


def _error(src, tmp_path, capsys):
    out = tmp_path / "refused"
    assert from_pytorch.main([str(src), str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    assert not out.exists()
    return err


def test_hfl_pretraining_bin_with_tf_names_imports_with_nsp_as_binary_head(tmp_path, capsys):
    """HFL's layout: BertForPreTraining keys in pytorch_model.bin, gamma/beta, position_ids, 21,128-line vocab."""
    src = B.write_hf_bert(tmp_path / "hfl", "pretraining", tf_names=True, layer_norm_eps=1e-5)
    assert ".gamma" in "".join(torch.load(os.path.join(src, "pytorch_model.bin"), weights_only=True))
    out = _import(src, tmp_path / "ours", capsys)  # (--verify: the UER case below; 21,128 x float64 is slow)
    notes = [ln for ln in out.splitlines() if ln.startswith("note: ")]
    assert [n for n in notes if "next-sentence head" in n] == [
        "note: the source's next-sentence head (cls.seq_relationship.*) becomes our binary head: continued "
        "pretraining with SOP trains it on sentence order"]
    assert any("dropped bert.embeddings.position_ids" in n for n in notes), notes
    assert not any("initialised" in n for n in notes), notes  # pooler and NSP head came from the source
    cfg = json.loads((tmp_path / "ours" / "model_config.json").read_text())
    assert cfg["arch"] == "bert" and cfg["layer_norm_eps"] == 1e-5 and cfg["vocab_size"] == B.HFL_VOCAB_SIZE
    vocab = (tmp_path / "ours" / "vocab.txt").read_text(encoding="utf-8").splitlines()
    assert len(vocab) == B.HFL_VOCAB_SIZE and vocab[1] == "[unused1]" and vocab[101] == "[CLS]"
    # the NSP head is the source's, bit for bit (torch [out, in] -> ours [in, out])
    from ernie_style.storage.pdparams import load_pdparams

    state = load_pdparams(str(tmp_path / "ours" / "model_state.pdparams"))
    hf = transformers.BertForPreTraining.from_pretrained(src)
    assert np.array_equal(state["cls.seq_relationship.weight"], hf.cls.seq_relationship.weight.detach().numpy().T)


@pytest.mark.parametrize("kind", ["masked_lm", "bare"])
def test_uer_masked_lm_and_bare_bert_model_safetensors_import(kind, tmp_path, capsys):
    """UER's layout: BertForMaskedLM keys, 3 token-type rows (safetensors); and bare BertModel keys."""
    src = B.write_hf_bert(tmp_path / kind, kind, safetensors=True, type_vocab_size=3, vocab_size=200)
    out = _import(src, tmp_path / "ours", capsys, *(["--verify"] if kind == "masked_lm" else []))
    assert ("verify: max |logits(transformers) - logits(paddle)|" in out) == (kind == "masked_lm")
    notes = [ln for ln in out.splitlines() if ln.startswith("note: ")]
    assert "note: initialised cls.seq_relationship.weight (not in the source)" in notes
    if kind == "bare":
        assert any("bare base model (no MLM head): cls.predictions.* initialised" in n for n in notes), notes
    else:
        assert "note: initialised bert.pooler.dense.weight (not in the source)" in notes
    cfg = json.loads((tmp_path / "ours" / "model_config.json").read_text())
    assert cfg["type_vocab_size"] == 3
    from ernie_style.modeling import BertForPretraining

    model = BertForPretraining.from_pretrained(str(tmp_path / "ours"))  # a plain model dir, loads as it is
    assert model.load_report.missing == [] and list(model.bert.embeddings.token_type_embeddings.weight.shape) == [3, 32]


def _drop(src, pred):
    """Rewrite ``src``'s weights without the tensors ``pred`` selects."""
    path = os.path.join(src, "model.safetensors")
    tensors = {k: v.clone() for k, v in _st_load(path).items() if not pred(k)}
    from safetensors.torch import save_file

    save_file(tensors, path, metadata={"format": "pt"})


def _st_load(path):
    from safetensors.torch import load_file

    return load_file(path)


def test_weights_that_do_not_fit_bert_are_refused_naming_what_differs(tmp_path, capsys):
    src = B.write_hf_bert(tmp_path / "nobias", "masked_lm", safetensors=True, vocab_size=200)
    _drop(src, lambda k: k.endswith("attention.self.query.bias"))
    err = _error(src, tmp_path, capsys)
    assert "missing 2 parameter(s) for this model_config of a bert model: " \
           "bert.encoder.layers.{i}.self_attn.q_proj.bias (2 layers)" in err, err
    # other shapes: config.json says another FFN width than the weights hold
    src = B.write_hf_bert(tmp_path / "shape", "masked_lm", safetensors=True, vocab_size=200)
    conf = json.loads(open(os.path.join(src, "config.json")).read())
    with open(os.path.join(src, "config.json"), "w") as f:
        json.dump({**conf, "intermediate_size": 48}, f)
    err = _error(src, tmp_path, capsys)
    assert "bert.encoder.layers.0.linear1.weight has shape [32, 64], model_config expects [32, 48]" in err, err
    # positions permuted in the position_ids buffer: another model
    src = B.write_hf_bert(tmp_path / "perm", "masked_lm", vocab_size=200)
    sd = torch.load(os.path.join(src, "pytorch_model.bin"), weights_only=True)
    sd["bert.embeddings.position_ids"] = sd["bert.embeddings.position_ids"].flip(-1)
    torch.save(sd, os.path.join(src, "pytorch_model.bin"))
    assert "bert.embeddings.position_ids is not arange(64)" in _error(src, tmp_path, capsys)
    # relative position embeddings: not the math of our BERT
    src = B.write_hf_bert(tmp_path / "rel", "masked_lm", safetensors=True, vocab_size=200,
                          position_embedding_type="relative_key")
    assert "position_embedding_type 'relative_key'; our BERT has learned absolute positions" in \
        _error(src, tmp_path, capsys)
    # an unknown model_type
    with open(os.path.join(src, "config.json"), "w") as f:
        json.dump({**conf, "model_type": "megatron-bert"}, f)
    assert "config.json: model_type is 'megatron-bert', expected 'roformer' or 'bert'" in \
        _error(src, tmp_path, capsys)


def test_roformer_v2_weights_are_refused_not_loaded_silently(tmp_path, capsys):
    """RoFormer-v2 (model_type roformer) has no biases in its dense layers and no LayerNorm weights (its norm has
    none): transformers' RoFormerForMaskedLM loads such a file with only a warning; we refuse it, naming them."""
    import _export_util as U

    cfg = U.tiny_config()
    d = tmp_path / "roformer_v2"
    model = transformers.RoFormerForMaskedLM(transformers.RoFormerConfig(**cfg))
    model.save_pretrained(d)
    _drop(str(d), lambda k: k.endswith(".bias") or "LayerNorm" in k)
    conf = json.loads((d / "config.json").read_text())
    (d / "config.json").write_text(json.dumps({**conf, "norm_type": "rms_norm", "use_bias": False}))
    (d / "vocab.txt").write_text("".join(t + "\n" for t in U.VOCAB), encoding="utf-8")
    _, info = transformers.RoFormerForMaskedLM.from_pretrained(d, output_loading_info=True)
    assert info["missing_keys"]  # transformers: loaded anyway, with those weights freshly initialised
    err = _error(d, tmp_path, capsys)
    assert "parameter(s) for this model_config of a roformer model: " in err, err
    assert "roformer.encoder.layers.{i}.self_attn.q_proj.bias (2 layers)" in err
    assert "roformer.embeddings.layer_norm.weight" in err


def test_hf_to_ours_to_hf_is_bit_identical_and_to_paddlenlp_verifies(tmp_path, capsys):
    src = B.write_hf_bert(tmp_path / "hfl", "pretraining", tf_names=True, vocab_size=200)
    _import(src, tmp_path / "ours", capsys)
    assert to_pytorch.main([str(tmp_path / "ours"), str(tmp_path / "back")]) == 0
    back = tmp_path / "back"
    conf = json.loads((back / "config.json").read_text())
    assert conf["model_type"] == "bert" and conf["architectures"] == ["BertForMaskedLM"]
    assert conf["layer_norm_eps"] == 1e-12 and conf["position_embedding_type"] == "absolute"
    # every tensor of the source (LayerNorm names as transformers reads them) comes back bit for bit
    source = transformers.BertForPreTraining.from_pretrained(src).state_dict()
    written = {**read_safetensors(back / "model.safetensors")[0], **read_safetensors(back / "pretraining_heads.safetensors")[0]}
    skip = {"bert.embeddings.position_ids", "cls.predictions.decoder.weight", "cls.predictions.decoder.bias"}
    assert set(written) == set(source) - skip
    for name, a in written.items():
        assert a.dtype == np.float32 and np.array_equal(a, source[name].numpy()), name
    capsys.readouterr()
    assert to_paddlenlp.main([str(tmp_path / "ours"), str(tmp_path / "pnlp"), "--verify"]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "verify: max |logits(paddle) - logits(paddlenlp)|" in out and "PaddleNLP BertForMaskedLM" in out
    # the file holds exactly PaddleNLP BertForMaskedLM's names (its tied copies included, nothing of RoFormer's)
    import paddlenlp.transformers as pnlp

    from ernie_style.storage.pdparams import load_pdparams

    conf = json.loads((tmp_path / "pnlp" / "config.json").read_text())
    want = pnlp.BertForMaskedLM(pnlp.BertConfig(**{k: v for k, v in conf.items() if k not in (
        "architectures", "ernie_style_source")})).state_dict()
    assert set(load_pdparams(str(tmp_path / "pnlp" / "model_state.pdparams"))) == set(want)
