"""The public model classes, importable from their historical home.

``from ernie_style.modeling import RoFormerForPretraining`` keeps working; the math lives with its architecture
(:mod:`ernie_style.arch.roformer.modeling`,
:mod:`ernie_style.arch.bert.modeling`).  Nothing inside the package imports this module.
"""
from ernie_style.arch.bert.config import BertConfig
from ernie_style.arch.bert.modeling import BertForPretraining, BertModel
from ernie_style.arch.roformer.config import RoFormerConfig
from ernie_style.arch.roformer.modeling import RoFormerForPretraining, RoFormerModel

__all__ = ["RoFormerConfig", "RoFormerModel", "RoFormerForPretraining", "BertConfig", "BertModel", "BertForPretraining"]
