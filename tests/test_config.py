"""Config tree: YAML + dotted overrides, suggestions for unknown keys, typed errors, batch-size arithmetic."""
import glob
import os

import pytest

from ernie_style.arch.roformer.modeling import RoFormerConfig
from ernie_style.config.pretrain import ConfigError, load_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = sorted(glob.glob(os.path.join(REPO, "configs", "*.yaml")))


@pytest.fixture(scope="module")
def vocab(tmp_path_factory):
    p = tmp_path_factory.mktemp("cfg") / "vocab.txt"
    p.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [chr(0x4E00 + i) for i in range(95)]) + "\n")
    return str(p)


def test_there_are_configs():
    names = {os.path.basename(c) for c in CONFIGS}
    assert {"roformer_base_wwm_cluecorpussmall.yaml", "roformer_tiny_demo.yaml"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=os.path.basename)
def test_every_shipped_config_loads(path, vocab):
    from ernie_style.arch import get_arch

    cfg = load_config(path, [f"data.vocab_file={vocab}"])
    assert isinstance(cfg.model, get_arch(cfg.model_arch or "roformer").config_class())  # the file's model.arch
    assert cfg.model.vocab_size == 100  # from the vocab file
    assert cfg.data.max_seq_len <= cfg.model.max_position_embeddings
    assert "model:" in cfg.to_yaml() and "optim:" in cfg.to_yaml()


def test_reference_recipe_numbers(vocab):
    cfg = load_config(os.path.join(REPO, "configs", "roformer_base_wwm_cluecorpussmall.yaml"),
                      [f"data.vocab_file={vocab}"])
    m = cfg.model
    assert (m.hidden_size, m.num_hidden_layers, m.num_attention_heads, m.intermediate_size) == (768, 12, 12, 3072)
    assert cfg.data.max_seq_len == 512 and cfg.data.binary_head
    # the reference run: batch 128 for 300k steps, then 256 (train.phases), 276.48M sequences in all
    assert cfg.train.micro_batch_size == 32 and cfg.global_batch_size(4) == 128 and cfg.accumulation_steps(4) == 1
    assert cfg.accumulation_steps(2) == 2
    assert cfg.train.phases == [{"until_step": 300000}, {"until_step": 1230000, "train.global_batch_size": 256,
                                                         "train.micro_batch_size": 64}]
    assert 300000 * 128 + (cfg.train.max_steps - 300000) * 256 == 276_480_000
    o = cfg.optim
    assert (o.max_lr, o.min_lr, o.weight_decay, o.grad_clip) == (1e-4, 1e-5, 0.01, 1.0)
    assert cfg.train.max_steps == o.decay_steps == 1230000 and o.resolved_warmup_steps() > 0
    a = cfg.amp
    assert a.enable and a.dtype == "float16" and a.level == "O1" and a.init_loss_scaling == 32768.0


