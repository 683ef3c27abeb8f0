"""The encoder and heads BERT and RoFormer share, in Paddle. Pure math: no fleet, AMP or recompute code here.

BERT (PaddleNLP ``BertModel`` = Hugging Face ``BertModel``) and RoFormer (PaddleNLP ``RoFormerModel``) run the same
post-LN transformer layer; they differ in where positions enter: BERT adds learned absolute position embeddings
at the embeddings, RoFormer rotates q and k (and v with ``rotary_value``) inside attention.  So the layer here has
one hook, :meth:`SelfAttention.apply_positions` (identity: BERT), which RoFormer's attention overrides; whatever
position tensors an architecture needs are passed through the layer's ``*positions`` arguments.

Parameter names are PaddleNLP's (``encoder.layers.N.self_attn.q_proj``, ``linear1``, ``norm1``, ``pooler.dense``,
``cls.predictions.transform``, ``cls.seq_relationship``), so its BERT and RoFormer state dicts load directly.
The config a layer is built from needs: ``vocab_size``, ``embedding_size``, ``hidden_size``, ``num_attention_heads``,
``head_dim``, ``intermediate_size``, ``hidden_act``, ``hidden_dropout_prob``, ``attention_probs_dropout_prob``,
``layer_norm_eps``.
"""

from __future__ import annotations

import paddle
import paddle.nn as nn

from ernie_style.arch.common import kernels


class SelfAttention(nn.Layer):
    """Multi-head self-attention: q, k, v projections -> positions hook -> softmax attention -> out_proj."""

    def __init__(self, config):
        super().__init__()
        h = config.hidden_size
        self.num_heads = config.num_attention_heads
        self.head_dim = config.head_dim
        self.dropout_p = config.attention_probs_dropout_prob
        self.q_proj = nn.Linear(h, h)
        self.k_proj = nn.Linear(h, h)
        self.v_proj = nn.Linear(h, h)
        self.out_proj = nn.Linear(h, h)
        self.kernel_set = "auto"

    def apply_positions(self, q, k, v, fused: bool, *positions):
        """(q, k, v) [B, L, nH, D] with the architecture's positions applied; ``fused`` says whether the fused
        rotary kernel may be used.  BERT's positions were added at the embeddings: nothing to do here."""
        return q, k, v

    def forward(self, x, attn_bias, *positions):
        b, l, h = x.shape
        shape = [b, l, self.num_heads, self.head_dim]
        q = self.q_proj(x).reshape(shape)  # (B, L, nH, D)
        k = self.k_proj(x).reshape(shape)
        v = self.v_proj(x).reshape(shape)
        attn_impl, fused_rotary, _ = kernels.resolve(self.kernel_set, q)
        q, k, v = self.apply_positions(q, k, v, fused_rotary, *positions)
        out = kernels.attention(q, k, v, attn_bias.astype(q.dtype), self.dropout_p, self.training, attn_impl)
        return self.out_proj(out.reshape([b, l, h]))


class TransformerLayer(nn.Layer):
    """Post-LN transformer layer: x = norm1(x + drop(attn(x))); x = norm2(x + drop(ffn(x))).

    ``forward(x, attn_bias, *positions)`` is a pure function of its inputs, so a trainer can wrap it with fleet's
    ``recompute``.  An architecture whose attention differs sets ``attention_class`` in a subclass.
    """

    attention_class = SelfAttention

    def __init__(self, config):
        super().__init__()
        h = config.hidden_size
        self.self_attn = self.attention_class(config)
        self.linear1 = nn.Linear(h, config.intermediate_size)
        self.linear2 = nn.Linear(config.intermediate_size, h)
        self.norm1 = nn.LayerNorm(h, epsilon=config.layer_norm_eps)
        self.norm2 = nn.LayerNorm(h, epsilon=config.layer_norm_eps)
        self.dropout1 = nn.Dropout(config.hidden_dropout_prob)
        self.dropout2 = nn.Dropout(config.hidden_dropout_prob)
        self.act = config.hidden_act

    def forward(self, x, attn_bias, *positions):
        """x [B, L, H], attn_bias [B, 1, 1, L] additive, positions as the attention needs them -> [B, L, H]."""
        x = self.norm1(x + self.dropout1(self.self_attn(x, attn_bias, *positions)))
        _, _, fused_gelu = kernels.resolve(self.self_attn.kernel_set, x)
        ffn = self.linear2(kernels.linear_act(x, self.linear1, self.act, fused_gelu))
        return self.norm2(x + self.dropout2(ffn))


