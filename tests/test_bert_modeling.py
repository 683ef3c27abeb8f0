"""ernie_style.arch.bert: parity with PaddleNLP's BertModel and transformers' BertForMaskedLM / BertForPreTraining,
the layers it shares with RoFormer, loading, persistence, config validation.

References (same weights, fp32 CPU, a padded batch with token types and an attention mask): PaddleNLP
``BertModel`` / ``BertForPretraining`` (loaded both ways through ``ernie_style.arch.bert.paddlenlp``) and
transformers ``BertForMaskedLM`` / ``BertForPreTraining`` on torch (through the name map of
``ernie_style.arch.bert.state_dict_adapter``).  ``pytest -s`` prints the largest differences.
"""

import json

import numpy as np
import paddle
import pytest

from ernie_style.arch import arch_of, get_arch
from ernie_style.arch.bert.paddlenlp import config_from_paddlenlp, load_state_dict_checked, to_paddlenlp_state_dict
from ernie_style.arch.bert.state_dict_adapter import HF_DERIVED, HF_TIED, L, NAME_MAP
from ernie_style.arch.common import layers
from ernie_style.arch.roformer.modeling import RoFormerConfig, RoFormerForPretraining
from ernie_style.modeling import BertConfig, BertForPretraining, BertModel

paddle.set_device("cpu")
try:  # the PaddleNLP parity reference (test extra of setup.py)
    import paddlenlp.transformers as pnlp
except ImportError:
    pnlp = None
try:  # the Hugging Face parity reference
    import torch
    import transformers
except ImportError:
    torch = transformers = None
needs_paddlenlp = pytest.mark.skipif(pnlp is None, reason="PaddleNLP parity reference: paddlenlp does not import "
                                                          "(pip install -e '.[test]')")
needs_torch = pytest.mark.skipif(transformers is None, reason="Hugging Face parity reference: torch/transformers "
                                                              "do not import (pip install -e '.[test]')")

# UER's checkpoints carry 3 token-type rows; a non-default epsilon shows layer_norm_eps is kept, not reset.
TINY = dict(vocab_size=97, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
            max_position_embeddings=40, type_vocab_size=3, layer_norm_eps=1e-5)
SOP_KEYS = ["cls.seq_relationship.bias", "cls.seq_relationship.weight"]


