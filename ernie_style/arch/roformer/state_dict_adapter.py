"""RoFormer's parameter names, shapes and Hugging Face config: ours (PaddleNLP's) <-> ``RoFormerFor*``.  Paddle-free.

Rows ``(ours, hugging face, transpose, file)``; ``{i}`` stands for a layer index.  Paddle ``Linear.weight`` is
``[in, out]``, torch's ``[out, in]``: rows marked True are transposed.  ``file``: ``main`` = model.safetensors,
``side`` = pretraining_heads.safetensors (pooler + SOP head, which RoFormerForMaskedLM has no place for).  The
converters that apply it live in ``ernie_style/arch/state_dict_adapter.py``.

Also here, named by the :class:`~ernie_style.arch.spec.ArchSpec`: :func:`expected_shapes` (what a checkpoint
holds), the config.json mapping both ways (:func:`config_from_hf`, :func:`config_to_hf`) and :data:`DERIVED`, the
rotary table transformers stores but computes (written on export, checked and dropped on import).
"""
import math

import numpy as np

from ernie_style.arch.common import hf_config
from ernie_style.arch.common.shapes import encoder_layer_shapes
from ernie_style.storage.errors import ModelDirError
from ernie_style.storage.safetensors_io import round_to

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
    # fine-tuned task heads (TASK_HEADS)
    ("classifier.dense.weight", "classifier.dense.weight", True, "main"),
    ("classifier.dense.bias", "classifier.dense.bias", False, "main"),
    ("classifier.out_proj.weight", "classifier.out_proj.weight", True, "main"),
    ("classifier.out_proj.bias", "classifier.out_proj.bias", False, "main"),
    ("classifier.weight", "classifier.weight", True, "main"),
    ("classifier.bias", "classifier.bias", False, "main"),
    ("qa_outputs.weight", "qa_outputs.weight", True, "main"),
    ("qa_outputs.bias", "qa_outputs.bias", False, "main"),
]


def expected_shapes(config: dict) -> dict:
    """``{our name: shape}`` of the encoder (without its pooler) and the MLM head for a ``model_config`` dict; the
    pooler, SOP and task heads are added by ``ernie_style.arch.state_dict_adapter.expected_ours``."""
    V, E, H = config["vocab_size"], config["embedding_size"], config["hidden_size"]
    T = config["type_vocab_size"]
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
    shapes.update(encoder_layer_shapes("roformer", config))
    return shapes


# ---------------------------------------------------------------------------------------------- config.json

# Defaults of transformers' RoFormerConfig for fields an older config.json may omit.
HF_DEFAULTS = {
    "hidden_act": "gelu", "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1,
    "max_position_embeddings": 1536, "type_vocab_size": 2, "initializer_range": 0.02, "layer_norm_eps": 1e-12,
    "pad_token_id": 0, "rotary_value": False,
}


def config_from_hf(raw: dict, path: str, fields) -> dict:
    """Our model_config fields (``fields``: their names) from a transformers RoFormer config.json dict
    (transformers' defaults for absent ones); ModelDirError naming ``path``."""
    cfg = hf_config.config_from_hf(raw, path, fields, HF_DEFAULTS)
    cfg.setdefault("embedding_size", raw.get("hidden_size"))
    return cfg


def config_to_hf(config: dict, path: str) -> dict:
    """transformers' RoFormerConfig keys for our ``config`` dict (ModelDirError naming ``path``)."""
    return hf_config.config_to_hf(config, path)


# ---------------------------------------------------------------------------------------------- derived tensors

ROTARY_KEY = "roformer.encoder.embed_positions.weight"


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


def split_sinusoidal_table(table: np.ndarray) -> tuple:
    """(sin, cos), each [n_pos, dim / 2], of a table in :func:`sinusoidal_table`'s layout (``dim`` even): the
    form our Paddle model holds (``RoFormerModel.rotary_sin`` / ``rotary_cos``)."""
    assert table.ndim == 2 and table.shape[1] % 2 == 0, table.shape
    half = table.shape[1] // 2
    return table[:, :half], table[:, half:]


class RotaryDerived:
    """The Hugging Face tensor RoFormer computes rather than trains: the sinusoidal ``embed_positions`` table.

    ``names``: the HF names it owns (an import drops them).  ``hf_tensors(config)``: what an export writes
    (transformers loads it, so nothing is reported missing).  ``from_hf(tensors, where)``: (source tables for a
    verification, or None; notes) after checking a source's table is the standard one.  ``tables(config, dtype)``:
    the (sin, cos) a model holding ``dtype`` weights uses ("float64": exact).  ``install(encoder, tables)``:
    put float64 tables into a (float64) Paddle encoder for a verification."""

    names = (ROTARY_KEY,)

    def hf_tensors(self, config: dict) -> dict:
        return {ROTARY_KEY: sinusoidal_table(config["max_position_embeddings"],
                                             config["hidden_size"] // config["num_attention_heads"])}

    def from_hf(self, tensors: dict, where: str) -> tuple:
        table = tensors.get(ROTARY_KEY)
        if table is None:
            return None, []
        notes = []
        want = sinusoidal_table(*table.shape)
        off = float(np.max(np.abs(table - want))) if table.shape == want.shape else math.inf
        if off > 1e-2:
            raise ModelDirError(f"{where}: {ROTARY_KEY} is not the standard sinusoidal table; our model computes it")
        if off > 0:  # e.g. a float16 save: transformers uses the rounded table, our model the exact float32 one
            notes.append(f"the source's {ROTARY_KEY} differs from the float32 sinusoidal table by up to {off:.1e} "
                         "(stored in 16 bits?); the imported model computes the float32 table")
        return split_sinusoidal_table(np.asarray(table, np.float64)), notes

    def tables(self, config: dict, dtype: str = "float32"):
        from ernie_style.arch.roformer import ops  # Paddle: export runs without it; only verification calls this

        head_dim = config["hidden_size"] // config["num_attention_heads"]
        if dtype == "float64":
            return ops.rotary_table(head_dim, config["max_position_embeddings"], dtype=np.float64)
        sin, cos = ops.rotary_table(head_dim, config["max_position_embeddings"])
        return (sin, cos) if dtype == "float32" else (round_to(sin, dtype), round_to(cos, dtype))

    def install(self, encoder, tables) -> None:
        import paddle

        sin, cos = (paddle.to_tensor(np.asarray(t, dtype=np.float64)) for t in tables)
        assert sin.shape == encoder.rotary_sin.shape and cos.shape == encoder.rotary_cos.shape
        encoder.rotary_sin, encoder.rotary_cos = sin, cos


DERIVED = RotaryDerived()
