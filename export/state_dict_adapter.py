"""The one name map between our (PaddleNLP-named) RoFormer and Hugging Face ``RoFormerForMaskedLM``.

Both directions are driven by ``NAME_MAP``; nothing else in the package knows a parameter name.
Paddle ``Linear.weight`` is ``[in, out]``, torch ``nn.Linear.weight`` is ``[out, in]``: every
row marked ``T`` is transposed. Embeddings, LayerNorms and biases are copied as they are.

Where each tensor goes in the Hugging Face directory:
  ``main``  model.safetensors, loaded by RoFormerForMaskedLM;
  ``side``  pretraining_heads.safetensors (pooler + SOP head; RoFormerForMaskedLM has no place
            for them, torch layout and BERT-style names so BertForPreTraining-like code can use them).
Derived tensors, not in our checkpoint:
  ``roformer.encoder.embed_positions.weight`` [max_pos, head_dim], the sinusoidal table
  transformers computes at init (:func:`sinusoidal_table`); written so loading reports nothing
  missing. ``cls.predictions.decoder.{weight,bias}`` are tied in transformers to
  word_embeddings / ``cls.predictions.bias`` and are NOT written (as ``save_pretrained`` does;
  transformers 5.x declares exactly these two as tied targets).
"""
import re

import numpy as np

from export.errors import ExportError

L = "{i}"  # layer index placeholder

# (ours, hugging face, transpose, file)
NAME_MAP = [
    ("roformer.embeddings.word_embeddings.weight", "roformer.embeddings.word_embeddings.weight", False, "main"),
    ("roformer.embeddings.token_type_embeddings.weight", "roformer.embeddings.token_type_embeddings.weight", False, "main"),
    ("roformer.embeddings.layer_norm.weight", "roformer.embeddings.LayerNorm.weight", False, "main"),
    ("roformer.embeddings.layer_norm.bias", "roformer.embeddings.LayerNorm.bias", False, "main"),
    ("roformer.embeddings_project.weight", "roformer.embeddings_project.weight", True, "main"),  # only if E != H
    ("roformer.embeddings_project.bias", "roformer.embeddings_project.bias", False, "main"),
    (f"roformer.encoder.layers.{L}.self_attn.q_proj.weight", f"roformer.encoder.layer.{L}.attention.self.query.weight", True, "main"),
    (f"roformer.encoder.layers.{L}.self_attn.q_proj.bias", f"roformer.encoder.layer.{L}.attention.self.query.bias", False, "main"),
    (f"roformer.encoder.layers.{L}.self_attn.k_proj.weight", f"roformer.encoder.layer.{L}.attention.self.key.weight", True, "main"),
    (f"roformer.encoder.layers.{L}.self_attn.k_proj.bias", f"roformer.encoder.layer.{L}.attention.self.key.bias", False, "main"),
    (f"roformer.encoder.layers.{L}.self_attn.v_proj.weight", f"roformer.encoder.layer.{L}.attention.self.value.weight", True, "main"),
    (f"roformer.encoder.layers.{L}.self_attn.v_proj.bias", f"roformer.encoder.layer.{L}.attention.self.value.bias", False, "main"),
    (f"roformer.encoder.layers.{L}.self_attn.out_proj.weight", f"roformer.encoder.layer.{L}.attention.output.dense.weight", True, "main"),
    (f"roformer.encoder.layers.{L}.self_attn.out_proj.bias", f"roformer.encoder.layer.{L}.attention.output.dense.bias", False, "main"),
    (f"roformer.encoder.layers.{L}.norm1.weight", f"roformer.encoder.layer.{L}.attention.output.LayerNorm.weight", False, "main"),
    (f"roformer.encoder.layers.{L}.norm1.bias", f"roformer.encoder.layer.{L}.attention.output.LayerNorm.bias", False, "main"),
    (f"roformer.encoder.layers.{L}.linear1.weight", f"roformer.encoder.layer.{L}.intermediate.dense.weight", True, "main"),
    (f"roformer.encoder.layers.{L}.linear1.bias", f"roformer.encoder.layer.{L}.intermediate.dense.bias", False, "main"),
    (f"roformer.encoder.layers.{L}.linear2.weight", f"roformer.encoder.layer.{L}.output.dense.weight", True, "main"),
    (f"roformer.encoder.layers.{L}.linear2.bias", f"roformer.encoder.layer.{L}.output.dense.bias", False, "main"),
    (f"roformer.encoder.layers.{L}.norm2.weight", f"roformer.encoder.layer.{L}.output.LayerNorm.weight", False, "main"),
    (f"roformer.encoder.layers.{L}.norm2.bias", f"roformer.encoder.layer.{L}.output.LayerNorm.bias", False, "main"),
    ("cls.predictions.transform.weight", "cls.predictions.transform.dense.weight", True, "main"),
    ("cls.predictions.transform.bias", "cls.predictions.transform.dense.bias", False, "main"),
    ("cls.predictions.layer_norm.weight", "cls.predictions.transform.LayerNorm.weight", False, "main"),
    ("cls.predictions.layer_norm.bias", "cls.predictions.transform.LayerNorm.bias", False, "main"),
    ("cls.predictions.decoder_bias", "cls.predictions.bias", False, "main"),
    ("roformer.pooler.dense.weight", "roformer.pooler.dense.weight", True, "side"),
    ("roformer.pooler.dense.bias", "roformer.pooler.dense.bias", False, "side"),
    ("cls.seq_relationship.weight", "cls.seq_relationship.weight", True, "side"),
    ("cls.seq_relationship.bias", "cls.seq_relationship.bias", False, "side"),
]