def _batch(vocab, batch=3, seq=12, seed=0):
    """ids with trailing padding (pad id 0) of different lengths, token types 0, 1 (and 2 in the first row), and
    the 1/0 attention mask."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, vocab, size=(batch, seq))
    types = np.zeros_like(ids)
    for row in range(batch):
        length = seq - 3 * row
        ids[row, length:] = 0
        types[row, length // 2 : length] = 1
    types[0, -2:] = 2
    return ids, types, (ids != 0).astype("int64")


def _model(kw=TINY, seed=0, cls=BertForPretraining, std=0.1):
    """Ours with every parameter random, biases and LayerNorms included, so that each one counts; ``std`` small
    enough for the width that the outputs stay O(1), where an absolute 1e-5 means something."""
    paddle.seed(seed)
    model = cls(BertConfig(**kw))
    rng = np.random.default_rng(seed)
    for name, p in model.named_parameters():
        value = rng.normal(0.0, std, size=p.shape) + (1.0 if "norm" in name and name.endswith("weight") else 0.0)
        p.set_value(value.astype("float32"))
    model.set_attention_impl("plain")
    model.eval()
    return model


def _np(state):
    return {k: v.numpy() for k, v in state.items()}


def _maxdiff(a, b):
    return float(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)).max())


def _hf_state(ours: dict, files=("main",)) -> dict:
    """Our state dict in Hugging Face names through NAME_MAP (torch layout), the rows of ``files`` only."""
    out = {}
    for name, a in ours.items():
        for src, dst, transpose, where in NAME_MAP:
            head, _, tail = src.partition(L)
            if name == src or (tail and name.startswith(head) and name.endswith(tail)
                               and name[len(head):-len(tail)].isdigit()):  # fmt: skip
                if where in files:
                    layer = name[len(head):-len(tail)] if tail else ""
                    out[dst.replace(L, layer)] = torch.from_numpy(np.ascontiguousarray(a.T if transpose else a))
                break
        else:
            raise AssertionError(f"no Hugging Face name for {name}")
    return out


def _hf_config(kw):
    return transformers.BertConfig(**{**kw, "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0},
                                   attn_implementation="eager")


# -- the shared layers -------------------------------------------------------------------------------------------------


def test_encoder_pooler_and_heads_are_the_ones_roformer_uses():
    bert = BertForPretraining(BertConfig(**TINY))
    roformer = RoFormerForPretraining(RoFormerConfig(vocab_size=97, hidden_size=32, num_hidden_layers=2,
                                                     num_attention_heads=4, intermediate_size=64))  # fmt: skip
    for ours, theirs in ((bert.bert, roformer.roformer),):
        assert type(ours.encoder) is type(theirs.encoder) is layers.Encoder
        assert type(ours.pooler) is type(theirs.pooler) is layers.Pooler
        assert type(ours.encoder.layers[0]) is layers.TransformerLayer  # BERT: the shared layer as it is
        assert isinstance(theirs.encoder.layers[0], layers.TransformerLayer)  # RoFormer: + its rotary hook
        assert type(ours.encoder.layers[0].self_attn) is layers.SelfAttention
    assert type(bert.cls) is type(roformer.cls) is layers.PretrainingHeads
    assert get_arch("bert").pretraining_model_class() is BertForPretraining
    assert get_arch("bert").base_model_class() is BertModel
    assert arch_of(bert.config).name == "bert" and arch_of(roformer.config).name == "roformer"


# -- PaddleNLP -----------------------------------------------------------------------------------------------------


@needs_paddlenlp
def test_parameter_names_and_shapes_are_paddlenlp_bert_names():
    ours = {k: list(v.shape) for k, v in BertForPretraining(BertConfig(**TINY)).state_dict().items()}
    theirs = {k: list(v.shape) for k, v in pnlp.BertForPretraining(pnlp.BertConfig(**TINY)).state_dict().items()}
    assert {k: v for k, v in theirs.items() if k not in ("cls.predictions.decoder.weight",
                                                        "cls.predictions.decoder.bias")} == ours  # fmt: skip
    assert ours["bert.embeddings.token_type_embeddings.weight"] == [3, 32]
    assert ours["bert.embeddings.position_embeddings.weight"] == [40, 32]


@needs_paddlenlp
def test_encoder_and_heads_match_paddlenlp_both_ways():
    """Ours -> PaddleNLP BertForPretraining, and PaddleNLP's (its own init) -> ours: encoder, pooled, MLM, SOP."""
    ids, types, mask = (paddle.to_tensor(a) for a in _batch(TINY["vocab_size"]))
    ours = _model()
    theirs = pnlp.BertForPretraining(pnlp.BertConfig(**TINY))
    theirs.eval()
    theirs.set_state_dict(to_paddlenlp_state_dict(ours.state_dict()))
    assert theirs.bert.encoder.layers[0].norm1._epsilon == theirs.bert.embeddings.layer_norm._epsilon == 1e-5
    diffs = {}
    with paddle.no_grad():
        seq, pooled = ours.bert(ids, types, mask)
        ref_seq, ref_pooled = theirs.bert(ids, token_type_ids=types, attention_mask=mask)[:2]
        mlm, sop = ours(ids, types, mask)
        ref_mlm, ref_sop = theirs(ids, token_type_ids=types, attention_mask=mask)[:2]
        diffs["ours->paddlenlp encoder"] = _maxdiff(seq, ref_seq)
        diffs["ours->paddlenlp pooled"] = _maxdiff(pooled, ref_pooled)
        diffs["ours->paddlenlp mlm"] = _maxdiff(mlm, ref_mlm)
        diffs["ours->paddlenlp sop"] = _maxdiff(sop, ref_sop)
        assert float(np.abs(seq.numpy()).max()) > 1.0 and float(np.abs(mlm.numpy()).max()) > 1.0  # not all ~0

        paddle.seed(7)
        theirs = pnlp.BertForPretraining(pnlp.BertConfig(**TINY))
        theirs.eval()
        fresh = BertForPretraining(BertConfig(**TINY))
        fresh.set_attention_impl("plain")
        fresh.eval()
        report = load_state_dict_checked(fresh, theirs.state_dict())
        assert report.missing == [] and len(report.notes) == 2  # both tied copies checked and dropped
        diffs["paddlenlp->ours encoder"] = _maxdiff(fresh.bert(ids, types, mask)[0],
                                                    theirs.bert(ids, token_type_ids=types, attention_mask=mask)[0])
        diffs["paddlenlp->ours mlm"] = _maxdiff(fresh(ids, types, mask)[0],
                                                theirs(ids, token_type_ids=types, attention_mask=mask)[0])
    print("\nBERT vs PaddleNLP, max |difference|:", ", ".join(f"{k} {v:.2e}" for k, v in diffs.items()))
    assert max(diffs.values()) <= 1e-5, diffs


