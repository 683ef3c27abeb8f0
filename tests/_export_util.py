"""Tiny RoFormer checkpoints for the export tests, written the way our trainer writes them.

States are our RoFormerForPretraining's (PaddleNLP parameter names, decoder tied to the word
embeddings and not stored). PaddleNLP's RoFormerForMaskedLM serves as an independent reference.
Also what the --verify tests share: the printed line parsed, and a deliberately wrong name map.
"""
import json
import os
import re

import numpy as np

CHARS = list("的一是不了人我在有他这中大来上国个到说们为子和你地出道也时年得就那要下以生会自着去之过家学对可她里后小么心多天而能好都然没日于起还发成事只作当想看文无开手十用主行方又如前所本见经头面公同三已老从动两长知民样现分将外但身些与高意进把法此实回二理美点月明其种声全工己话儿者向情部正名定女问力机给等几很业最间新什打便位因重被走电四第门相次东政海口使教西再平真听世气信北少关并内加化由却代军产入先山五太水万市眼体别处总才场师书比住员九笑性通目华报立马命张活难神数件安表原车白应路期叫死常提感金何更反合放做系计或司利受光王果亲界及今京务制解各任至清物台象记边共风战干接它许八特觉望直服毛林题建南度统色字请交爱让认算论百吃义科怎元社术结六功指思非流每青管夫连远资队跟带花快条院变联言权往展该领传近留红治决周保达办运武半候七必城父强步完革深区即求品士转量空甚众技轻程告江语英基派满式李息写呢识极令黄德收脸钱党倒未持取设始版双历越史商千片容研像找友孩站广改议形委早房音火际则首单据导影失拿网香似斯专石若兵弟谁校读志飞观争究包组造落视济喜离虽坐集编宝谈府拉黑且随格尽剑讲布杀微怕母调局根曾准团段终乐切级克精哪官示冷域读")
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
VOCAB = SPECIAL + sorted(set(CHARS)) + list("abcdefghijklmnopqrstuvwxyz0123456789,.!?") + ["##s", "##ing", "the", "pad"]


def tiny_config(**overrides) -> dict:
    cfg = dict(
        vocab_size=len(VOCAB), embedding_size=32, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=64, hidden_act="gelu", hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1,
        max_position_embeddings=64, type_vocab_size=2, initializer_range=0.02, layer_norm_eps=1e-12,
        pad_token_id=0, rotary_value=False,
    )
    cfg.update(overrides)
    return cfg


def tiny_bert_config(**overrides) -> dict:
    """``tiny_config``'s sizes for ``model.arch: bert`` (no factorised embeddings, no rotary keys); the
    model_config.json form, with its ``arch``."""
    cfg = {k: v for k, v in tiny_config(**overrides).items() if k not in ("embedding_size", "rotary_value")}
    return {"arch": "bert", **cfg}


def random_state(config: dict, seed: int = 0) -> dict:
    """Our state dict with O(0.1) random values everywhere (LayerNorm weights around 1), float32, for the
    architecture ``config`` names (its ``arch``; absent: the default).

    Non-trivial LayerNorms and biases make a swapped or untransposed tensor visible in logits.
    """
    from ernie_style.arch import split_model_config
    from ernie_style.arch.state_dict_adapter import expected_ours

    spec, fields = split_model_config(config)
    rng = np.random.default_rng(seed)
    state = {}
    for name, shape in expected_ours(fields, spec=spec).items():
        a = rng.normal(0.0, 0.1, size=shape)
        if ("norm" in name) and name.endswith(".weight"):
            a += 1.0
        state[name] = a.astype(np.float32)
    return state


def paddlenlp_model(config: dict, state: dict, dtype: str = "float32"):
    """PaddleNLP's RoFormerForMaskedLM (eval mode) holding ``state`` (our names): an independent reference.

    Built in ``dtype`` (the default dtype while it is built: PaddleNLP computes its rotary table in it)."""
    import paddle
    from paddlenlp.transformers import RoFormerConfig, RoFormerForMaskedLM

    before = paddle.get_default_dtype()
    paddle.set_default_dtype(dtype)
    try:
        model = RoFormerForMaskedLM(RoFormerConfig(**config))
    finally:
        paddle.set_default_dtype(before)
    params = {k: v.astype(dtype) for k, v in state.items() if not k.startswith("cls.seq_relationship")}
    params["cls.predictions.decoder_weight"] = params["roformer.embeddings.word_embeddings.weight"]
    missing, unexpected = model.set_state_dict(params)
    assert not missing and not unexpected, (missing, unexpected)
    model.eval()
    return model


