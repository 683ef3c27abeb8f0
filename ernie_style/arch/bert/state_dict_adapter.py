"""BERT's parameter names: ours (PaddleNLP's) -> Hugging Face ``BertFor*``.  Paddle-free.

Rows ``(ours, hugging face, transpose, file)`` in the layout of ``ernie_style/arch/roformer/state_dict_adapter.py``;
``{i}`` stands for a layer index.  Paddle ``Linear.weight`` is ``[in, out]``, torch's ``[out, in]``: rows marked
True are transposed.  ``file``: ``main`` = model.safetensors (what ``BertForMaskedLM`` loads), ``side`` = the pooler
and the SOP/NSP head, which ``BertForMaskedLM`` has no place for (``BertForPreTraining`` holds them under the
same names: ``bert.pooler.dense``, ``cls.seq_relationship``).

Hugging Face names with no row here: ``cls.predictions.decoder.weight`` and ``cls.predictions.decoder.bias`` are
tied to the word embeddings and to ``cls.predictions.bias`` (``HF_TIED``); ``bert.embeddings.position_ids`` is a
buffer older transformers versions saved (``HF_DERIVED``, arange(max_position_embeddings)).
"""

import numpy as np

from ernie_style.arch.common import hf_config
from ernie_style.arch.common.shapes import encoder_layer_shapes
from ernie_style.storage.errors import ModelDirError

L = "{i}"  # layer index placeholder

# (ours, hugging face, transpose, file)
NAME_MAP = [
    ("bert.embeddings.word_embeddings.weight", "bert.embeddings.word_embeddings.weight", False, "main"),
    ("bert.embeddings.position_embeddings.weight", "bert.embeddings.position_embeddings.weight", False, "main"),
    ("bert.embeddings.token_type_embeddings.weight", "bert.embeddings.token_type_embeddings.weight", False, "main"),
    ("bert.embeddings.layer_norm.weight", "bert.embeddings.LayerNorm.weight", False, "main"),
    ("bert.embeddings.layer_norm.bias", "bert.embeddings.LayerNorm.bias", False, "main"),
    (f"bert.encoder.layers.{L}.self_attn.q_proj.weight", f"bert.encoder.layer.{L}.attention.self.query.weight", True, "main"),
    (f"bert.encoder.layers.{L}.self_attn.q_proj.bias", f"bert.encoder.layer.{L}.attention.self.query.bias", False, "main"),
    (f"bert.encoder.layers.{L}.self_attn.k_proj.weight", f"bert.encoder.layer.{L}.attention.self.key.weight", True, "main"),
    (f"bert.encoder.layers.{L}.self_attn.k_proj.bias", f"bert.encoder.layer.{L}.attention.self.key.bias", False, "main"),
    (f"bert.encoder.layers.{L}.self_attn.v_proj.weight", f"bert.encoder.layer.{L}.attention.self.value.weight", True, "main"),
    (f"bert.encoder.layers.{L}.self_attn.v_proj.bias", f"bert.encoder.layer.{L}.attention.self.value.bias", False, "main"),
    (f"bert.encoder.layers.{L}.self_attn.out_proj.weight", f"bert.encoder.layer.{L}.attention.output.dense.weight", True, "main"),
    (f"bert.encoder.layers.{L}.self_attn.out_proj.bias", f"bert.encoder.layer.{L}.attention.output.dense.bias", False, "main"),
    (f"bert.encoder.layers.{L}.norm1.weight", f"bert.encoder.layer.{L}.attention.output.LayerNorm.weight", False, "main"),
    (f"bert.encoder.layers.{L}.norm1.bias", f"bert.encoder.layer.{L}.attention.output.LayerNorm.bias", False, "main"),
    (f"bert.encoder.layers.{L}.linear1.weight", f"bert.encoder.layer.{L}.intermediate.dense.weight", True, "main"),
    (f"bert.encoder.layers.{L}.linear1.bias", f"bert.encoder.layer.{L}.intermediate.dense.bias", False, "main"),
    (f"bert.encoder.layers.{L}.linear2.weight", f"bert.encoder.layer.{L}.output.dense.weight", True, "main"),
    (f"bert.encoder.layers.{L}.linear2.bias", f"bert.encoder.layer.{L}.output.dense.bias", False, "main"),
    (f"bert.encoder.layers.{L}.norm2.weight", f"bert.encoder.layer.{L}.output.LayerNorm.weight", False, "main"),
    (f"bert.encoder.layers.{L}.norm2.bias", f"bert.encoder.layer.{L}.output.LayerNorm.bias", False, "main"),
    ("cls.predictions.transform.weight", "cls.predictions.transform.dense.weight", True, "main"),
    ("cls.predictions.transform.bias", "cls.predictions.transform.dense.bias", False, "main"),
    ("cls.predictions.layer_norm.weight", "cls.predictions.transform.LayerNorm.weight", False, "main"),
    ("cls.predictions.layer_norm.bias", "cls.predictions.transform.LayerNorm.bias", False, "main"),
    ("cls.predictions.decoder_bias", "cls.predictions.bias", False, "main"),
    ("bert.pooler.dense.weight", "bert.pooler.dense.weight", True, "side"),
    ("bert.pooler.dense.bias", "bert.pooler.dense.bias", False, "side"),
    ("cls.seq_relationship.weight", "cls.seq_relationship.weight", True, "side"),
    ("cls.seq_relationship.bias", "cls.seq_relationship.bias", False, "side"),
    # fine-tuned task heads: BertFor{SequenceClassification,TokenClassification} ``classifier``,
    # BertForQuestionAnswering ``qa_outputs``
    ("classifier.weight", "classifier.weight", True, "main"),
    ("classifier.bias", "classifier.bias", False, "main"),
    ("qa_outputs.weight", "qa_outputs.weight", True, "main"),
    ("qa_outputs.bias", "qa_outputs.bias", False, "main"),
]