@needs_paddlenlp
def test_default_mask_comes_from_pad_token_like_paddlenlp():
    ids, types, mask = (paddle.to_tensor(a) for a in _batch(TINY["vocab_size"], seed=3))
    ours = _model(seed=3)
    base = pnlp.BertModel(pnlp.BertConfig(**TINY))
    base.eval()
    report = load_state_dict_checked(BertForPretraining(BertConfig(**TINY)), base.state_dict(), allow_missing_heads=True)
    assert report.notes[0] == "base-model state dict: prefixed keys with 'bert.'"
    base.set_state_dict({k[len("bert."):]: v for k, v in ours.state_dict().items() if k.startswith("bert.")})
    with paddle.no_grad():
        implicit = ours.bert(ids, types)[0]
        assert _maxdiff(implicit, ours.bert(ids, types, mask)[0]) == 0.0
        assert _maxdiff(implicit, base(ids, token_type_ids=types)[0]) <= 1e-5
        ids2 = ids.numpy().copy()
        ids2[2, -1] = 5  # a padded position's token changes nothing at the real positions
        assert _maxdiff(ours.bert(paddle.to_tensor(ids2), types, mask)[0][2, :6], implicit[2, :6]) == 0.0


@needs_paddlenlp
def test_paddlenlp_directory_loads_through_from_pretrained(tmp_path):
    paddle.seed(1)
    mlm = pnlp.BertForMaskedLM(pnlp.BertConfig(**TINY))
    mlm.eval()
    mlm.save_pretrained(str(tmp_path))
    with pytest.raises(ValueError, match=r"missing \['cls.seq_relationship.bias', 'cls.seq_relationship.weight'\]"):
        BertForPretraining.from_pretrained(str(tmp_path))
    loaded = BertForPretraining.from_pretrained(str(tmp_path), allow_missing_heads=True)
    loaded.eval()
    assert loaded.config == BertConfig(**TINY) and loaded.load_report.missing == SOP_KEYS
    ids, types, mask = (paddle.to_tensor(a) for a in _batch(TINY["vocab_size"]))
    with paddle.no_grad():
        assert _maxdiff(loaded(ids, types, mask)[0], mlm(ids, token_type_ids=types, attention_mask=mask)) <= 1e-5


def test_untied_decoder_copy_and_wrong_shapes_are_refused():
    model = BertForPretraining(BertConfig(**TINY))
    state = to_paddlenlp_state_dict(model.state_dict())
    state["cls.predictions.decoder.weight"] = state["cls.predictions.decoder.weight"] + 1.0
    with pytest.raises(ValueError, match="cls.predictions.decoder.weight differs from "
                                         "bert.embeddings.word_embeddings.weight; the decoder must be tied"):
        load_state_dict_checked(model, state)
    state = dict(model.state_dict())
    state["bert.embeddings.token_type_embeddings.weight"] = paddle.zeros([2, 32])
    del state["bert.embeddings.position_embeddings.weight"]
    with pytest.raises(ValueError) as err:
        load_state_dict_checked(model, state)
    assert "missing ['bert.embeddings.position_embeddings.weight']" in str(err.value)
    assert "bert.embeddings.token_type_embeddings.weight: checkpoint [2, 32] vs model [3, 32]" in str(err.value)


def test_paddlenlp_config_maps_and_refuses_what_we_cannot_represent():
    d = {"architectures": ["BertForPretraining"], "model_type": "bert", "fuse": False, "pool_act": "tanh",
         "paddlenlp_version": None, **TINY}
    assert config_from_paddlenlp(d) == BertConfig(**TINY)
    with pytest.raises(ValueError, match="pool_act='relu'"):
        config_from_paddlenlp({**d, "pool_act": "relu"})
    with pytest.raises(ValueError, match="tie_word_embeddings is not true"):
        config_from_paddlenlp({**d, "tie_word_embeddings": False})
    with pytest.raises(ValueError, match="BertConfig: unknown key 'position_embedding_typ'"):
        config_from_paddlenlp({**d, "position_embedding_typ": "absolute"})


