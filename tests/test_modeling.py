"""ernie_style.arch.roformer.modeling: parity with PaddleNLP's RoFormer, loading, heads, losses, config validation, kernels.

References: paddlenlp.transformers.RoFormerModel / RoFormerForMaskedLM (same weights), plain NumPy for the losses.
"""

import json

import numpy as np
import paddle
import pytest

from ernie_style.arch.roformer import ops
from ernie_style.arch.roformer.modeling import RoFormerConfig, RoFormerForPretraining
from ernie_style.arch.roformer.paddlenlp import load_state_dict_checked
from ernie_style.constants import IGNORE_INDEX
from ernie_style.tasks.pretrain import pretraining_loss, pretraining_metrics

paddle.set_device("cpu")
try:  # the PaddleNLP parity reference (test extra of setup.py); only the parity tests need it
    import paddlenlp.transformers as pnlp
except ImportError:
    pnlp = None
needs_paddlenlp = pytest.mark.skipif(pnlp is None, reason="PaddleNLP parity reference: paddlenlp does not import "
                                                          "(pip install -e '.[test]')")

TINY = dict(vocab_size=97, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)
BASE = dict(vocab_size=300)  # every other field at its RoFormer-base default (12 x 768, 12 heads, FFN 3072)
SOP_KEYS = ["cls.seq_relationship.bias", "cls.seq_relationship.weight"]


def _pnlp_config(kw):
    kw = dict(kw)
    kw.setdefault("embedding_size", kw.get("hidden_size", 768))
    return pnlp.RoFormerConfig(**kw)


def _batch(vocab, batch=3, seq=12, seed=0):
    """ids with trailing padding (pad id 0) of different lengths, token types 0 then 1, and the 1/0 mask."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, vocab, size=(batch, seq))
    types = np.zeros_like(ids)
    for row in range(batch):
        length = seq - 3 * row
        ids[row, length:] = 0
        types[row, length // 2 : length] = 1
    mask = (ids != 0).astype("int64")
    return paddle.to_tensor(ids), paddle.to_tensor(types), paddle.to_tensor(mask)


def _pair(kw, seed=0):
    """(ours, PaddleNLP RoFormerForMaskedLM) with PaddleNLP's weights loaded into ours; both in eval mode."""
    paddle.seed(seed)
    theirs = pnlp.RoFormerForMaskedLM(_pnlp_config(kw))
    ours = RoFormerForPretraining(RoFormerConfig(**kw))
    ours.set_attention_impl("plain")
    report = load_state_dict_checked(ours, theirs.state_dict(), allow_missing_heads=True)
    assert report.missing == SOP_KEYS
    theirs.eval()
    ours.eval()
    return ours, theirs


def _first(out):
    return out[0] if isinstance(out, (tuple, list)) else out


def _close(a, b, atol=1e-5):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=0, atol=atol)


# -- names, parity ---------------------------------------------------------------------------------------------------


@needs_paddlenlp
@pytest.mark.parametrize("extra", [{}, {"embedding_size": 16}])
def test_parameter_names_are_paddlenlp_roformer_names(extra):
    kw = {**TINY, **extra}
    ours = {k: list(v.shape) for k, v in RoFormerForPretraining(RoFormerConfig(**kw)).state_dict().items()}
    mlm = {k: list(v.shape) for k, v in pnlp.RoFormerForMaskedLM(_pnlp_config(kw)).state_dict().items()}
    base = {k: list(v.shape) for k, v in pnlp.RoFormerModel(_pnlp_config(kw)).state_dict().items()}
    assert set(ours) - set(mlm) == set(SOP_KEYS)
    assert set(mlm) - set(ours) == {"cls.predictions.decoder_weight"}  # PaddleNLP's duplicate of the tied weight
    assert {"roformer." + k: v for k, v in base.items()} == {k: v for k, v in ours.items() if k.startswith("roformer.")}
    assert all(ours[k] == mlm[k] for k in ours if k in mlm)
    assert ("roformer.embeddings_project.weight" in ours) == ("embedding_size" in extra)