def test_tiny_demo_trains_on_two_processes(tmp_path):
    """The shipped demo config as it is (model, batch, schedule), with only data, output and a short run given:
    two real ranks train it, the loss is finite and the weights move."""
    import math
    import subprocess
    import sys

    import numpy as np
    import paddle

    import _trainer_util as U

    prefix, vocab = U.make_data(str(tmp_path / "data"))
    cfg = load_config(os.path.join(REPO, "configs", "roformer_tiny_demo.yaml"), [f"data.vocab_file={vocab}"])
    assert cfg.accumulation_steps(2) == 1 and cfg.model.num_hidden_layers <= 4 and cfg.model.hidden_size <= 128
    out = tmp_path / "out"
    over = [f"data.prefixes=[{prefix}]", f"data.vocab_file={vocab}", f"train.output_dir={out}",
            "train.max_steps=3", "train.save_steps=3", "train.logging_steps=1", "data.split=90,5,5"]
    p = subprocess.run(["bash", os.path.join(REPO, "run_pretrain.sh"), os.path.join(REPO, "configs",
                                                                                     "roformer_tiny_demo.yaml"), *over],
                       cwd=REPO, env=dict(os.environ, PYTHON=sys.executable, NPROC="2", OMP_NUM_THREADS="1"),
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    log = open(out / "train.log", encoding="utf-8").read()
    assert "trainer: 2 rank(s)" in log
    losses = U.log_fields(str(out / "train.log"))
    assert sorted(losses) == [1, 2, 3] and all(math.isfinite(v["loss"]) for v in losses.values())
    final = paddle.load(str(out / "checkpoints" / "step_00000003" / "model_state.pdparams"))
    from ernie_style.arch.roformer.modeling import RoFormerForPretraining

    cfg = load_config(os.path.join(REPO, "configs", "roformer_tiny_demo.yaml"), over)
    paddle.seed(cfg.train.seed)  # the trainer's initialisation
    init = RoFormerForPretraining(cfg.model).state_dict()
    assert max(float(np.abs(final[k].numpy() - init[k].numpy()).max()) for k in init) > 1e-4


def test_overrides_are_yaml(vocab):
    cfg = load_config(None, [f"data.vocab_file={vocab}", "data.prefixes=[/data/a,/data/b]", "amp.enable=false",
                             "optim.max_lr=3e-4", "train.max_steps=7", "data.split=98,1,1",
                             "amp.custom_white_list=[softmax]", "model.hidden_size=64", "model.num_attention_heads=4"])
    assert cfg.data.prefixes == ["/data/a", "/data/b"]
    assert cfg.amp.enable is False and cfg.optim.max_lr == 3e-4 and cfg.train.max_steps == 7
    assert cfg.data.splits.weights == (98.0, 1.0, 1.0) and cfg.data.splits.text == "98,1,1"
    assert cfg.amp.custom_white_list == ["softmax"] and cfg.model.hidden_size == 64
    assert cfg.data.blend == (("/data/a", 1.0), ("/data/b", 1.0))
    cfg = load_config(None, [f"data.vocab_file={vocab}", "data.prefixes=[0.3,/data/a,0.7,/data/b]"])
    assert cfg.data.blend == (("/data/a", 0.3), ("/data/b", 0.7))
    assert [type(b).__name__ for b in cfg.data.blend] == ["BlendSource", "BlendSource"]
    assert "splits" not in cfg.to_dict()["data"] and "blend" not in cfg.to_dict()["data"]  # derived, not saved


@pytest.mark.parametrize("override, needle", [
    ("train.max_step=5", "did you mean 'train.max_steps'"),
    ("optim.warmup_step=5", "did you mean 'optim.warmup_steps'"),
    ("trian.max_steps=5", "did you mean 'train.max_steps'"),
    ("model.hidden_sise=5", "did you mean 'model.hidden_size'"),
])
def test_unknown_keys_suggest_the_closest(override, needle, vocab):
    with pytest.raises(ConfigError, match=needle):
        load_config(None, [f"data.vocab_file={vocab}", override])


def test_unknown_key_in_yaml(tmp_path, vocab):
    p = tmp_path / "c.yaml"
    p.write_text(f"data:\n  vocab_file: {vocab}\n  max_seq_length: 128\n")
    with pytest.raises(ConfigError, match="'data.max_seq_length'.*did you mean 'data.max_seq_len'"):
        load_config(str(p))


@pytest.mark.parametrize("override, needle", [
    ("train.max_steps=ten", r"train.max_steps='ten': expected int"),
    ("amp.enable=maybe", r"amp.enable='maybe': expected bool"),
    ("optim.max_lr=[1]", r"optim.max_lr=\[1\]: expected float"),
    ("data.prefixes={a: 1}", r"data.prefixes=\{'a': 1\}: expected a list"),
    ("train.micro_batch_size=2.5", r"train.micro_batch_size=2.5: expected int"),
])
def test_wrong_types_name_field_value_and_type(override, needle, vocab):
    with pytest.raises(ConfigError, match=needle):
        load_config(None, [f"data.vocab_file={vocab}", override])


@pytest.mark.parametrize("override, needle", [
    ("amp.level=O3", "amp.level='O3': expected O1 or O2"),
    ("amp.dtype=float8", "amp.dtype='float8'"),
    ("optim.min_lr=1.0", "optim.min_lr=1.0: expected a number in"),
    ("train.micro_batch_size=0", "train.micro_batch_size=0"),
    ("dist.sharding_stage=3", "dist.sharding_stage=3"),
    ("data.split=a,b", "data.split='a,b'"),
    ("data.split=7/2/1", "data.split='7/2/1': expected up to 3 non-negative comma-separated weights"),
    ("data.prefixes=[0,/a,1,/b]", "data.prefixes=['0', '/a', '1', '/b']: expected positive finite blend weights (got 0.0 for /a)"),
    ("data.prefixes=[.inf,/a,1,/b]", "expected positive finite blend weights (got inf for /a)"),
    ("data.prefixes=[1e999,/a,1,/b]", "expected positive finite blend weights (got inf for /a)"),
    ("data.masking=whole_word", "data.masking='whole_word': expected one of char, span, wwm_ngram"),
    ("data.max_ngrams=0", "data.max_ngrams=0: expected an integer >= 1"),
    ("data.max_predictions_per_seq=0", "data.max_predictions_per_seq=0: expected an integer >= 1 or null"),
    ("data.max_seq_len=4096", "data.max_seq_len=4096: expected at most model.max_position_embeddings"),
    ("model.num_hidden_layers=0", "model.num_hidden_layers=0: expected a positive integer"),
])
def test_invalid_values_are_value_errors_naming_the_field(override, needle, vocab):
    with pytest.raises(ValueError) as e:
        load_config(None, [f"data.vocab_file={vocab}", override])
    assert needle in str(e.value)


def test_yaml11_exponent_without_dot_is_a_float(tmp_path, vocab):
    p = tmp_path / "c.yaml"
    p.write_text(f"data:\n  vocab_file: {vocab}\noptim:\n  max_lr: 1e-4\n  min_lr: 1e-5\n")
    cfg = load_config(str(p))
    assert cfg.optim.max_lr == 1e-4 and cfg.optim.min_lr == 1e-5


def test_warmup_steps_or_ratio(vocab):
    cfg = load_config(None, [f"data.vocab_file={vocab}", "optim.warmup_ratio=0.1", "optim.decay_steps=500"])
    assert cfg.optim.resolved_warmup_steps() == 50
    with pytest.raises(ConfigError, match="optim.warmup_ratio"):
        load_config(None, [f"data.vocab_file={vocab}", "optim.warmup_ratio=0.1", "optim.warmup_steps=5"])


def test_accumulation_is_derived_and_checked(vocab):
    cfg = load_config(None, [f"data.vocab_file={vocab}", "train.micro_batch_size=4", "train.global_batch_size=32"])
    assert cfg.accumulation_steps(1) == 8 and cfg.accumulation_steps(2) == 4 and cfg.accumulation_steps(8) == 1
    with pytest.raises(ConfigError, match=r"train.global_batch_size=32: expected a multiple of .*\(4\) x "
                                          r"data-parallel size \(3\) = 12"):
        cfg.accumulation_steps(3)
    cfg = load_config(None, [f"data.vocab_file={vocab}", "train.micro_batch_size=4"])
    assert cfg.accumulation_steps(3) == 1 and cfg.global_batch_size(3) == 12


def test_vocab_size_from_file_or_given(vocab):
    assert load_config(None, [f"data.vocab_file={vocab}", "model.vocab_size=128"]).model.vocab_size == 128
    with pytest.raises(ConfigError, match="model.vocab_size is not given and data.vocab_file='/nope/vocab.txt'"):
        load_config(None, ["data.vocab_file=/nope/vocab.txt"])


def test_bad_override_syntax_and_missing_file():
    with pytest.raises(ConfigError, match="expected key.path=value"):
        load_config(None, ["train.max_steps"])
    with pytest.raises(ConfigError, match="file not found"):
        load_config("/nope/config.yaml")


FINETUNE_CONFIGS = sorted(glob.glob(os.path.join(REPO, "configs", "finetune", "*.yaml")))


def test_there_is_a_finetune_config_per_task():
    from ernie_style.tasks import finetune_task_names

    assert sorted(os.path.basename(c)[:-5] for c in FINETUNE_CONFIGS) == sorted(finetune_task_names())


@pytest.mark.parametrize("path", FINETUNE_CONFIGS, ids=os.path.basename)
def test_every_shipped_finetune_config_loads(path, vocab):
    from ernie_style.config.finetune import load_finetune_config

    cfg = load_finetune_config(path)
    assert cfg.task.type == os.path.basename(path)[:-5]
    assert cfg.optim.warmup_ratio == 0.1 and cfg.train.eval_every == 0
    assert "task:" in cfg.to_yaml()
    rnd = load_finetune_config(path, ["model.init=random", f"data.vocab_file={vocab}", "model.hidden_size=64"])
    assert rnd.model.overrides() == {"hidden_size": 64}


def test_finetune_config_errors(vocab):
    from ernie_style.config.finetune import load_finetune_config

    path = FINETUNE_CONFIGS[0]
    with pytest.raises(ConfigError, match=r"unknown config key 'train\.epoch'; did you mean 'train\.epochs'\?"):
        load_finetune_config(path, ["train.epoch=3"])
    with pytest.raises(ConfigError, match=r"model\.hidden_size=64: expected no architecture keys with model\.init="):
        load_finetune_config(path, ["model.hidden_size=64"])
    with pytest.raises(ConfigError, match=r"data\.vocab_file=.*model\.init=random"):
        load_finetune_config(path, ["model.init=random"])
    with pytest.raises(ConfigError, match=r"task\.type='ner2': expected seq_cls \| pair_cls \| ner \| qa"):
        load_finetune_config(path, ["task.type=ner2"])


def _float_keys(root, sections, model_class=None):
    """Every dotted key of ``root`` whose field is typed float or Optional[float] (``model.*`` from
    ``model_class`` when given: the pretraining tree's model section is the architecture's config class)."""
    import dataclasses
    import typing

    hints = typing.get_type_hints(root)
    keys = []
    for section in sections:
        cls = model_class if section == "model" and model_class else hints[section]
        for name, tp in typing.get_type_hints(cls).items():
            if name in {f.name for f in dataclasses.fields(cls) if f.init} and float in (tp, *typing.get_args(tp)):
                keys.append(f"{section}.{name}")
    return keys


def _pretrain_float_keys():
    from ernie_style.config.pretrain import SECTIONS, PretrainConfig

    return _float_keys(PretrainConfig, SECTIONS, RoFormerConfig)


def _finetune_float_keys():
    from ernie_style.config.finetune import SECTIONS, FinetuneConfig

    return _float_keys(FinetuneConfig, SECTIONS)


def test_the_float_settings_are_found():
    pre, ft = _pretrain_float_keys(), _finetune_float_keys()
    assert {"optim.max_lr", "optim.min_lr", "model.layer_norm_eps", "dist.timeout_minutes",
            "amp.init_loss_scaling", "data.masked_lm_prob"} <= set(pre)
    assert {"optim.max_lr", "train.epochs", "model.initializer_range", "model.hidden_dropout_prob"} <= set(ft)


# YAML reads .inf/.nan as floats and float() reads "inf" and "1e999": each is refused at load, naming the key
# (an infinite optim.max_lr used to pass `max_lr > 0` and end the run at step 2).
@pytest.mark.parametrize("value", [".inf", "-.inf", ".nan", "1e999"])
@pytest.mark.parametrize("key", _pretrain_float_keys())
def test_every_pretraining_float_setting_must_be_finite(key, value, vocab):
    with pytest.raises(ConfigError) as e:
        load_config(None, [f"data.vocab_file={vocab}", f"{key}={value}"])
    shown = {".inf": "inf", "-.inf": "-inf", ".nan": "nan", "1e999": "'1e999'"}[value]
    assert str(e.value).startswith(f"{key}={shown}: expected a finite number")


@pytest.mark.parametrize("value", [".inf", ".nan"])
@pytest.mark.parametrize("key", _finetune_float_keys())
def test_every_finetune_float_setting_must_be_finite(key, value, vocab):
    from ernie_style.config.finetune import load_finetune_config

    with pytest.raises(ConfigError) as e:
        load_finetune_config(FINETUNE_CONFIGS[0], ["model.init=random", f"data.vocab_file={vocab}",
                                                   f"{key}={value}"])
    assert str(e.value).startswith(f"{key}={value.lstrip('.')}: expected a finite number")


def test_hfl_recipe_numbers(vocab):
    """Issue 18 point 10: the numbers of HFL's BERT-wwm-ext (both stages: train.phases) and RoBERTa-wwm-ext
    (docs/reference_recipe.md) as the two configs give them."""
    bert = load_config(os.path.join(REPO, "configs", "bert_wwm_ext_base.yaml"), [f"data.vocab_file={vocab}"])
    assert (bert.model_arch, bert.optim.name, bert.data.max_seq_len, bert.train.global_batch_size,
            bert.train.max_steps, bert.data.binary_head) == ("bert", "lamb", 128, 2560, 1_400_000, True)
    # stage 1: 1M steps at seq 128, batch 2,560; stage 2: 400k steps at seq 512, batch 384, from stage 1's weights
    assert bert.train.phases == [{"until_step": 1_000_000},
                                 {"until_step": 1_400_000, "data.max_seq_len": 512, "train.global_batch_size": 384,
                                  "train.micro_batch_size": 24, "optim.max_lr": 1e-4, "optim.warmup_steps": 4000}]
    assert bert.optim.decay_steps == 1_400_000 and bert.optim.resolved_warmup_steps() == 10_000
    assert bert.global_batch_size(4) == 2560 and bert.accumulation_steps(4) == 4  # 160 x 4 GPUs x 4
    rob = load_config(os.path.join(REPO, "configs", "roberta_wwm_ext_base.yaml"), [f"data.vocab_file={vocab}"])
    assert (rob.model_arch, rob.optim.name, rob.data.max_seq_len, rob.train.global_batch_size,
            rob.train.max_steps, rob.data.binary_head) == ("bert", "adamw", 512, 384, 1_000_000, False)
    for cfg in (bert, rob):
        assert (cfg.model.hidden_size, cfg.model.num_hidden_layers, cfg.model.max_position_embeddings) == (768, 12, 512)
        assert cfg.data.masking == "wwm_ngram" and cfg.data.max_ngrams == 1  # whole words, as HFL's WWM


def test_hfl_bert_wwm_ext_passes_the_launch_check_with_its_two_stages(tmp_path, capsys):
    """``run_pretrain.sh``'s check of configs/bert_wwm_ext_base.yaml as shipped (only data and output given) for the
    4 GPUs it is written for: both stages' batches divide over them, stage 2's 512 fits the positions; 3 GPUs are
    refused, naming the phase."""
    import _trainer_util as U
    from ernie_style import run_pretrain

    prefix, vocab = U.make_data(str(tmp_path / "d"))
    args = ["--config", os.path.join(REPO, "configs", "bert_wwm_ext_base.yaml"), f"data.prefixes=[{prefix}]",
            f"data.vocab_file={vocab}", "data.split=90,5,5", f"train.output_dir={tmp_path / 'out'}",
            "train.resume=none", "--check"]
    assert run_pretrain.main([*args, "--world-size", "4"]) == 0
    capsys.readouterr()
    assert run_pretrain.main([*args, "--world-size", "3"]) == 2
    assert "train.phases: phase 1: train.global_batch_size=2560: expected a multiple" in capsys.readouterr().err