# -- Hugging Face --------------------------------------------------------------------------------------------------


@needs_torch
def test_mlm_logits_match_transformers_bert_for_masked_lm():
    ids, types, mask = _batch(TINY["vocab_size"], seed=2)
    ours = _model(seed=2)
    hf = transformers.BertForMaskedLM(_hf_config(TINY))
    hf.eval()
    result = hf.load_state_dict(_hf_state(_np(ours.state_dict())), strict=False)
    # Only the tied decoder is not written (and position_ids where this transformers version keeps it as state).
    assert set(result.missing_keys) == set(HF_TIED) | {k for k in HF_DERIVED if k in hf.state_dict()}
    assert result.unexpected_keys == []
    with paddle.no_grad():
        seq = ours.bert(*(paddle.to_tensor(a) for a in (ids, types, mask)))[0].numpy()
        mlm = ours(*(paddle.to_tensor(a) for a in (ids, types, mask)))[0].numpy()
    with torch.no_grad():
        out = hf(input_ids=torch.from_numpy(ids), token_type_ids=torch.from_numpy(types),
                 attention_mask=torch.from_numpy(mask), output_hidden_states=True)
    diffs = {"encoder": _maxdiff(seq, out.hidden_states[-1].numpy()), "mlm logits": _maxdiff(mlm, out.logits.numpy())}
    print(f"\nBERT vs transformers {transformers.__version__} BertForMaskedLM, max |difference|:",
          ", ".join(f"{k} {v:.2e}" for k, v in diffs.items()))
    assert np.abs(out.logits.numpy()).max() > 1.0
    assert max(diffs.values()) <= 1e-5, diffs


@needs_torch
def test_nsp_head_matches_transformers_bert_for_pretraining_at_full_length():
    """Pooler + seq_relationship (our SOP head, Google's NSP head) against BertForPreTraining, on rows of the full
    max_position_embeddings = 512 (every position row used; BERT's default length)."""
    kw = dict(vocab_size=300, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=256)
    ours = _model(kw, seed=4, std=0.05)
    rng = np.random.default_rng(4)
    ids = rng.integers(5, kw["vocab_size"], size=(2, 512))
    types = np.zeros_like(ids)
    types[0, 200:] = 1
    types[1, 150:300] = 1
    ids[1, 300:] = 0
    mask = (ids != 0).astype("int64")
    positions = np.array([3, 100, 511, 512 + 7, 512 + 299])  # flat row * L + pos
    hf = transformers.BertForPreTraining(_hf_config(kw))
    hf.eval()
    result = hf.load_state_dict(_hf_state(_np(ours.state_dict()), files=("main", "side")), strict=False)
    assert result.unexpected_keys == [] and set(result.missing_keys) <= set(HF_TIED) | set(HF_DERIVED)
    with paddle.no_grad():
        mlm, sop = (t.numpy() for t in ours(*(paddle.to_tensor(a) for a in (ids, types, mask)),
                                            masked_positions=paddle.to_tensor(positions)))
    with torch.no_grad():
        out = hf(input_ids=torch.from_numpy(ids), token_type_ids=torch.from_numpy(types),
                 attention_mask=torch.from_numpy(mask))
    ref_mlm = out.prediction_logits.numpy().reshape(-1, kw["vocab_size"])[positions]
    diffs = {"nsp/sop logits": _maxdiff(sop, out.seq_relationship_logits.numpy()), "mlm logits (gathered)":
             _maxdiff(mlm, ref_mlm)}  # fmt: skip
    print("\nBERT vs transformers BertForPreTraining (seq 512), max |difference|:",
          ", ".join(f"{k} {v:.2e}" for k, v in diffs.items()))
    assert max(diffs.values()) <= 1e-5, diffs


# -- our API -------------------------------------------------------------------------------------------------------


def test_gathered_mlm_head_equals_full_head_and_gradients_reach_every_parameter():
    model = _model(seed=5)
    ids, types, mask = (paddle.to_tensor(a) for a in _batch(TINY["vocab_size"]))
    rows, cols = np.array([0, 0, 1, 2]), np.array([1, 11, 3, 5])
    with paddle.no_grad():
        full, sop_full = model(ids, types, mask)
        gathered, sop = model(ids, types, mask, masked_positions=paddle.to_tensor(rows * 12 + cols))
    assert gathered.shape == [4, TINY["vocab_size"]] and sop.shape == [3, 2]
    assert _maxdiff(gathered, full.numpy()[rows, cols]) <= 1e-5 and _maxdiff(sop, sop_full) == 0.0
    model.train()
    mlm, sop = model(ids, types, mask, masked_positions=paddle.to_tensor(rows * 12 + cols))
    (mlm.sum() + sop.sum()).backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None or float(p.grad.abs().sum()) == 0]
    assert no_grad == []