@needs_paddlenlp
@pytest.mark.parametrize(
    "kw, seq",
    [
        (TINY, 12),
        ({**TINY, "embedding_size": 16}, 12),
        ({**TINY, "rotary_value": True}, 12),
        ({**TINY, "hidden_act": "relu"}, 40),
        (BASE, 16),
    ],
    ids=["tiny", "embedding_project", "rotary_value", "relu_seq40", "base"],
)
def test_encoder_and_mlm_logits_match_paddlenlp(kw, seq):
    ours, theirs = _pair(kw)
    ids, types, mask = _batch(kw["vocab_size"], batch=2 if kw is BASE else 3, seq=seq)
    with paddle.no_grad():
        seq_out, pooled = ours.roformer(ids, types, mask)
        ref_seq, ref_pooled = theirs.roformer(ids, token_type_ids=types, attention_mask=mask)[:2]
        _close(seq_out, ref_seq)
        _close(pooled, ref_pooled)
        mlm, _ = ours(ids, types, mask)
        ref_mlm = _first(theirs(ids, token_type_ids=types, attention_mask=mask))
        assert mlm.shape == ref_mlm.shape == [ids.shape[0], seq, kw["vocab_size"]]
        _close(mlm, ref_mlm)


@needs_paddlenlp
def test_full_length_512_matches_paddlenlp_at_base_width():
    """Hidden 768, 12 heads, FFN 3072 (6 of the 12 layers, to keep this ~12 s; 12 layers measured 3.6e-6), two rows
    of 512: one real at full length with two segments, one padded after 300 tokens with a segment in the middle.

    The one known difference is the rotary table: ours (and Hugging Face's) is p * theta_j computed in float64 and
    rounded once; PaddleNLP forms p * theta_j in float32, up to 1.8e-5 off below position 512. Its effect on the
    output stays far below 1e-5 at this weight scale (RoFormer's init), and with PaddleNLP's own table our output is
    PaddleNLP's to 1e-6, so nothing else differs.
    """
    kw = {**BASE, "num_hidden_layers": 6}
    ours, theirs = _pair(kw, seed=21)
    rng = np.random.default_rng(21)
    ids = rng.integers(5, kw["vocab_size"], size=(2, 512))
    types = np.zeros_like(ids)
    types[0, 200:] = 1
    types[1, 150:300] = 1
    ids[1, 300:] = 0
    ids, types, mask = (paddle.to_tensor(a) for a in (ids, types, (ids != 0).astype("int64")))
    with paddle.no_grad():
        seq_out, pooled = (t.numpy() for t in ours.roformer(ids, types, mask))
        ref_seq, ref_pooled = (t.numpy() for t in theirs.roformer(ids, token_type_ids=types, attention_mask=mask)[:2])
        _close(seq_out, ref_seq)
        _close(pooled, ref_pooled)

        rotary = theirs.roformer.encoder.layers[0].self_attn.rotary
        gap = np.abs(rotary.sin.numpy()[:512] - ours.roformer.rotary_sin.numpy()[:512]).max()
        assert 0 < gap < 2.5e-5, gap
        ours.roformer.rotary_sin.set_value(rotary.sin)
        ours.roformer.rotary_cos.set_value(rotary.cos)
        _close(ours.roformer(ids, types, mask)[0], ref_seq, atol=1e-6)


@needs_paddlenlp
def test_default_mask_comes_from_pad_token_like_paddlenlp():
    ours, theirs = _pair(TINY, seed=3)
    ids, types, mask = _batch(TINY["vocab_size"], seed=3)
    with paddle.no_grad():
        implicit = ours.roformer(ids, types)[0]
        _close(implicit, ours.roformer(ids, types, mask)[0], atol=0)
        _close(implicit, theirs.roformer(ids, token_type_ids=types)[0])
        # Padding really is masked: changing a padded token's id changes nothing at real positions.
        ids2 = ids.numpy().copy()
        ids2[2, -1] = 5
        out2 = ours.roformer(paddle.to_tensor(ids2), types, mask)[0]
        _close(out2[2, :6], implicit[2, :6])


