"""RoFormer for WWM-MLM + SOP pretraining, in Paddle. Pure math: no fleet, AMP or recompute code here.

The math is PaddleNLP's RoFormer (= Hugging Face ``RoFormerForMaskedLM``): embeddings = word + token_type ->
LayerNorm -> dropout (no absolute positions); optional ``embeddings_project`` when embedding_size != hidden_size;
post-LN encoder layers whose self-attention rotates q and k (and v when ``rotary_value``) with interleaved rotary
position embeddings; exact (erf) GELU; LayerNorm eps 1e-12; MLM decoder tied to the word embeddings.
Parameter names are PaddleNLP's, so its RoFormer state dicts load directly.

Outside code relies on:
  - ``model.roformer.encoder.layers`` is a plain ``nn.LayerList``; each layer's ``forward(hidden, attn_bias,
    sin, cos)`` is a pure function of its inputs, so a trainer can wrap it with fleet's ``recompute``;
  - ``RoFormerForPretraining.forward(...) -> (mlm_logits, sop_logits)``.
What is not math lives with the architecture (``ernie_style/arch/roformer/``): the Paddle-free config
(``config.py``), PaddleNLP compatibility and checked loading (``paddlenlp.py``), ``save_pretrained`` /
``from_pretrained`` (``persistence.py``).  The losses belong to the task (``ernie_style/tasks/pretrain.py``).
Kernel selection (plain / sdpa / flash / auto) lives in ``ernie_style.arch.roformer.ops``.
"""

from __future__ import annotations

import paddle
import paddle.nn as nn

from ernie_style.arch.roformer import ops
from ernie_style.arch.roformer.config import RoFormerConfig  # noqa: F401  (Paddle-free; re-exported: its old home)
from ernie_style.arch.roformer.persistence import from_pretrained, save_pretrained


# ------------------------------------------------------------------------------------------------------------------
# Layers
# ------------------------------------------------------------------------------------------------------------------


class RoFormerEmbeddings(nn.Layer):
    """word + token_type embeddings -> LayerNorm -> dropout. Positions come from rotary, not from here."""

    def __init__(self, config: RoFormerConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.embedding_size)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.embedding_size)
        self.layer_norm = nn.LayerNorm(config.embedding_size, epsilon=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, input_ids, token_type_ids):
        x = self.word_embeddings(input_ids) + self.token_type_embeddings(token_type_ids)  # (B, L, E)
        return self.dropout(self.layer_norm(x))


class RoFormerSelfAttention(nn.Layer):
    def __init__(self, config: RoFormerConfig):
        super().__init__()
        h = config.hidden_size
        self.num_heads = config.num_attention_heads
        self.head_dim = config.head_dim
        self.rotary_value = config.rotary_value
        self.dropout_p = config.attention_probs_dropout_prob
        self.q_proj = nn.Linear(h, h)
        self.k_proj = nn.Linear(h, h)
        self.v_proj = nn.Linear(h, h)
        self.out_proj = nn.Linear(h, h)
        self.kernel_set = "auto"

    def forward(self, x, attn_bias, sin, cos):
        b, l, h = x.shape
        shape = [b, l, self.num_heads, self.head_dim]
        q = self.q_proj(x).reshape(shape)  # (B, L, nH, D)
        k = self.k_proj(x).reshape(shape)
        v = self.v_proj(x).reshape(shape)
        attn_impl, fused_rotary, _ = ops.resolve(self.kernel_set, q)
        if fused_rotary:
            q, k, v_rot = ops.apply_rotary_fused(q, k, v if self.rotary_value else None, sin, cos)
            if self.rotary_value:
                v = v_rot
        else:
            q = ops.apply_rotary(q, sin, cos)
            k = ops.apply_rotary(k, sin, cos)
            if self.rotary_value:
                v = ops.apply_rotary(v, sin, cos)
        out = ops.attention(q, k, v, attn_bias.astype(q.dtype), self.dropout_p, self.training, attn_impl)
        return self.out_proj(out.reshape([b, l, h]))


