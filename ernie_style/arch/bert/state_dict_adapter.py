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
# Buffers (not parameters) that some transformers versions write into the state dict.
HF_DERIVED = ("bert.embeddings.position_ids",)
