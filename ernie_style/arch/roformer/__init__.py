"""RoFormer (Su et al.; PaddleNLP / Hugging Face ``roformer``): the parts ``model.arch: roformer`` selects.

  config.py              ``RoFormerConfig`` (Paddle-free; ``model_config.json``)
  modeling.py            the math: ``RoFormerModel``, ``RoFormerForPretraining`` (re-exported by ``ernie_style.modeling``)
  ops.py                 its kernels (rotary position, attention, the fused GPU paths)
  state_dict_adapter.py  the name map to Hugging Face ``RoFormerForMaskedLM`` (Paddle-free, used by ``export``)
  paddlenlp.py           PaddleNLP compatibility: its config.json, its state-dict layouts, checked loading
  persistence.py         ``save_pretrained`` / ``from_pretrained`` of a model directory
"""
from ernie_style.arch.spec import ArchSpec

ARCH = ArchSpec(
    name="roformer",
    config="ernie_style.arch.roformer.config:RoFormerConfig",
    base_model="ernie_style.arch.roformer.modeling:RoFormerModel",
    pretraining_model="ernie_style.arch.roformer.modeling:RoFormerForPretraining",
    name_map="ernie_style.arch.roformer.state_dict_adapter:NAME_MAP",
    paddlenlp_config="ernie_style.arch.roformer.paddlenlp:config_from_paddlenlp",
    load_state_dict="ernie_style.arch.roformer.paddlenlp:load_state_dict_checked",
)