class RoFormerLayer(nn.Layer):
    """Post-LN transformer layer: x = norm1(x + drop(attn(x))); x = norm2(x + drop(ffn(x)))."""

    def __init__(self, config: RoFormerConfig):
        super().__init__()
        h = config.hidden_size
        self.self_attn = RoFormerSelfAttention(config)
        self.linear1 = nn.Linear(h, config.intermediate_size)
        self.linear2 = nn.Linear(config.intermediate_size, h)
        self.norm1 = nn.LayerNorm(h, epsilon=config.layer_norm_eps)
        self.norm2 = nn.LayerNorm(h, epsilon=config.layer_norm_eps)
        self.dropout1 = nn.Dropout(config.hidden_dropout_prob)
        self.dropout2 = nn.Dropout(config.hidden_dropout_prob)
        self.act = config.hidden_act

    def forward(self, x, attn_bias, sin, cos):
        """x [B, L, H], attn_bias [B, 1, 1, L] additive, sin/cos [L, D/2] -> [B, L, H]."""
        x = self.norm1(x + self.dropout1(self.self_attn(x, attn_bias, sin, cos)))
        _, _, fused_gelu = ops.resolve(self.self_attn.kernel_set, x)
        ffn = self.linear2(ops.linear_act(x, self.linear1, self.act, fused_gelu))
        return self.norm2(x + self.dropout2(ffn))


class RoFormerEncoder(nn.Layer):
    def __init__(self, config: RoFormerConfig):
        super().__init__()
        self.layers = nn.LayerList([RoFormerLayer(config) for _ in range(config.num_hidden_layers)])

    def forward(self, x, attn_bias, sin, cos):
        for layer in self.layers:
            x = layer(x, attn_bias, sin, cos)
        return x


class RoFormerPooler(nn.Layer):
    """tanh(dense(h[CLS]))."""

    def __init__(self, config: RoFormerConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, sequence_output):
        return paddle.tanh(self.dense(sequence_output[:, 0]))  # (B, H)


def _init_weights(root: nn.Layer, std: float) -> None:
    """normal(0, std) for Linear/Embedding weights, zero biases, LayerNorm ones/zeros (PaddleNLP's init;
    the pad row of the word embeddings is not zeroed, as in PaddleNLP)."""
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


class RoFormerModel(nn.Layer):
    """The encoder. ``forward`` returns (sequence_output [B, L, H], pooled_output [B, H])."""

    def __init__(self, config: RoFormerConfig):
        super().__init__()
        self.config = config
        self.embeddings = RoFormerEmbeddings(config)
        if config.embedding_size != config.hidden_size:
            self.embeddings_project = nn.Linear(config.embedding_size, config.hidden_size)
        self.encoder = RoFormerEncoder(config)
        self.pooler = RoFormerPooler(config)
        sin, cos = ops.rotary_table(config.head_dim, config.max_position_embeddings)
        self.register_buffer("rotary_sin", paddle.to_tensor(sin), persistable=False)
        self.register_buffer("rotary_cos", paddle.to_tensor(cos), persistable=False)
        _init_weights(self, config.initializer_range)
        self.set_attention_impl(ops.default_kernel_set())

    def set_attention_impl(self, name: str) -> None:
        """Choose the kernel set: "auto" | "plain" | "sdpa" | "flash" (see ``ernie_style.arch.roformer.ops``)."""
        ops.check_kernel_set(name)
        for layer in self.encoder.layers:
            layer.self_attn.kernel_set = name

    def attention_bias(self, input_ids, attention_mask, dtype):
        """Additive bias [B, 1, 1, L]: 0 where attention_mask is 1 (absent: token != pad), MASK_VALUE where 0."""
        keep = (input_ids != self.config.pad_token_id) if attention_mask is None else (attention_mask != 0)
        return ((1.0 - keep.astype(dtype)) * ops.MASK_VALUE).unsqueeze([1, 2])

    def forward(self, input_ids, token_type_ids=None, attention_mask=None):
        """input_ids [B, L] int64; token_type_ids [B, L] (absent: zeros); attention_mask [B, L] 1/0 (absent:
        built from pad_token_id)."""
        seq_len = input_ids.shape[1]
        if seq_len > self.config.max_position_embeddings:
            raise ValueError(
                f"input length {seq_len} exceeds max_position_embeddings={self.config.max_position_embeddings}"
            )
        if token_type_ids is None:
            token_type_ids = paddle.zeros_like(input_ids)
        x = self.embeddings(input_ids, token_type_ids)  # (B, L, E)
        if self.config.embedding_size != self.config.hidden_size:
            x = self.embeddings_project(x)  # (B, L, H)
        bias = self.attention_bias(input_ids, attention_mask, x.dtype)
        sin, cos = self.rotary_sin[:seq_len], self.rotary_cos[:seq_len]  # (L, D/2)
        sequence_output = self.encoder(x, bias, sin, cos)
        return sequence_output, self.pooler(sequence_output)


