"""export/ for fine-tuned models: our best_model dir -> transformers RoFormerFor{SequenceClassification,
TokenClassification,QuestionAnswering} and back, proved with task logits.

The Paddle side of each comparison is built here from our RoFormerModel + plain paddle Linear heads (the math
of the fine-tuned layout in docs/export.md), not from export/verify.py; transformers is the other reference.
Both run in float64 (weights upcast exactly), so a correct export agrees to float64 noise on any CPU.
Budget: < 60 s.
"""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import paddle
import pytest
import torch
import transformers

import _export_util as U
from _trainer_util import REPO
from ernie_style.arch.model_reader import read_checkpoint
from ernie_style.arch.state_dict_adapter import SIDE_FILE
from ernie_style.storage.safetensors_io import read_safetensors
from export import from_pytorch, to_pytorch

LABELS = {"seq_cls": ["neg", "pos", "mid"], "pair_cls": ["same", "different"], "ner": ["O", "B-PER", "I-PER", "B-LOC",
                                                                                        "I-LOC"], "qa": None}
HF_CLASS = {"seq_cls": "RoFormerForSequenceClassification", "pair_cls": "RoFormerForSequenceClassification",
            "ner": "RoFormerForTokenClassification", "qa": "RoFormerForQuestionAnswering"}
BERT_HF_CLASS = {"seq_cls": "BertForSequenceClassification", "pair_cls": "BertForSequenceClassification",
                 "ner": "BertForTokenClassification", "qa": "BertForQuestionAnswering"}


class TaskModelLogits(paddle.nn.Layer):
    """``ernie_style.tasks.heads``' model of a task with logits as ``Reference`` gives them (qa: [B, T, 2])."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, ids, types, mask):
        out = self.model(ids, types, mask)
        return paddle.stack(out, axis=-1) if isinstance(out, (tuple, list)) else out


def write_finetuned_bert(path, task, labels=LABELS, seed=0):
    """A fine-tuned BERT model dir (the task model of ernie_style.tasks.heads, random O(0.1) weights); returns (dir,
    a Paddle model giving its logits).  The reference is transformers itself (its BertFor* classes)."""
    from ernie_style.arch.bert.config import BertConfig
    from ernie_style.tasks.heads import build_task_model

    cfg = U.tiny_bert_config()
    labels = labels[task] if isinstance(labels, dict) else labels
    model = build_task_model(BertConfig.from_dict({k: v for k, v in cfg.items() if k != "arch"}), task,
                             2 if task == "qa" else len(labels))
    _write_task_dir(path, cfg, task, labels, _randomize(model, seed))
    return str(path), TaskModelLogits(model)


class Reference(paddle.nn.Layer):
    """Our encoder + the task head as plain Linear layers, named as the fine-tuned layout names them."""

    def __init__(self, config: dict, task: str, num_labels: int):
        from ernie_style.arch.roformer.modeling import RoFormerConfig, RoFormerModel

        super().__init__()
        self.task = task
        H = config["hidden_size"]
        self.roformer = RoFormerModel(RoFormerConfig.from_dict(config))
        if task in ("seq_cls", "pair_cls"):
            self.classifier = paddle.nn.Layer()
            self.classifier.dense = paddle.nn.Linear(H, H)
            self.classifier.out_proj = paddle.nn.Linear(H, num_labels)
        elif task == "ner":
            self.classifier = paddle.nn.Linear(H, num_labels)
        else:
            self.qa_outputs = paddle.nn.Linear(H, 2)

    def forward(self, ids, types, mask):
        h, _ = self.roformer(ids, types, mask)  # (B, T, H)
        if self.task == "qa":
            return self.qa_outputs(h)  # (B, T, 2)
        if self.task == "ner":
            return self.classifier(h)  # (B, T, C)
        x = paddle.nn.functional.gelu(self.classifier.dense(h[:, 0]), approximate=False)
        return self.classifier.out_proj(x)  # (B, C)


def _randomize(model: paddle.nn.Layer, seed: int) -> dict:
    """O(0.1) random values in every parameter (LayerNorm weights around 1); returns the numpy state dict."""
    rng = np.random.default_rng(seed)
    state = {}
    for name, p in model.state_dict().items():
        a = rng.normal(0.0, 0.1, size=p.shape) + (1.0 if "norm" in name and name.endswith("weight") else 0.0)
        state[name] = a.astype(np.float32)
    model.set_state_dict(state)
    model.eval()
    return state


def write_finetuned(path, task, labels=LABELS, seed=0, **cfg_overrides):
    """A fine-tuned model dir in the contract's layout; returns (dir, reference Paddle model)."""
    cfg = U.tiny_config(**cfg_overrides)
    labels = labels[task] if isinstance(labels, dict) else labels
    model = Reference(cfg, task, 2 if task == "qa" else len(labels))
    _write_task_dir(path, cfg, task, labels, _randomize(model, seed))
    return str(path), model