def test_sdpa_equals_plain_and_recompute_gives_the_same_gradients():
    from paddle.distributed.fleet.utils import recompute

    model = BertForPretraining(BertConfig(**{**TINY, "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}))
    ids, types, mask = (paddle.to_tensor(a) for a in _batch(TINY["vocab_size"]))
    grads = {}
    for impl, use_recompute in (("plain", False), ("sdpa", False), ("plain", True)):
        model.set_attention_impl(impl)
        model.clear_gradients()
        bert = model.bert
        x = bert.embeddings(ids, types)
        bias = bert.attention_bias(ids, mask, x.dtype)
        for layer in bert.encoder.layers:
            x = recompute(layer, x, bias) if use_recompute else layer(x, bias)
        x.sum().backward()
        grads[impl, use_recompute] = bert.encoder.layers[0].self_attn.q_proj.weight.grad.numpy().copy()
    assert _maxdiff(grads["sdpa", False], grads["plain", False]) <= 1e-6
    assert _maxdiff(grads["plain", True], grads["plain", False]) <= 1e-6


def test_save_and_from_pretrained_round_trip(tmp_path):
    model = _model(seed=6)
    model.save_pretrained(str(tmp_path))
    # model_config.json names its (non-default) architecture
    assert json.loads((tmp_path / "model_config.json").read_text()) == {"arch": "bert", **model.config.to_dict()}
    loaded = BertForPretraining.from_pretrained(str(tmp_path))
    loaded.eval()
    assert loaded.load_report.missing == []
    ids, types, mask = (paddle.to_tensor(a) for a in _batch(TINY["vocab_size"]))
    with paddle.no_grad():
        assert _maxdiff(loaded(ids, types, mask)[0], model(ids, types, mask)[0]) == 0.0


def test_bert_config_and_name_map_import_without_paddle_and_model_arch_selects_bert(tmp_path):
    from test_architecture import _run_without_paddle

    from ernie_style.config.pretrain import load_config

    p = _run_without_paddle("""
        from ernie_style.arch import get_arch
        from ernie_style.arch.spec import resolve
        spec = get_arch("bert")
        print(spec.config_class()(vocab_size=10, hidden_size=8, num_attention_heads=2).head_dim, len(resolve(spec.name_map)))
    """)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["4", str(len(NAME_MAP))]
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("".join(t + "\n" for t in ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "b"]))
    cfg = load_config(None, [f"data.vocab_file={vocab}", "model.arch=bert", "model.hidden_size=32",
                             "model.num_attention_heads=2", "model.type_vocab_size=3"])
    assert cfg.model == BertConfig(vocab_size=7, hidden_size=32, num_attention_heads=2, type_vocab_size=3)
    assert cfg.to_dict()["model"]["arch"] == "bert"


def test_config_validation_and_input_length():
    cfg = BertConfig(vocab_size=100)
    assert (cfg.hidden_size, cfg.max_position_embeddings, cfg.type_vocab_size, cfg.layer_norm_eps) == (768, 512, 2, 1e-12)
    assert BertConfig.from_dict(cfg.to_dict()) == cfg and "embedding_size" not in cfg.to_dict()
    with pytest.raises(ValueError, match=r"BertConfig.hidden_size=30: expected a multiple of num_attention_heads=4"):
        BertConfig(vocab_size=100, hidden_size=30, num_attention_heads=4)
    with pytest.raises(ValueError, match=r"BertConfig.type_vocab_size=0: expected a positive integer"):
        BertConfig(vocab_size=100, type_vocab_size=0)
    with pytest.raises(ValueError, match=r"unknown key 'max_position_embedding'; did you mean 'max_position_embeddings'"):
        BertConfig.from_dict({"vocab_size": 10, "max_position_embedding": 64})
    model = BertForPretraining(BertConfig(**{**TINY, "max_position_embeddings": 8}))
    with pytest.raises(ValueError, match="input length 12 exceeds max_position_embeddings=8"):
        model(paddle.to_tensor(_batch(TINY["vocab_size"])[0]))