class Encoder(nn.Layer):
    """``num_hidden_layers`` layers of ``layer_class``; ``layers`` is a plain ``nn.LayerList`` (recompute wraps
    each layer's forward)."""

    def __init__(self, config, layer_class=TransformerLayer):
        super().__init__()
        self.layers = nn.LayerList([layer_class(config) for _ in range(config.num_hidden_layers)])

    def forward(self, x, attn_bias, *positions):
        for layer in self.layers:
            x = layer(x, attn_bias, *positions)
        return x

    def set_attention_impl(self, name: str) -> None:
        """Choose the kernel set of every layer: "auto" | "plain" | "sdpa" | "flash" (see ``kernels``)."""
        kernels.check_kernel_set(name)
        for layer in self.layers:
            layer.self_attn.kernel_set = name


class Pooler(nn.Layer):
    """tanh(dense(h[CLS]))."""

    def __init__(self, config):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, sequence_output):
        return paddle.tanh(self.dense(sequence_output[:, 0]))  # (B, H)


def attention_bias(input_ids, attention_mask, pad_token_id: int, dtype):
    """Additive bias [B, 1, 1, L]: 0 where attention_mask is 1 (absent: token != pad), MASK_VALUE where 0."""
    keep = (input_ids != pad_token_id) if attention_mask is None else (attention_mask != 0)
    return ((1.0 - keep.astype(dtype)) * kernels.MASK_VALUE).unsqueeze([1, 2])


def init_weights(root: nn.Layer, std: float) -> None:
    """normal(0, std) for Linear/Embedding weights, zero biases, LayerNorm ones/zeros (PaddleNLP's init;
    the pad row of the word embeddings is not zeroed, as in PaddleNLP).  Draws in creation order, so a model's
    initial weights are a function of the seed and the order its layers create their parameters."""
    normal = nn.initializer.Normal(mean=0.0, std=std)
    zeros = nn.initializer.Constant(0.0)
    ones = nn.initializer.Constant(1.0)
    for layer in root.sublayers(include_self=True):
        if isinstance(layer, (nn.Linear, nn.Embedding)):
            normal(layer.weight)
            if getattr(layer, "bias", None) is not None:
                zeros(layer.bias)
        elif isinstance(layer, nn.LayerNorm):
            ones(layer.weight)
            zeros(layer.bias)


class LMPredictionHead(nn.Layer):
    """dense(H->E) -> act -> LayerNorm -> x @ word_embeddings^T + decoder_bias (E = embedding_size; BERT: H)."""

    def __init__(self, config):
        super().__init__()
        self.transform = nn.Linear(config.hidden_size, config.embedding_size)
        self.layer_norm = nn.LayerNorm(config.embedding_size, epsilon=config.layer_norm_eps)
        self.decoder_bias = self.create_parameter(
            [config.vocab_size], is_bias=True, default_initializer=nn.initializer.Constant(0.0)
        )
        self.act = config.hidden_act

    def forward(self, hidden, decoder_weight):
        """hidden [..., H], decoder_weight [V, E] (the tied word embeddings) -> logits [..., V]."""
        x = self.layer_norm(kernels.ACTIVATIONS[self.act](self.transform(hidden)))
        return paddle.matmul(x, decoder_weight.astype(x.dtype), transpose_y=True) + self.decoder_bias.astype(x.dtype)