def _write_task_dir(path, cfg: dict, task: str, labels, state: dict) -> None:
    """The files of a fine-tuned model dir (best_model's layout) around the weights ``state``."""
    from ernie_style.storage.pdparams import save_pdparams

    U.write_checkpoint(path, cfg, {})  # model_config.json, vocab.txt, tokenizer_config.json
    save_pdparams(os.path.join(path, "model_state.pdparams"), state)
    os.remove(os.path.join(path, "tokenizer_config.json"))  # a best_model dir keeps do_lower_case in config.json
    task_cfg = {"task": task, "do_lower_case": True, "max_seq_len": 48, "init": "random"}
    if labels is not None:
        task_cfg["id2label"] = {str(i): lab for i, lab in enumerate(labels)}
        task_cfg["label2id"] = {lab: i for i, lab in enumerate(labels)}
    with open(os.path.join(path, "config.json"), "w", encoding="utf-8") as f:
        json.dump(task_cfg, f)


def probe(cfg, seed=1):
    """Padded batch, two segments: int64 ids/types, float32 mask, [3, 40]."""
    rng = np.random.default_rng(seed)
    ids = np.zeros((3, 40), dtype=np.int64)
    types, mask = np.zeros_like(ids), np.zeros((3, 40), dtype=np.float32)
    for r, n in enumerate([40, 17, 4]):
        ids[r, :n] = rng.integers(5, cfg["vocab_size"], size=n)
        types[r, n // 2:n] = 1
        mask[r, :n] = 1
    return ids, types, mask


def hf_logits(hf_dir, task, ids, types, mask):
    """float64 logits of the transformers class loaded from ``hf_dir``."""
    model = getattr(transformers, HF_CLASS[task]).from_pretrained(hf_dir).double().eval()
    with torch.no_grad():
        out = model(input_ids=torch.from_numpy(ids), token_type_ids=torch.from_numpy(types),
                    attention_mask=torch.from_numpy(mask))
    if task == "qa":
        return torch.stack([out.start_logits, out.end_logits], -1).numpy()
    return out.logits.numpy()


def paddle_logits(model, ids, types, mask):
    """float64 logits of the reference ``model`` (cast to float64 in place: its weights upcast exactly)."""
    model.to(dtype="float64")
    with paddle.no_grad():
        return model(paddle.to_tensor(ids), paddle.to_tensor(types), paddle.to_tensor(mask)).numpy()


def _close_where_real(a, b, mask, task):
    from export.verify import compare

    cmp = compare(a, b, np.ones(len(mask)) if task in ("seq_cls", "pair_cls") else mask)
    assert cmp.diff < 1e-9 and cmp.ok, cmp  # float64 noise only


@pytest.mark.parametrize("task", ["seq_cls", "pair_cls", "ner", "qa"])
def test_export_loads_in_the_hf_task_class_with_equal_logits(task, tmp_path, capsys):
    src, ref = write_finetuned(tmp_path / "best_model", task, seed=list(LABELS).index(task))
    out = tmp_path / "hf"
    assert to_pytorch.main([src, str(out), "--verify"]) == 0
    printed = capsys.readouterr().out
    diff, tol = U.verify_line(printed, f"{task} logits(paddle) - {task} logits(transformers)")
    assert diff < 1e-9 and tol >= 1e-6
    model, info = getattr(transformers, HF_CLASS[task]).from_pretrained(out, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["architectures"] == [HF_CLASS[task]] and cfg["finetuning_task"] == task
    if LABELS[task] is not None:
        assert model.config.id2label == dict(enumerate(LABELS[task]))
        assert model.config.label2id == {lab: i for i, lab in enumerate(LABELS[task])}
        assert model.config.num_labels == len(LABELS[task])
    ids, types, mask = probe(U.tiny_config())
    _close_where_real(hf_logits(out, task, ids, types, mask), paddle_logits(ref, ids, types, mask), mask, task)
    # The pooler has no place in transformers' RoFormerModel: it travels in the side file, torch layout.
    side = read_safetensors(out / SIDE_FILE)[0]
    assert set(side) == {"roformer.pooler.dense.weight", "roformer.pooler.dense.bias"}
    np.testing.assert_array_equal(side["roformer.pooler.dense.weight"],
                                  ref.roformer.pooler.dense.weight.numpy().T)
    tok = transformers.AutoTokenizer.from_pretrained(out)
    assert tok.model_max_length == 48  # the fine-tuned max_seq_len


@pytest.mark.parametrize("task", ["seq_cls", "ner", "qa"])
def test_verify_refuses_a_wrong_name_map_for_a_task_model(task, tmp_path, capsys, monkeypatch):
    """An encoder weight left untransposed, or the head's (seq_cls: classifier.dense [H, H]), is caught."""
    src, _ = write_finetuned(tmp_path / "best_model", task, seed=3)
    rows = U.NOT_TRANSPOSED if task != "seq_cls" else [("classifier.dense.weight", "classifier.dense.weight", False,
                                                       "main")]
    U.wrong_name_map(monkeypatch, rows)
    out = str(tmp_path / "hf")
    U.assert_refused(to_pytorch.main([src, out, "--verify"]), capsys.readouterr(), out,
                   f"{task} logits(paddle) - {task} logits(transformers)")


def test_factorized_embeddings_and_roundtrip_back_to_our_layout(tmp_path, capsys):
    """embedding_size != hidden_size; HF -> our fine-tuned dir -> HF is bit-identical, config.json carried."""
    src, ref = write_finetuned(tmp_path / "best_model", "ner", embedding_size=16)
    hf = tmp_path / "hf"
    assert to_pytorch.main([src, str(hf)]) == 0
    back = tmp_path / "back"
    assert from_pytorch.main([str(hf), str(back), "--verify"]) == 0
    assert U.verify_line(capsys.readouterr().out, "logits(transformers) - logits(paddle)")[0] < 1e-9
    a, b = read_checkpoint(src), read_checkpoint(back)
    assert (b.task, b.labels, b.max_seq_len, b.do_lower_case) == ("ner", LABELS["ner"], 48, True)
    assert set(a.state) == set(b.state) and all(np.array_equal(a.state[k], b.state[k]) for k in a.state)
    assert a.vocab == b.vocab
    again = tmp_path / "again"
    assert to_pytorch.main([str(back), str(again)]) == 0
    x, y = read_safetensors(hf / "model.safetensors")[0], read_safetensors(again / "model.safetensors")[0]
    assert set(x) == set(y) and all(np.array_equal(x[k], y[k]) for k in x)


def test_from_a_transformers_trained_classifier(tmp_path, capsys):
    """A classifier saved by transformers itself (no pooler, no finetuning_task) imports as seq_cls; --task
    pair_cls overrides; the fresh pooler is reported; logits agree with transformers."""
    cfg = U.tiny_config()
    hf_cfg = transformers.RoFormerConfig(**cfg, num_labels=4, id2label={0: "a", 1: "b", 2: "c", 3: "d"})
    torch.manual_seed(0)
    model = transformers.RoFormerForSequenceClassification(hf_cfg)
    src = tmp_path / "hf_native"
    model.save_pretrained(src)
    (src / "vocab.txt").write_text("".join(t + "\n" for t in U.VOCAB), encoding="utf-8")
    out = tmp_path / "ours"
    assert from_pytorch.main([str(src), str(out), "--task", "pair_cls", "--verify"]) == 0
    printed = capsys.readouterr().out
    assert "initialised roformer.pooler.dense.weight" in printed and "verify: max" in printed
    got = read_checkpoint(out)
    assert got.task == "pair_cls" and got.labels == ["a", "b", "c", "d"]
    with open(out / "config.json", encoding="utf-8") as f:
        assert json.load(f)["init"] == str(src)


# ---------------------------------------------------------------------------------------------- bad inputs


def _edit_json(path, **changes):
    with open(path, encoding="utf-8") as f:
        d = json.load(f)
    for k, v in changes.items():
        if v is None:
            d.pop(k, None)
        else:
            d[k] = v
    with open(path, "w", encoding="utf-8") as f:
        json.dump(d, f)


def _unknown_task(d):
    _edit_json(os.path.join(d, "config.json"), task="regression")
    return "config.json: task is 'regression', expected one of seq_cls, pair_cls, ner, qa"


def _missing_id2label(d):
    _edit_json(os.path.join(d, "config.json"), id2label=None, label2id=None)
    return "config.json: id2label is None, expected a non-empty object"


def _id2label_gap(d):
    _edit_json(os.path.join(d, "config.json"), id2label={"0": "neg", "2": "pos", "3": "mid"}, label2id=None)
    return "config.json: id2label keys are ['0', '2', '3'], expected \"0\"..\"2\""


def _head_shape(d):
    _edit_json(os.path.join(d, "config.json"), id2label={"0": "neg", "1": "pos"}, label2id=None)
    return ("model_state.pdparams: classifier.out_proj.weight has shape [32, 3], expected [32, 2] "
            "(hidden_size 32, 2 labels in config.json id2label)")


def _pretraining_state(d):
    from ernie_style.storage.pdparams import save_pdparams

    save_pdparams(os.path.join(d, "model_state.pdparams"), U.random_state(U.tiny_config()))
    return "model_state.pdparams: missing 4 parameter(s) for task 'seq_cls' with this model_config"


@pytest.mark.parametrize("breaker", [_unknown_task, _missing_id2label, _id2label_gap, _head_shape, _pretraining_state])
def test_bad_finetuned_dir_one_line_exit_2_no_output(tmp_path, capsys, breaker):
    src, _ = write_finetuned(tmp_path / "best_model", "seq_cls")
    want = breaker(src)
    out = tmp_path / "hf"
    assert to_pytorch.main([src, str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and want in err, err
    assert not out.exists() and not [p for p in os.listdir(tmp_path) if p.startswith(".hf")]


def test_cli_bad_task_dir_no_traceback(tmp_path):
    src, _ = write_finetuned(tmp_path / "best_model", "qa")
    _edit_json(os.path.join(src, "config.json"), task="Qa")
    r = subprocess.run([sys.executable, "-m", "export.to_pytorch", src, str(tmp_path / "hf")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().endswith("task is 'Qa', expected one of seq_cls, pair_cls, ner, qa"), r.stderr


def test_finetuned_export_without_paddle_or_torch(tmp_path):
    src, _ = write_finetuned(tmp_path / "best_model", "qa")
    code = f"""
import sys
for m in ("paddle", "paddlenlp", "torch", "transformers"):
    sys.modules[m] = None
from export import to_pytorch
assert to_pytorch.main([{src!r}, {str(tmp_path / 'hf')!r}, "--verify"]) == 0
assert not [m for m in ("ernie_style.arch.roformer.modeling", "ernie_style.training.trainer") if m in sys.modules]
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "verification skipped: paddle not importable" in r.stdout
    cfg = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert cfg["architectures"] == ["RoFormerForQuestionAnswering"] and "id2label" not in cfg


def test_to_paddlenlp_refuses_a_fine_tuned_model(tmp_path, capsys):
    from export import to_paddlenlp

    src, _ = write_finetuned(tmp_path / "best_model", "ner")
    assert to_paddlenlp.main([src, str(tmp_path / "pnlp")]) == 2
    assert "a fine-tuned ner model; to_paddlenlp writes RoFormerForMaskedLM" in capsys.readouterr().err
    assert not (tmp_path / "pnlp").exists()


# ---------------------------------------------------------------------------------------------- a fine-tuning run dir


@pytest.fixture(scope="module")
def ft_run(tmp_path_factory):
    """The output dir of a real (tiny) seq_cls fine-tuning run: checkpoints/, best_model/, results.json."""
    import _finetune_util as F
    from ernie_style import finetune

    root = tmp_path_factory.mktemp("ft_run")
    f = F.seq_files(str(root / "data"), n_train=32, n_dev=8)
    over = F.tiny_overrides(str(root / "run"), f["train"], f["dev"], f["vocab"], **{"train.epochs": 1})
    assert finetune.main([os.path.join(REPO, "configs", "finetune", "seq_cls.yaml"), *over]) == 0
    return root / "run"


def test_a_fine_tuning_run_dir_exports_its_best_model(ft_run, tmp_path, capsys):
    """Issue 16 point 8: the run dir stands for best_model/ (its checkpoints/ hold no labels), and says so."""
    out = tmp_path / "hf"
    assert to_pytorch.main([str(ft_run), str(out), "--verify"]) == 0
    printed = capsys.readouterr().out
    best_step = json.loads((ft_run / "results.json").read_text())["best_step"]
    assert (f"note: {ft_run} is a fine-tuning run: exporting its best model, {ft_run / 'best_model'} "
            f"(best on dev at step {best_step}, as results.json reports)") in printed
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["architectures"] == ["RoFormerForSequenceClassification"]
    assert cfg["ernie_style_source"]["checkpoint"] == os.path.realpath(ft_run / "best_model")
    assert U.verify_line(printed, "seq_cls logits(paddle) - seq_cls logits(transformers)")[0] < 1e-9


def test_a_fine_tuning_runs_checkpoint_or_a_run_without_best_model_names_what_to_export(ft_run, tmp_path, capsys):
    latest = ft_run / "checkpoints" / "latest"
    assert to_pytorch.main([str(latest), str(tmp_path / "hf")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "a training checkpoint of a fine-tuning run (task seq_cls)" in err, err
    assert err.strip().endswith(f"export the run's best model, {os.path.realpath(ft_run)}/best_model"), err
    # a run stopped before its first evaluation on dev: no best_model/ (and no results.json) yet
    early = tmp_path / "early"
    os.makedirs(early / "checkpoints")
    step = os.path.basename(os.path.realpath(latest))
    shutil.copytree(latest, early / "checkpoints" / step)
    os.symlink(step, early / "checkpoints" / "latest")
    assert to_pytorch.main([str(early), str(tmp_path / "hf")]) == 2
    err = capsys.readouterr().err
    assert f"{early}: a fine-tuning run without best_model/ yet" in err and err.count("\n") == 1, err
    assert not (tmp_path / "hf").exists()


def test_finetune_report_out_creates_missing_directories(ft_run, tmp_path, capsys):
    """Issue 16 point 8: --out into a directory that does not exist wrote a traceback; an existing directory as
    --out is a one-line error naming a file to give instead."""
    from ernie_style import finetune_report

    table = tmp_path / "reports" / "2024" / "table.md"
    assert finetune_report.main([str(ft_run), "--out", str(table)]) == 0
    assert f"wrote {table}" in capsys.readouterr().out
    assert table.read_text(encoding="utf-8").startswith("| model |")
    assert finetune_report.main([str(ft_run), "--out", str(tmp_path / "reports")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"--out {tmp_path / 'reports'}: a directory; give the table's file name" in err


def test_an_unsupported_model_type_is_named_with_what_is_supported(tmp_path, capsys):
    """Issue 16 point 4: a Hugging Face dir of an unregistered architecture given as model.init (or to
    from_pytorch) names its model_type and what is supported (since issue 18, 'bert' is one of them)."""
    from ernie_style.config.pretrain import ConfigError
    from ernie_style.config.finetune import load_finetune_config
    from ernie_style.tasks.finetuning import resolve_init

    cfg = U.tiny_config()
    bert = tmp_path / "bert"
    arch = {k: cfg[k] for k in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                                "intermediate_size")}
    transformers.BertForMaskedLM(transformers.BertConfig(**arch)).save_pretrained(bert)
    conf = json.loads((bert / "config.json").read_text())
    (bert / "config.json").write_text(json.dumps({**conf, "model_type": "albert"}))
    (bert / "vocab.txt").write_text("".join(t + "\n" for t in U.VOCAB), encoding="utf-8")
    config = load_finetune_config(os.path.join(REPO, "configs", "finetune", "seq_cls.yaml"),
                                  [f"model.init={bert}", f"data.vocab_file={bert / 'vocab.txt'}"])
    with pytest.raises(ConfigError) as e:
        resolve_init(config)
    assert str(e.value) == (f"model.init={str(bert)!r}: {bert} holds a Hugging Face config.json with model_type "
                            "'albert'; supported: our checkpoint or model dir (model_config.json) or a Hugging Face "
                            "dir (config.json with model_type 'roformer' or 'bert')")
    assert from_pytorch.main([str(bert), str(tmp_path / "out")]) == 2
    assert "config.json: model_type is 'albert', expected 'roformer' or 'bert'" in capsys.readouterr().err