# transformers ties these to word_embeddings / cls.predictions.bias ({target: source}, as 5.x declares them).
HF_TIED = {
    "cls.predictions.decoder.weight": "bert.embeddings.word_embeddings.weight",
    "cls.predictions.decoder.bias": "cls.predictions.bias",
}
POSITION_IDS = "bert.embeddings.position_ids"
# Buffers (not parameters) that some transformers versions write into the state dict.
HF_DERIVED = (POSITION_IDS,)


def expected_shapes(config: dict) -> dict:
    """``{our name: shape}`` of the encoder (without its pooler) and the MLM head for a ``model_config`` dict; the
    pooler, SOP and task heads are added by ``ernie_style.arch.state_dict_adapter.expected_ours``."""
    V, H = config["vocab_size"], config["hidden_size"]
    P, T = config["max_position_embeddings"], config["type_vocab_size"]
    shapes = {
        "bert.embeddings.word_embeddings.weight": (V, H),
        "bert.embeddings.position_embeddings.weight": (P, H),
        "bert.embeddings.token_type_embeddings.weight": (T, H),  # UER's checkpoints: 3 rows
        "bert.embeddings.layer_norm.weight": (H,),
        "bert.embeddings.layer_norm.bias": (H,),
        "cls.predictions.transform.weight": (H, H),
        "cls.predictions.transform.bias": (H,),
        "cls.predictions.layer_norm.weight": (H,),
        "cls.predictions.layer_norm.bias": (H,),
        "cls.predictions.decoder_bias": (V,),
    }
    shapes.update(encoder_layer_shapes("bert", config))
    return shapes


# ---------------------------------------------------------------------------------------------- config.json

# Defaults of transformers' BertConfig for fields a config.json may omit (HFL's and UER's write them all; the
# layer_norm_eps a file gives is kept as it is).
HF_DEFAULTS = {
    "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072,
    "hidden_act": "gelu", "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1,
    "max_position_embeddings": 512, "type_vocab_size": 2, "initializer_range": 0.02, "layer_norm_eps": 1e-12,
    "pad_token_id": 0,
}


def config_from_hf(raw: dict, path: str, fields) -> dict:
    """Our model_config fields (``fields``: their names) from a transformers BERT config.json dict (transformers'
    defaults for absent ones); ModelDirError naming ``path`` for what our BERT does not compute: relative position
    embeddings, a decoder with cross-attention, an untied MLM decoder."""
    kind = raw.get("position_embedding_type", "absolute")
    if kind not in (None, "absolute"):
        raise ModelDirError(f"{path}: position_embedding_type {kind!r}; our BERT has learned absolute positions "
                            "('absolute')")
    for key in ("is_decoder", "add_cross_attention"):
        if raw.get(key):
            raise ModelDirError(f"{path}: {key} is true; our BERT is an encoder without cross-attention")
    return hf_config.config_from_hf(raw, path, fields, HF_DEFAULTS)


def config_to_hf(config: dict, path: str) -> dict:
    """transformers' BertConfig keys for our ``config`` dict (ModelDirError naming ``path``)."""
    return {**hf_config.config_to_hf(config, path), "position_embedding_type": "absolute"}


# ---------------------------------------------------------------------------------------------- derived tensors


class PositionIdsDerived:
    """What BERT computes rather than trains: the ``position_ids`` buffer (arange(max_position_embeddings)) that
    transformers up to 4.30 saved with the weights.  An export writes nothing (transformers builds it); an import
    checks it is the plain arange (a permuted one would compute another model) and drops it.  No position tables
    to give a verification (the interface of ``ernie_style.arch.roformer.state_dict_adapter.RotaryDerived``)."""

    names = HF_DERIVED

    def hf_tensors(self, config: dict) -> dict:
        return {}

    def from_hf(self, tensors: dict, where: str) -> tuple:
        ids = tensors.get(POSITION_IDS)
        if ids is None:
            return None, []
        flat = np.asarray(ids).reshape(-1)
        if np.asarray(ids).ndim > 2 or not np.array_equal(flat, np.arange(flat.size)):
            raise ModelDirError(f"{where}: {POSITION_IDS} is not arange({flat.size}); our BERT computes positions "
                                "0, 1, 2, ...")
        return None, [f"dropped {POSITION_IDS} (a buffer, arange({flat.size}); computed, not trained)"]

    def tables(self, config: dict, dtype: str = "float32"):
        return None

    def install(self, encoder, tables) -> None:
        assert tables is None, "BERT computes no position tables"


DERIVED = PositionIdsDerived()