SIDE_FILE = "pretraining_heads.safetensors"
ROTARY_KEY = "roformer.encoder.embed_positions.weight"
# transformers ties these to word_embeddings / cls.predictions.bias (5.x: {target: source}).
HF_TIED = {
    "cls.predictions.decoder.weight": "roformer.embeddings.word_embeddings.weight",
    "cls.predictions.decoder.bias": "cls.predictions.bias",
}
# PaddleNLP's RoFormerForMaskedLM stores the tied decoder weight under its own name.
PADDLENLP_DECODER_WEIGHT = "cls.predictions.decoder_weight"


def _rule(src_pattern):
    return re.compile("^" + re.escape(src_pattern).replace(re.escape(L), r"(\d+)") + "$")


_OURS_RULES = [(_rule(o), h, t, f) for o, h, t, f in NAME_MAP]
_HF_RULES = [(_rule(h), o, t, f) for o, h, t, f in NAME_MAP]


def _lookup(rules, name):
    for rx, dst, transpose, where in rules:
        m = rx.match(name)
        if m:
            return (dst.replace(L, m.group(1)) if m.groups() else dst), transpose, where
    return None


def expected_ours(config: dict, with_heads=True) -> dict:
    """``{our name: shape}`` of every parameter a checkpoint with ``config`` must hold."""
    V, E, H = config["vocab_size"], config["embedding_size"], config["hidden_size"]
    F, T = config["intermediate_size"], config["type_vocab_size"]
    shapes = {
        "roformer.embeddings.word_embeddings.weight": (V, E),
        "roformer.embeddings.token_type_embeddings.weight": (T, E),
        "roformer.embeddings.layer_norm.weight": (E,),
        "roformer.embeddings.layer_norm.bias": (E,),
        "cls.predictions.transform.weight": (H, E),
        "cls.predictions.transform.bias": (E,),
        "cls.predictions.layer_norm.weight": (E,),
        "cls.predictions.layer_norm.bias": (E,),
        "cls.predictions.decoder_bias": (V,),
    }
    if E != H:
        shapes["roformer.embeddings_project.weight"] = (E, H)
        shapes["roformer.embeddings_project.bias"] = (H,)
    for i in range(config["num_hidden_layers"]):
        p = f"roformer.encoder.layers.{i}."
        for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
            shapes[p + f"self_attn.{proj}.weight"] = (H, H)
            shapes[p + f"self_attn.{proj}.bias"] = (H,)
        shapes[p + "linear1.weight"], shapes[p + "linear1.bias"] = (H, F), (F,)
        shapes[p + "linear2.weight"], shapes[p + "linear2.bias"] = (F, H), (H,)
        for n in ("norm1", "norm2"):
            shapes[p + f"{n}.weight"], shapes[p + f"{n}.bias"] = (H,), (H,)
    if with_heads:
        shapes["roformer.pooler.dense.weight"], shapes["roformer.pooler.dense.bias"] = (H, H), (H,)
        shapes["cls.seq_relationship.weight"], shapes["cls.seq_relationship.bias"] = (H, 2), (2,)
    return shapes


def check_ours(state: dict, config: dict, where: str) -> None:
    """Raise ExportError naming ``where`` unless ``state`` holds exactly the expected names and shapes."""
    expected = expected_ours(config)
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing:
        raise ExportError(f"{where}: missing {len(missing)} parameter(s) for this model_config, e.g. {missing[:3]}")
    if unexpected:
        raise ExportError(f"{where}: {len(unexpected)} unexpected parameter(s), e.g. {unexpected[:3]}")
    for name, shape in expected.items():
        if tuple(state[name].shape) != shape:
            raise ExportError(f"{where}: {name} has shape {list(state[name].shape)}, model_config expects {list(shape)}")


def ours_to_hf(state: dict) -> tuple:
    """Our state dict -> (main ``{hf name: array}``, side ``{hf name: array}``), torch layout.

    Transposed weights are views; writers copy them one at a time.
    """
    main, side = {}, {}
    for name, a in state.items():
        hit = _lookup(_OURS_RULES, name)
        assert hit is not None, f"no HF name for {name}"
        dst, transpose, where = hit
        (main if where == "main" else side)[dst] = a.T if transpose else a
    return main, side


def hf_to_ours(tensors: dict, where: str) -> tuple:
    """HF ``{name: array}`` (main and side merged) -> (our state dict, names skipped as derived/tied)."""
    ours, skipped = {}, []
    for name, a in tensors.items():
        if name == ROTARY_KEY or name in HF_TIED:
            skipped.append(name)
            continue
        hit = _lookup(_HF_RULES, name)
        if hit is None:
            raise ExportError(f"{where}: tensor {name!r} has no place in a RoFormer pretraining model")
        dst, transpose, _ = hit
        ours[dst] = a.T if transpose else a
    return ours, skipped


def sinusoidal_table(n_pos: int, dim: int) -> np.ndarray:
    """The table transformers' RoFormerSinusoidalPositionalEmbedding builds: [n_pos, dim] float32.

    Angles pos / 10000^(2*(j//2)/dim) in float64; sin of the even columns in the first half,
    cos of the odd columns in the second half; then cast to float32.
    """
    pos = np.arange(n_pos, dtype=np.float64)[:, None]
    j = np.arange(dim)
    angle = pos / np.power(10000, 2 * (j // 2) / dim)[None, :]
    half = dim // 2 if dim % 2 == 0 else dim // 2 + 1
    out = np.empty((n_pos, dim), dtype=np.float32)
    out[:, :half] = np.sin(angle[:, 0::2]).astype(np.float32)
    out[:, half:] = np.cos(angle[:, 1::2]).astype(np.float32)
    return out