@needs_paddlenlp
def test_state_dict_of_paddlenlp_base_model_loads_and_reports_fresh_heads(tmp_path):
    paddle.seed(1)
    base = pnlp.RoFormerModel(_pnlp_config(TINY))
    base.eval()
    ours = RoFormerForPretraining(RoFormerConfig(**TINY))
    ours.eval()
    with pytest.raises(ValueError, match="missing.*cls.predictions"):
        load_state_dict_checked(ours, base.state_dict())
    report = load_state_dict_checked(ours, base.state_dict(), allow_missing_heads=True)
    assert report.missing == sorted(k for k in ours.state_dict() if k.startswith("cls."))
    ids, types, mask = _batch(TINY["vocab_size"])
    with paddle.no_grad():
        _close(ours.roformer(ids, types, mask)[0], base(ids, token_type_ids=types, attention_mask=mask)[0])

    # A PaddleNLP directory (config.json + model_state.pdparams) loads through from_pretrained.
    mlm = pnlp.RoFormerForMaskedLM(_pnlp_config(TINY))
    mlm.eval()
    mlm.save_pretrained(str(tmp_path))
    assert (tmp_path / "model_state.pdparams").exists(), sorted(p.name for p in tmp_path.iterdir())
    loaded = RoFormerForPretraining.from_pretrained(str(tmp_path), allow_missing_heads=True)
    loaded.eval()
    assert loaded.load_report.missing == SOP_KEYS
    with paddle.no_grad():
        _close(loaded(ids, types, mask)[0], _first(mlm(ids, token_type_ids=types, attention_mask=mask)))


def test_load_errors_list_unexpected_and_mismatched_keys():
    model = RoFormerForPretraining(RoFormerConfig(**TINY))
    state = dict(model.state_dict())
    state["roformer.extra.weight"] = paddle.zeros([2])
    state["cls.seq_relationship.bias"] = paddle.zeros([3])
    del state["roformer.pooler.dense.bias"]
    with pytest.raises(ValueError) as err:
        load_state_dict_checked(model, state, allow_missing_heads=True)
    msg = str(err.value)
    assert "missing ['roformer.pooler.dense.bias']" in msg
    assert "unexpected ['roformer.extra.weight']" in msg
    assert "cls.seq_relationship.bias: checkpoint [3] vs model [2]" in msg