def train_steps(config: dict, state: dict, steps: int = 3, seed: int = 0):
    """Our RoFormerForPretraining after ``steps`` AdamW steps of MLM + SOP loss on random batches."""
    import paddle
    import paddle.nn.functional as F

    from export.verify import paddle_model

    paddle.seed(seed)
    rng = np.random.default_rng(seed)
    model = paddle_model(config, state)
    model.train()
    opt = paddle.optimizer.AdamW(learning_rate=1e-2, parameters=model.parameters(), weight_decay=0.01)
    B, T, V = 4, 16, config["vocab_size"]
    for _ in range(steps):
        ids = paddle.to_tensor(rng.integers(5, V, size=(B, T)))
        labels = paddle.to_tensor(rng.integers(5, V, size=(B * T, 1)))
        sop_labels = paddle.to_tensor(rng.integers(0, 2, size=(B, 1)))
        mlm_logits, sop_logits = model(ids)
        loss = F.cross_entropy(mlm_logits.reshape([-1, V]), labels).mean() + F.cross_entropy(sop_logits, sop_labels).mean()
        loss.backward()
        opt.step()
        opt.clear_grad()
    model.eval()
    return model


def write_checkpoint(path, config: dict, state: dict, do_lower_case=True, checksums=False, vocab=None) -> str:
    """Write our checkpoint dir format (numpy + pickle, no paddle needed)."""
    from ernie_style.storage.model_dir import sha256_file
    from ernie_style.storage.pdparams import save_pdparams

    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "model_config.json"), "w") as f:
        json.dump(config, f, indent=2)
    save_pdparams(os.path.join(path, "model_state.pdparams"), state)
    vocab = VOCAB if vocab is None else vocab
    assert len(vocab) == config["vocab_size"]
    with open(os.path.join(path, "vocab.txt"), "w", encoding="utf-8") as f:
        f.write("".join(t + "\n" for t in vocab))
    with open(os.path.join(path, "tokenizer_config.json"), "w") as f:
        json.dump({"do_lower_case": do_lower_case}, f)
    if checksums:
        names = ["model_config.json", "model_state.pdparams", "vocab.txt", "tokenizer_config.json"]
        with open(os.path.join(path, "checksums.json"), "w") as f:
            json.dump({n: sha256_file(os.path.join(path, n)) for n in names}, f)
    return str(path)


# ---------------------------------------------------------------------------------------------- --verify


def verify_line(out, what):
    """(difference, tolerance) printed by --verify for ``what`` (e.g. "logits(paddle) - logits(transformers)")."""
    lines = [ln for ln in out.splitlines() if ln.startswith(f"verify: max |{what}| = ")]
    assert len(lines) == 1, out
    m = re.search(r"= (\S+) over \d+ (rows|positions), in float64 \(tolerance (\S+) = ", lines[0])
    assert m, lines[0]
    return float(m.group(1)), float(m.group(3))


# A wrong name map: the same tensors, one moved to another layer or left untransposed (shapes still fit, so
# nothing but the numbers can tell). --verify must refuse it by orders of magnitude, on any CPU.
SWAP_LAYERS = [  # layer 0's FFN input weight written as layer 1's and the other way round
    ("roformer.encoder.layers.0.linear1.weight", "roformer.encoder.layer.1.intermediate.dense.weight", True, "main"),
    ("roformer.encoder.layers.1.linear1.weight", "roformer.encoder.layer.0.intermediate.dense.weight", True, "main"),
]
NOT_TRANSPOSED = [  # [H, H]: fits either way round
    ("roformer.encoder.layers.1.self_attn.q_proj.weight", "roformer.encoder.layer.1.attention.self.query.weight",
     False, "main"),
]


def wrong_name_map(monkeypatch, rows):
    """Put ``rows`` (ours, hf, transpose, file) ahead of the name map's own rules, both directions."""
    from ernie_style.arch import state_dict_adapter as A

    real = A._rules  # (ours -> hf rules, hf -> ours rules) of an architecture's name map
    monkeypatch.setattr(A, "_rules", lambda ref: ([(A._rule(o), h, t, f) for o, h, t, f in rows] + real(ref)[0],
                                                  [(A._rule(h), o, t, f) for o, h, t, f in rows] + real(ref)[1]))


def assert_refused(rc, captured, out_dir, what):
    """--verify refused: exit 2, one error line naming the output, the difference printed far above tolerance."""
    assert rc == 2, captured.err
    diff, tol = verify_line(captured.out, what)
    assert diff > 1e-2 and diff > 1e3 * tol, (diff, tol)
    err = captured.err.strip()
    assert err.startswith("error: ") and "verification failed: logits differ by" in err, err
    assert "(a wrong name, layer or transpose in the name map?); nothing was written" in err
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert not os.path.exists(out_dir)
    assert not [n for n in os.listdir(os.path.dirname(out_dir)) if n.startswith(".")]  # no temp dir left