class PretrainingHeads(nn.Layer):
    """MLM head (``predictions``) and the SOP/NSP classifier (``seq_relationship``) on the pooled [CLS]; without
    ``sop_head`` (MLM-only runs) no SOP classifier and ``sop_logits`` is None."""

    def __init__(self, config, sop_head: bool = True):
        super().__init__()
        self.predictions = LMPredictionHead(config)
        self.seq_relationship = nn.Linear(config.hidden_size, 2) if sop_head else None

    def forward(self, sequence_output, pooled_output, decoder_weight, masked_positions=None):
        """sequence_output [B, L, H], pooled_output [B, H], masked_positions flat int64 [K] of row * L + pos.

        Returns mlm_logits ([K, V] with masked_positions, else [B, L, V]) and sop_logits [B, 2] (None without
        an SOP head).
        """
        if masked_positions is not None:
            hidden = sequence_output.reshape([-1, sequence_output.shape[-1]])  # (B*L, H)
            # Gather first: the vocab projection then runs on K rows instead of B*L (~15%).
            sequence_output = paddle.gather(hidden, masked_positions.astype("int64"), axis=0)  # (K, H)
        sop_logits = None if self.seq_relationship is None else self.seq_relationship(pooled_output)
        return self.predictions(sequence_output, decoder_weight), sop_logits


class EncoderModel(nn.Layer):
    """What every architecture's encoder model shares; a subclass builds ``embeddings``, ``encoder`` and ``pooler``
    and writes ``forward`` (where positions enter is the architecture's)."""

    def set_attention_impl(self, name: str) -> None:
        """Choose the kernel set: "auto" | "plain" | "sdpa" | "flash" (see ``ernie_style.arch.common.kernels``)."""
        self.encoder.set_attention_impl(name)

    def attention_bias(self, input_ids, attention_mask, dtype):
        """Additive bias [B, 1, 1, L]: 0 where attention_mask is 1 (absent: token != pad), MASK_VALUE where 0."""
        return attention_bias(input_ids, attention_mask, self.config.pad_token_id, dtype)

    def checked_inputs(self, input_ids, token_type_ids):
        """(L, token_type_ids): the length checked against max_position_embeddings; absent token types are zeros."""
        seq_len = input_ids.shape[1]
        if seq_len > self.config.max_position_embeddings:
            raise ValueError(
                f"input length {seq_len} exceeds max_position_embeddings={self.config.max_position_embeddings}"
            )
        return seq_len, paddle.zeros_like(input_ids) if token_type_ids is None else token_type_ids


class ForPretraining(nn.Layer):
    """An encoder model at attribute ``prefix`` (the state-dict prefix) + the MLM head tied to its word embeddings +
    the SOP head.  ``forward`` -> (mlm_logits, sop_logits).  ``sop_head=False`` (MLM-only runs,
    ``data.binary_head: false``) builds no SOP head: ``sop_logits`` is None and the state dict has no
    ``cls.seq_relationship.*``."""

    prefix: str  # set by the architecture's subclass

    def __init__(self, config, encoder_model, sop_head: bool = True):
        super().__init__()
        self.config = config
        setattr(self, self.prefix, encoder_model)  # created before the heads: the init draws in creation order
        self.cls = PretrainingHeads(config, sop_head)
        init_weights(self.cls, config.initializer_range)

    def set_attention_impl(self, name: str) -> None:
        """Choose the kernel set: "auto" | "plain" | "sdpa" | "flash" (see ``ernie_style.arch.common.kernels``)."""
        getattr(self, self.prefix).set_attention_impl(name)

    def forward(self, input_ids, token_type_ids=None, attention_mask=None, masked_positions=None):
        """As the encoder model's ``forward``; ``masked_positions`` flat int64 [K] of row * L + pos: MLM logits for
        those positions only ([K, V]; else [B, L, V]).  Returns (mlm_logits, sop_logits [B, 2] or None)."""
        encoder = getattr(self, self.prefix)
        sequence_output, pooled_output = encoder(input_ids, token_type_ids, attention_mask)
        return self.cls(sequence_output, pooled_output, encoder.embeddings.word_embeddings.weight, masked_positions)
