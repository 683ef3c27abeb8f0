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

from ernie_style import ops
from ernie_style.modeling import RoFormerConfig, RoFormerModel, _init_weights


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


class RoFormerForSequenceClassification(nn.Layer):
    """``forward(input_ids, token_type_ids, attention_mask) -> logits [B, num_labels]``."""

    def __init__(self, config: RoFormerConfig, num_labels: int):
        super().__init__()
        self.config, self.num_labels = config, num_labels
        self.roformer = RoFormerModel(config)
        self.classifier = RoFormerClassificationHead(config, num_labels)
        _init_weights(self.classifier, config.initializer_range)
        for p in self.roformer.pooler.parameters():
            p.stop_gradient = True

    def set_attention_impl(self, name: str) -> None:
        self.roformer.set_attention_impl(name)

    def forward(self, input_ids, token_type_ids=None, attention_mask=None):
        sequence_output, _ = self.roformer(input_ids, token_type_ids, attention_mask)  # (B, L, H)
        return self.classifier(sequence_output)


class RoFormerForTokenClassification(nn.Layer):
    """``forward(input_ids, token_type_ids, attention_mask) -> logits [B, L, num_labels]`` (ner) = transformers'
    class of that name: ``classifier`` (H->C) on dropout(sequence_output)."""

    def __init__(self, config: RoFormerConfig, num_labels: int):
        super().__init__()
        self.config, self.num_labels = config, num_labels
        self.roformer = RoFormerModel(config)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.classifier = nn.Linear(config.hidden_size, num_labels)
        _init_weights(self.classifier, config.initializer_range)
        for p in self.roformer.pooler.parameters():  # kept for the model dir, unused (see the module doc)
            p.stop_gradient = True

    def set_attention_impl(self, name: str) -> None:
        self.roformer.set_attention_impl(name)

    def forward(self, input_ids, token_type_ids=None, attention_mask=None):
        sequence_output, _ = self.roformer(input_ids, token_type_ids, attention_mask)  # (B, L, H)
        return self.classifier(self.dropout(sequence_output))  # (B, L, C)


class RoFormerForQuestionAnswering(nn.Layer):
    """``forward(input_ids, token_type_ids, attention_mask) -> (start_logits [B, L], end_logits [B, L])`` (qa) =
    transformers' class of that name: ``qa_outputs`` (H->2) on sequence_output, no dropout."""

    def __init__(self, config: RoFormerConfig):
        super().__init__()
        self.config = config
        self.roformer = RoFormerModel(config)
        self.qa_outputs = nn.Linear(config.hidden_size, 2)
        _init_weights(self.qa_outputs, config.initializer_range)
        for p in self.roformer.pooler.parameters():
            p.stop_gradient = True

    def set_attention_impl(self, name: str) -> None:
        self.roformer.set_attention_impl(name)

    def forward(self, input_ids, token_type_ids=None, attention_mask=None):
        sequence_output, _ = self.roformer(input_ids, token_type_ids, attention_mask)  # (B, L, H)
        logits = self.qa_outputs(sequence_output)  # (B, L, 2)
        return logits[:, :, 0], logits[:, :, 1]
