"""Fine-tuning models: the RoFormer encoder plus a task head, with Hugging Face's parameter names and math.

``RoFormerForSequenceClassification`` (seq_cls, pair_cls) = transformers' class of that name:
x = sequence_output[:, 0] -> dropout -> ``classifier.dense`` (H->H) -> ``config.hidden_act`` -> dropout ->
``classifier.out_proj`` (H->C).  ``RoFormerForTokenClassification`` (ner): ``classifier`` (H->C) on
dropout(sequence_output).  ``RoFormerForQuestionAnswering`` (qa): ``qa_outputs`` (H->2) on sequence_output, split
into start and end logits.  The encoder's pooler is kept (the fine-tuned model directory holds it, as the
export expects) but takes no part in the forward pass, so its parameters are frozen (a data-parallel reducer
would otherwise wait for gradients that never come).

Pure math, like ``modeling.py``; loading and persistence live in ``ernie_style.finetune``.
"""
from __future__ import annotations

import paddle.nn as nn

from ernie_style.arch import arch_of
from ernie_style.arch.roformer import ops
from ernie_style.arch.roformer.modeling import RoFormerConfig, _init_weights


class RoFormerClassificationHead(nn.Layer):
    def __init__(self, config: RoFormerConfig, num_labels: int):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.out_proj = nn.Linear(config.hidden_size, num_labels)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.act = config.hidden_act

    def forward(self, sequence_output):
        x = self.dropout(sequence_output[:, 0])  # (B, H): the [CLS] vector
        x = self.dropout(ops.ACTIVATIONS[self.act](self.dense(x)))
        return self.out_proj(x)  # (B, C)


class _EncoderWithHead(nn.Layer):
    """The RoFormer encoder of a fine-tuning model; the subclass adds its head (after the encoder, so parameters
    are created and initialised in the same order as before this base existed).  The pooler is kept for the model
    dir but takes no part in the forward pass, so it is frozen (see the module doc)."""

    def __init__(self, config: RoFormerConfig):
        super().__init__()
        self.config = config
        self.roformer = arch_of(config).base_model_class()(config)  # the architecture's encoder (RoFormerModel)
        for p in self.roformer.pooler.parameters():
            p.stop_gradient = True

    def set_attention_impl(self, name: str) -> None:
        self.roformer.set_attention_impl(name)

    def encode(self, input_ids, token_type_ids=None, attention_mask=None):
        return self.roformer(input_ids, token_type_ids, attention_mask)[0]  # (B, L, H)


class RoFormerForSequenceClassification(_EncoderWithHead):
    """``forward(input_ids, token_type_ids, attention_mask) -> logits [B, num_labels]``."""

    def __init__(self, config: RoFormerConfig, num_labels: int):
        super().__init__(config)
        self.num_labels = num_labels
        self.classifier = RoFormerClassificationHead(config, num_labels)
        _init_weights(self.classifier, config.initializer_range)

    def forward(self, input_ids, token_type_ids=None, attention_mask=None):
        return self.classifier(self.encode(input_ids, token_type_ids, attention_mask))


class RoFormerForTokenClassification(_EncoderWithHead):
    """``forward(input_ids, token_type_ids, attention_mask) -> logits [B, L, num_labels]`` (ner) = transformers'
    class of that name: ``classifier`` (H->C) on dropout(sequence_output)."""

    def __init__(self, config: RoFormerConfig, num_labels: int):
        super().__init__(config)
        self.num_labels = num_labels
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.classifier = nn.Linear(config.hidden_size, num_labels)
        _init_weights(self.classifier, config.initializer_range)

    def forward(self, input_ids, token_type_ids=None, attention_mask=None):
        sequence_output = self.encode(input_ids, token_type_ids, attention_mask)
        return self.classifier(self.dropout(sequence_output))  # (B, L, C)


class RoFormerForQuestionAnswering(_EncoderWithHead):
    """``forward(input_ids, token_type_ids, attention_mask) -> (start_logits [B, L], end_logits [B, L])`` (qa) =
    transformers' class of that name: ``qa_outputs`` (H->2) on sequence_output, no dropout."""

    def __init__(self, config: RoFormerConfig):
        super().__init__(config)
        self.qa_outputs = nn.Linear(config.hidden_size, 2)
        _init_weights(self.qa_outputs, config.initializer_range)

    def forward(self, input_ids, token_type_ids=None, attention_mask=None):
        logits = self.qa_outputs(self.encode(input_ids, token_type_ids, attention_mask))  # (B, L, 2)
        return logits[:, :, 0], logits[:, :, 1]
