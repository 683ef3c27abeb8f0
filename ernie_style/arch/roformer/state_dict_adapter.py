"""RoFormer's parameter names: ours (PaddleNLP's) -> Hugging Face ``RoFormerFor*``.  Paddle-free.

Rows ``(ours, hugging face, transpose, file)``; ``{i}`` stands for a layer index.  Paddle ``Linear.weight`` is
``[in, out]``, torch's ``[out, in]``: rows marked True are transposed.  ``file``: ``main`` = model.safetensors,
``side`` = pretraining_heads.safetensors (pooler + SOP head, which RoFormerForMaskedLM has no place for).  The
converters that apply it live in ``ernie_style/arch/state_dict_adapter.py``.
"""

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