class RoFormerLMPredictionHead(nn.Layer):
    """dense(H->E) -> act -> LayerNorm -> x @ word_embeddings^T + decoder_bias."""

    def __init__(self, config: RoFormerConfig):
        super().__init__()
        self.transform = nn.Linear(config.hidden_size, config.embedding_size)
        self.layer_norm = nn.LayerNorm(config.embedding_size, epsilon=config.layer_norm_eps)
        self.decoder_bias = self.create_parameter(
            [config.vocab_size], is_bias=True, default_initializer=nn.initializer.Constant(0.0)
        )
        self.act = config.hidden_act

    def forward(self, hidden, decoder_weight):
        """hidden [..., H], decoder_weight [V, E] (the tied word embeddings) -> logits [..., V]."""
        x = self.layer_norm(ops.ACTIVATIONS[self.act](self.transform(hidden)))
        return paddle.matmul(x, decoder_weight.astype(x.dtype), transpose_y=True) + self.decoder_bias.astype(x.dtype)


class RoFormerPretrainingHeads(nn.Layer):
    """MLM head (``predictions``) and SOP classifier (``seq_relationship``) on the pooled [CLS]; without
    ``sop_head`` (MLM-only runs) no SOP classifier and ``sop_logits`` is None."""

    def __init__(self, config: RoFormerConfig, sop_head: bool = True):
        super().__init__()
        self.predictions = RoFormerLMPredictionHead(config)
        self.seq_relationship = nn.Linear(config.hidden_size, 2) if sop_head else None

    def forward(self, sequence_output, pooled_output, decoder_weight, masked_positions=None):
        """sequence_output [B, L, H], pooled_output [B, H], masked_positions flat int64 [K] of row * L + pos.

        Returns mlm_logits ([K, V] with masked_positions, else [B, L, V]) and sop_logits [B, 2].
        """
        if masked_positions is not None:
            hidden = sequence_output.reshape([-1, sequence_output.shape[-1]])  # (B*L, H)
            # Gather first: the vocab projection then runs on K rows instead of B*L (~15%).
            sequence_output = paddle.gather(hidden, masked_positions.astype("int64"), axis=0)  # (K, H)
        sop_logits = None if self.seq_relationship is None else self.seq_relationship(pooled_output)
        return self.predictions(sequence_output, decoder_weight), sop_logits


class RoFormerForPretraining(nn.Layer):
    """RoFormer + WWM-MLM head + SOP head. ``forward`` -> (mlm_logits, sop_logits).  ``sop_head=False`` (MLM-only
    runs, ``data.binary_head: false``) builds no SOP head: ``sop_logits`` is None and the state dict has no
    ``cls.seq_relationship.*``."""

    def __init__(self, config: RoFormerConfig, sop_head: bool = True):
        super().__init__()
        self.config = config
        self.roformer = RoFormerModel(config)
        self.cls = RoFormerPretrainingHeads(config, sop_head)
        _init_weights(self.cls, config.initializer_range)

    def set_attention_impl(self, name: str) -> None:
        """Choose the kernel set: "auto" | "plain" | "sdpa" | "flash" (see ``ernie_style.arch.roformer.ops``)."""
        self.roformer.set_attention_impl(name)

    def forward(self, input_ids, token_type_ids=None, attention_mask=None, masked_positions=None):
        sequence_output, pooled_output = self.roformer(input_ids, token_type_ids, attention_mask)
        return self.cls(
            sequence_output, pooled_output, self.roformer.embeddings.word_embeddings.weight, masked_positions
        )

    # -- persistence (ernie_style/arch/roformer/persistence.py) ---------------------------------------------------

    def save_pretrained(self, directory: str) -> None:
        """Write ``model_config.json`` and ``model_state.pdparams`` into ``directory`` (each atomically)."""
        save_pretrained(self, directory)

    @classmethod
    def from_pretrained(cls, directory: str, allow_missing_heads: bool = False) -> "RoFormerForPretraining":
        """Load a model directory (ours or PaddleNLP's); see ``ernie_style.arch.roformer.persistence``."""
        return from_pretrained(cls, directory, allow_missing_heads)