def test_save_and_from_pretrained_round_trip(tmp_path):
    paddle.seed(2)
    model = RoFormerForPretraining(RoFormerConfig(**TINY, embedding_size=16))
    model.eval()
    model.save_pretrained(str(tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model_config.json", "model_state.pdparams"]
    assert json.loads((tmp_path / "model_config.json").read_text()) == model.config.to_dict()
    loaded = RoFormerForPretraining.from_pretrained(str(tmp_path))
    loaded.eval()
    assert loaded.load_report.missing == []
    ids, types, mask = _batch(TINY["vocab_size"])
    with paddle.no_grad():
        _close(loaded(ids, types, mask)[0], model(ids, types, mask)[0], atol=0)
    with pytest.raises(FileNotFoundError, match="model_config.json"):
        RoFormerForPretraining.from_pretrained(str(tmp_path / "nowhere"))


# -- heads ------------------------------------------------------------------------------------------------------------


def test_gathered_mlm_head_equals_full_head_at_masked_positions():
    paddle.seed(4)
    model = RoFormerForPretraining(RoFormerConfig(**TINY))
    model.eval()
    ids, types, mask = _batch(TINY["vocab_size"])
    seq = ids.shape[1]
    rows, cols = np.array([0, 0, 1, 2, 2]), np.array([1, 7, 3, 0, 5])
    with paddle.no_grad():
        full, sop_full = model(ids, types, mask)
        gathered, sop = model(ids, types, mask, masked_positions=paddle.to_tensor(rows * seq + cols))
    assert gathered.shape == [5, TINY["vocab_size"]] and sop.shape == [3, 2]
    _close(gathered, full.numpy()[rows, cols])
    _close(sop, sop_full, atol=0)


@needs_paddlenlp
def test_sop_logits_are_pooler_then_classifier():
    """sop_logits = tanh(h[CLS] W_pool + b_pool) W_sop + b_sop, in NumPy from our sequence output, and from PaddleNLP's
    pooled output with our classifier weights."""
    ours, theirs = _pair(TINY, seed=14)
    rng = np.random.default_rng(14)
    clf = ours.cls.seq_relationship
    clf.bias.set_value(rng.normal(size=[2]).astype("float32"))  # zero at init; make the bias count
    ids, types, mask = _batch(TINY["vocab_size"], seed=14)
    with paddle.no_grad():
        _, sop = ours(ids, types, mask, masked_positions=paddle.to_tensor([1, 14]))
        seq_out = ours.roformer(ids, types, mask)[0].numpy()
        ref_pooled = theirs.roformer(ids, token_type_ids=types, attention_mask=mask)[1].numpy()
    dense = ours.roformer.pooler.dense  # Paddle Linear weights are [in, out]
    pooled = np.tanh(seq_out[:, 0] @ dense.weight.numpy() + dense.bias.numpy())  # (B, H)
    w, b = clf.weight.numpy(), clf.bias.numpy()  # (H, 2), (2,)
    assert sop.shape == [3, 2]
    _close(pooled, ref_pooled, atol=1e-6)
    _close(sop, pooled @ w + b, atol=1e-6)
    _close(sop, ref_pooled @ w + b, atol=1e-6)


def test_decoder_is_tied_to_word_embeddings_and_gradients_flow():
    paddle.seed(5)
    model = RoFormerForPretraining(RoFormerConfig(**TINY))
    ids, types, mask = _batch(TINY["vocab_size"])
    mlm, sop = model(ids, types, mask, masked_positions=paddle.to_tensor([1, 2, 13]))
    loss, _, _ = pretraining_loss(mlm, sop, paddle.to_tensor([4, 5, 6]), paddle.to_tensor([0, 1, IGNORE_INDEX]))
    loss.backward()
    assert "cls.predictions.decoder_weight" not in model.state_dict()
    names = {n for n, p in model.named_parameters() if p.grad is not None and float(p.grad.abs().sum()) > 0}
    expected = {n for n, _ in model.named_parameters()} - {"roformer.embeddings.token_type_embeddings.weight"}
    assert expected <= names  # every parameter (token types too when both types occur) gets a gradient
    # A word that never occurs in the input still gets a gradient, through the tied decoder only.
    word_grad = model.roformer.embeddings.word_embeddings.weight.grad.numpy()
    unused = sorted(set(range(TINY["vocab_size"])) - set(ids.numpy().ravel().tolist()))[0]
    assert np.abs(word_grad[unused]).sum() > 0


# -- losses, metrics ------------------------------------------------------------------------------------------------


def _np_ce(logits, labels):
    keep = labels != IGNORE_INDEX
    if not keep.any():
        return 0.0
    z = logits[keep].astype(np.float64)
    z = z - z.max(-1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
    return float(-logp[np.arange(keep.sum()), labels[keep]].mean())


def test_pretraining_loss_and_metrics_match_numpy():
    rng = np.random.default_rng(7)
    mlm = rng.normal(size=(9, 31)).astype("float32") * 3
    sop = rng.normal(size=(4, 2)).astype("float32")
    mlm_labels = rng.integers(0, 31, size=9)
    mlm_labels[[2, 5]] = IGNORE_INDEX
    sop_labels = np.array([0, 1, IGNORE_INDEX, 1])
    t = paddle.to_tensor
    loss, lm, so = pretraining_loss(t(mlm), t(sop), t(mlm_labels), t(sop_labels))
    ref_lm, ref_sop = _np_ce(mlm, mlm_labels), _np_ce(sop, sop_labels)
    assert abs(float(lm) - ref_lm) < 1e-5 and abs(float(so) - ref_sop) < 1e-5
    assert abs(float(loss) - ref_lm - ref_sop) < 1e-5
    m = {k: int(v) for k, v in pretraining_metrics(t(mlm), t(sop), t(mlm_labels), t(sop_labels)).items()}
    keep = mlm_labels != IGNORE_INDEX
    assert m["mlm_total"] == 7 and m["mlm_correct"] == int((mlm.argmax(-1) == mlm_labels)[keep].sum())
    keep = sop_labels != IGNORE_INDEX
    assert m["sop_total"] == 3 and m["sop_correct"] == int((sop.argmax(-1) == sop_labels)[keep].sum())


def test_all_sop_labels_ignored_gives_zero_sop_loss_and_finite_gradients():
    mlm = paddle.to_tensor(np.random.default_rng(8).normal(size=(3, 11)).astype("float32"), stop_gradient=False)
    sop = paddle.to_tensor(np.ones((2, 2), "float32"), stop_gradient=False)
    loss, lm, so = pretraining_loss(mlm, sop, paddle.to_tensor([1, 2, 3]), paddle.to_tensor([IGNORE_INDEX] * 2))
    assert float(so) == 0.0 and np.isfinite(float(loss)) and abs(float(loss) - float(lm)) < 1e-7
    loss.backward()
    assert np.isfinite(sop.grad.numpy()).all() and np.isfinite(mlm.grad.numpy()).all()
    m = pretraining_metrics(mlm, sop, paddle.to_tensor([1, 2, 3]), paddle.to_tensor([IGNORE_INDEX] * 2))
    assert int(m["sop_total"]) == 0 and int(m["sop_correct"]) == 0


# -- config ---------------------------------------------------------------------------------------------------------


def test_config_defaults_and_round_trip():
    cfg = RoFormerConfig(vocab_size=100)
    assert cfg.embedding_size == 768 and cfg.hidden_size == 768 and cfg.layer_norm_eps == 1e-12
    assert cfg.max_position_embeddings == 1536 and cfg.hidden_act == "gelu" and not cfg.rotary_value
    assert RoFormerConfig.from_dict(cfg.to_dict()) == cfg
    assert json.loads(json.dumps(cfg.to_dict())) == cfg.to_dict()


@pytest.mark.parametrize(
    "kw, pattern",
    [
        (dict(hidden_size=30, num_attention_heads=4), r"hidden_size=30.*multiple of num_attention_heads=4"),
        (dict(hidden_size=36, num_attention_heads=4), r"head size .* = 9 is odd"),
        (dict(num_hidden_layers=0), r"num_hidden_layers=0: expected a positive integer"),
        (dict(intermediate_size=-1), r"intermediate_size=-1"),
        (dict(embedding_size=0), r"embedding_size=0"),
        (dict(hidden_dropout_prob=1.0), r"hidden_dropout_prob=1.0: expected a probability in \[0, 1\)"),
        (dict(attention_probs_dropout_prob=-0.1), r"attention_probs_dropout_prob=-0.1"),
        (dict(hidden_act="swish"), r"hidden_act='swish': expected one of"),
        (dict(layer_norm_eps=0), r"layer_norm_eps=0"),
        (dict(pad_token_id=100), r"pad_token_id=100: expected an integer in \[0, vocab_size=100\)"),
        (dict(rotary_value="yes"), r"rotary_value='yes'"),
        (dict(vocab_size=0), r"vocab_size=0"),
    ],
)
def test_config_validation_names_field_value_and_expectation(kw, pattern):
    with pytest.raises(ValueError, match=pattern):
        RoFormerConfig(**{"vocab_size": 100, **kw})


def test_config_from_dict_unknown_key_suggests_closest():
    with pytest.raises(ValueError, match=r"unknown key 'hiden_size'; did you mean 'hidden_size'\?"):
        RoFormerConfig.from_dict({"vocab_size": 10, "hiden_size": 32})
    with pytest.raises(ValueError, match="missing required key 'vocab_size'"):
        RoFormerConfig.from_dict({"hidden_size": 32})


def test_input_longer_than_max_positions_is_a_clear_error():
    model = RoFormerForPretraining(RoFormerConfig(**TINY, max_position_embeddings=8))
    with pytest.raises(ValueError, match="input length 12 exceeds max_position_embeddings=8"):
        model(_batch(TINY["vocab_size"])[0])


# -- kernels --------------------------------------------------------------------------------------------------------


def test_rotary_table_matches_float64_formula_and_plain_rotary_matches_numpy():
    sin, cos = ops.rotary_table(8, 600)
    angle = 599 * 10000.0 ** (-np.arange(0, 8, 2) / 8)
    _close(sin[599], np.sin(angle), atol=1e-7)
    x = np.random.default_rng(9).normal(size=(2, 5, 3, 8)).astype("float32")
    out = ops.apply_rotary(paddle.to_tensor(x), paddle.to_tensor(sin[:5]), paddle.to_tensor(cos[:5])).numpy()
    s, c = sin[:5][None, :, None, :], cos[:5][None, :, None, :]
    ref = np.empty_like(x)
    ref[..., 0::2] = x[..., 0::2] * c - x[..., 1::2] * s
    ref[..., 1::2] = x[..., 0::2] * s + x[..., 1::2] * c
    _close(out, ref, atol=1e-6)


def test_sdpa_kernels_equal_plain_on_cpu_forward_and_backward():
    paddle.seed(10)
    model = RoFormerForPretraining(RoFormerConfig(**TINY, rotary_value=True, attention_probs_dropout_prob=0.0,
                                                  hidden_dropout_prob=0.0))  # fmt: skip
    ids, types, mask = _batch(TINY["vocab_size"])
    results = {}
    for impl in ("plain", "sdpa"):
        model.set_attention_impl(impl)
        model.clear_gradients()
        mlm, sop = model(ids, types, mask, masked_positions=paddle.to_tensor([1, 14, 30]))
        loss = pretraining_loss(mlm, sop, paddle.to_tensor([3, 4, 5]), paddle.to_tensor([0, 1, 0]))[0]
        loss.backward()
        grad = model.roformer.encoder.layers[0].self_attn.q_proj.weight.grad.numpy().copy()
        results[impl] = (mlm.numpy(), float(loss), grad)
    _close(results["sdpa"][0], results["plain"][0])
    assert abs(results["sdpa"][1] - results["plain"][1]) < 1e-5
    _close(results["sdpa"][2], results["plain"][2], atol=1e-6)


def test_kernel_selection_switch_and_env(monkeypatch):
    model = RoFormerForPretraining(RoFormerConfig(**TINY))
    assert all(layer.self_attn.kernel_set == "auto" for layer in model.roformer.encoder.layers)
    assert ops.resolve("auto", paddle.zeros([1])) == ("plain", False, False)  # CPU fp32 -> plain
    with pytest.raises(ValueError, match="unknown kernel set 'fast'"):
        model.set_attention_impl("fast")
    monkeypatch.setenv(ops.ENV_VAR, "sdpa")
    model = RoFormerForPretraining(RoFormerConfig(**TINY))
    assert model.roformer.encoder.layers[1].self_attn.kernel_set == "sdpa"
    monkeypatch.setenv(ops.ENV_VAR, "bogus")
    with pytest.raises(ValueError, match=r"\$ERNIE_STYLE_KERNELS: unknown kernel set 'bogus'"):
        RoFormerForPretraining(RoFormerConfig(**TINY))


_NO_GPU = not paddle.is_compiled_with_cuda() or paddle.device.cuda.device_count() == 0


@pytest.mark.skipif(_NO_GPU, reason="flash attention, fused rotary and fused bias+GELU kernels need a CUDA GPU")
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_gpu_fast_kernels_equal_plain_path(dtype):
    paddle.set_device("gpu")
    try:
        paddle.seed(11)
        model = RoFormerForPretraining(RoFormerConfig(**{**TINY, "hidden_size": 128, "num_attention_heads": 2},
                                                      rotary_value=True))  # fmt: skip
        model.eval()
        model.to(dtype=dtype)
        ids, types, mask = _batch(TINY["vocab_size"], seq=64)
        x = paddle.randn([2, 64, 2, 64]).astype(dtype)
        sin, cos = (paddle.to_tensor(t) for t in ops.rotary_table(64, 64))
        fused = ops.apply_rotary_fused(x, x, None, sin, cos)[0]
        _close(fused.astype("float32"), ops.apply_rotary(x, sin, cos).astype("float32"), atol=2e-2)
        outs = {}
        with paddle.no_grad():
            for impl in ("plain", "flash", "auto"):
                model.set_attention_impl(impl)
                outs[impl] = model(ids, types, mask)[0].astype("float32").numpy()
        _close(outs["flash"], outs["plain"], atol=5e-2)
        _close(outs["auto"], outs["plain"], atol=5e-2)
    finally:
        paddle.set_device("cpu")


def test_encoder_layers_work_under_fleet_recompute():
    """The trainer wraps each layer in fleet's recompute; its gradients must equal the plain ones."""
    from paddle.distributed.fleet.utils import recompute

    paddle.seed(12)
    model = RoFormerForPretraining(RoFormerConfig(**TINY, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0))
    ids, types, mask = _batch(TINY["vocab_size"])
    roformer = model.roformer
    grads = []
    for use_recompute in (False, True):
        model.clear_gradients()
        x = roformer.embeddings(ids, types)
        bias = roformer.attention_bias(ids, mask, x.dtype)
        sin, cos = roformer.rotary_sin[: ids.shape[1]], roformer.rotary_cos[: ids.shape[1]]
        for layer in roformer.encoder.layers:
            x = recompute(layer, x, bias, sin, cos) if use_recompute else layer(x, bias, sin, cos)
        x.sum().backward()
        grads.append(roformer.encoder.layers[0].linear1.weight.grad.numpy().copy())
    _close(grads[1], grads[0], atol=1e-6)
