"""RoFormer (Su et al.; PaddleNLP / Hugging Face ``roformer``): the parts ``model.arch: roformer`` selects.

  config.py              ``RoFormerConfig`` (Paddle-free; ``model_config.json``)
  modeling.py            the math: ``RoFormerModel``, ``RoFormerForPretraining`` (re-exported by ``ernie_style.modeling``)
  ops.py                 its kernels (rotary position, attention, the fused GPU paths)
  state_dict_adapter.py  the name map to Hugging Face ``RoFormerForMaskedLM`` (Paddle-free, used by ``export``)
  paddlenlp.py           PaddleNLP compatibility: its config.json, its state-dict layouts, checked loading
  persistence.py         ``save_pretrained`` / ``from_pretrained`` of a model directory
"""
from ernie_style.arch.spec import ArchSpec, TaskHead

_M = "ernie_style.arch.roformer"
ARCH = ArchSpec(
    name="roformer",
    prefix="roformer",
    hf_model_type="roformer",
    hf_pretraining_class="RoFormerForMaskedLM",
    paddlenlp_pretraining_class="RoFormerForMaskedLM",
    # PaddleNLP's RoFormerForMaskedLM saves its decoder (tied to the word embeddings) once more
    paddlenlp_tied={"cls.predictions.decoder_weight": "roformer.embeddings.word_embeddings.weight"},
    task_heads={
        # transformers' RoFormerClassificationHead on h[CLS]; its RoFormerModel has no pooler (ours: the side file)
        "seq_cls": TaskHead("RoFormerForSequenceClassification", "cls_mlp"),
        "pair_cls": TaskHead("RoFormerForSequenceClassification", "cls_mlp"),
        "ner": TaskHead("RoFormerForTokenClassification", "token"),
        "qa": TaskHead("RoFormerForQuestionAnswering", "span"),
    },
    config=f"{_M}.config:RoFormerConfig",
    base_model=f"{_M}.modeling:RoFormerModel",
    pretraining_model=f"{_M}.modeling:RoFormerForPretraining",
    name_map=f"{_M}.state_dict_adapter:NAME_MAP",
    expected_shapes=f"{_M}.state_dict_adapter:expected_shapes",
    hf_config_in=f"{_M}.state_dict_adapter:config_from_hf",
    hf_config_out=f"{_M}.state_dict_adapter:config_to_hf",
    hf_derived=f"{_M}.state_dict_adapter:DERIVED",
    paddlenlp_config=f"{_M}.paddlenlp:config_from_paddlenlp",
    load_state_dict=f"{_M}.paddlenlp:load_state_dict_checked",
    init_weights=f"{_M}.modeling:_init_weights",
    activations=f"{_M}.ops:ACTIVATIONS",
    public=(f"{_M}.config:RoFormerConfig", f"{_M}.modeling:RoFormerModel", f"{_M}.modeling:RoFormerForPretraining"),
)
