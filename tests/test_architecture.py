"""Issue 11: one owner per concept (model config, architecture registry, constants) and the seams."""
import dataclasses
import os
import subprocess
import sys
import textwrap

import pytest

from ernie_style.arch import ARCHS, get_arch
from ernie_style.arch.roformer.config import RoFormerConfig

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run_without_paddle(code: str) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter where importing paddle (or paddlenlp) raises ImportError."""
    blocker = textwrap.dedent("""
        import sys
        class _Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("paddle", "paddlenlp"):
                    raise ImportError("paddle is blocked in this test")
        sys.meta_path.insert(0, _Block())
    """)
    env = dict(os.environ, PYTHONPATH=REPO)
    return subprocess.run([sys.executable, "-c", blocker + textwrap.dedent(code)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)


def test_export_field_list_is_the_config_dataclass():
    from ernie_style.arch.model_reader import CONFIG_FIELDS, validate_config

    fields = [f.name for f in dataclasses.fields(RoFormerConfig)]
    assert list(CONFIG_FIELDS) == fields
    written = RoFormerConfig(vocab_size=50, hidden_size=32, num_attention_heads=2).to_dict()
    assert set(written) == set(CONFIG_FIELDS)  # what a checkpoint holds is exactly what export reads
    assert validate_config(written, "model_config.json") == written
    # A field added to the config would appear in export's list without editing export.
    Extended = dataclasses.make_dataclass("Extended", [("new_knob", int, dataclasses.field(default=3))],
                                          bases=(RoFormerConfig,))
    from ernie_style.arch.roformer.config import field_types

    assert field_types(Extended)["new_knob"] is int


def test_export_and_the_config_import_without_paddle():
    p = _run_without_paddle("""
        import sys
        import ernie_style.storage.model_dir, export.to_pytorch, export.from_pytorch, export.to_paddlenlp
        import ernie_style.arch.state_dict_adapter
        from ernie_style.arch import get_arch
        from ernie_style.arch.spec import resolve
        spec = get_arch("roformer")
        cfg = spec.config_class()(vocab_size=10, hidden_size=8, num_attention_heads=2)
        # the converters are driven by the spec's name map (the one map, in the architecture's package)
        assert len(ernie_style.arch.state_dict_adapter._rules(spec.name_map)[0]) == len(resolve(spec.name_map))
        from ernie_style.config.pretrain import load_config
        import ernie_style.constants
        assert "paddle" not in sys.modules
        print("ok", cfg.head_dim)
    """)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["ok", "4"]
    # and the blocker works: the model itself needs paddle
    p = _run_without_paddle("import ernie_style.arch.roformer.modeling")
    assert p.returncode != 0 and "paddle is blocked" in p.stderr


def test_arch_registry_selects_the_model_and_its_parts():
    from ernie_style.arch.roformer import modeling
    from ernie_style.arch.roformer import paddlenlp, state_dict_adapter
    from ernie_style.arch.spec import resolve

    assert list(ARCHS) == ["roformer", "bert"]
    spec = get_arch("roformer")
    assert spec.config_class() is RoFormerConfig is modeling.RoFormerConfig  # the old import path still works
    assert spec.pretraining_model_class() is modeling.RoFormerForPretraining
    assert spec.base_model_class() is modeling.RoFormerModel
    assert resolve(spec.name_map) is state_dict_adapter.NAME_MAP
    assert resolve(spec.load_state_dict) is paddlenlp.load_state_dict_checked
    assert resolve(spec.paddlenlp_config)({"vocab_size": 9, "hidden_size": 8, "num_attention_heads": 2,
                                           "model_type": "roformer", "pool_act": "tanh"}).vocab_size == 9
    with pytest.raises(ValueError, match=r"model.arch='gpt': expected one of bert, roformer"):
        get_arch("gpt")


def test_model_arch_in_the_config(tmp_path):
    from ernie_style.config.pretrain import ConfigError, load_config

    vocab = tmp_path / "vocab.txt"
    vocab.write_text("".join(t + "\n" for t in ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "b"]))
    base = [f"data.vocab_file={vocab}", "model.hidden_size=32", "model.num_attention_heads=2",
            "model.intermediate_size=64", "model.num_hidden_layers=2"]
    default = load_config(None, base)
    explicit = load_config(None, base + ["model.arch=roformer"])
    assert default.model_arch == explicit.model_arch == "roformer"
    # The default is not written: trainer_state.json's config (and so checkpoints) stay as they were.
    assert "arch" not in default.to_dict()["model"] and default.to_dict() == explicit.to_dict()
    with pytest.raises(ConfigError, match=r"^model.arch='gpt': expected one of bert, roformer$"):
        load_config(None, base + ["model.arch=gpt"])
    with pytest.raises(ConfigError, match=r"model.hiden_size"):
        load_config(None, base + ["model.hiden_size=3"])


def test_constants_are_defined_once():
    """IGNORE_INDEX, the checkpoint file names and the special tokens have one definition in the tree."""
    import re

    patterns = {
        "IGNORE_INDEX": re.compile(r"^\s*IGNORE_INDEX\s*=", re.M),
        "file names": re.compile(r"^\s*\w+\s*=\s*\"(model_state\.pdparams|model_config\.json|checksums\.json|"
                                 r"trainer_state\.json)\"", re.M),
        "special tokens": re.compile(r"=\s*\(\s*\"\[PAD\]\"", re.M),
    }
    found = {k: [] for k in patterns}
    for root in ("ernie_style", "export", "data_tools"):
        for d, _, files in os.walk(os.path.join(REPO, root)):
            for name in files:
                if name.endswith(".py"):
                    path = os.path.join(d, name)
                    text = open(path, encoding="utf-8").read()
                    for k, rx in patterns.items():
                        found[k] += [os.path.relpath(path, REPO)] * len(rx.findall(text))
    assert found["IGNORE_INDEX"] == ["ernie_style/constants.py"]
    assert sorted(found["file names"]) == ["ernie_style/constants.py"] * 4
    assert found["special tokens"] == []  # SPECIAL_TOKENS is built from the named constants in data_tools/vocab.py


def test_file_names_come_from_the_constants_module_only():
    """A file name of constants.py (vocab.txt, tokenizer_config.json, optimizer.pdopt, config.json, ...) is written
    nowhere else as a string literal: not in assignments only, anywhere in ernie_style/ and export/."""
    import ast

    from ernie_style import constants

    names = {v: k for k, v in vars(constants).items() if k.isupper() and isinstance(v, str)}
    assert {"vocab.txt", "tokenizer_config.json", "optimizer.pdopt", "model_config.json", "config.json"} <= set(names)
    found = []
    for root in ("ernie_style", "export"):
        for d, _, files in os.walk(os.path.join(REPO, root)):
            for name in files:
                path = os.path.join(d, name)
                if not name.endswith(".py") or path == constants.__file__:
                    continue
                for node in ast.walk(ast.parse(open(path, encoding="utf-8").read())):
                    if isinstance(node, ast.Constant) and node.value in names:
                        found.append(f"{os.path.relpath(path, REPO)}:{node.lineno}: {node.value!r} "
                                     f"(ernie_style.constants.{names[node.value]})")
    assert not found, "\n".join(found)


def test_weight_decay_by_rank_is_the_old_name_rule_for_every_model():
    """Decay is decided by ``p.ndim >= 2``; for today's models that is exactly the set the old rule (no decay for
    names containing "bias" or "norm") chose: pretraining (with embeddings_project) and every fine-tuning head."""
    from ernie_style.tasks import heads
    from ernie_style.arch.roformer.modeling import RoFormerForPretraining
    from ernie_style.training.optim import decay_param_names

    cfg = RoFormerConfig(vocab_size=40, embedding_size=16, hidden_size=32, num_hidden_layers=2,
                         num_attention_heads=2, intermediate_size=64)
    models = [RoFormerForPretraining(cfg), heads.build_task_model(cfg, "seq_cls", 3),
              heads.build_task_model(cfg, "ner", 5), heads.build_task_model(cfg, "qa")]
    for model in models:
        named = dict(model.named_parameters())
        old_rule = {p.name for n, p in named.items() if "bias" not in n.lower() and "norm" not in n.lower()}
        assert decay_param_names(model) == old_rule, type(model).__name__
        decayed = {n for n, p in named.items() if p.name in old_rule}
        assert "roformer.embeddings_project.weight" in decayed and "roformer.embeddings.layer_norm.weight" not in decayed


# ---------------------------------------------------------------------------------------------------------------
# One CLI wrapper: user errors are one line + exit 2, bugs show their traceback


def test_run_cli_separates_user_errors_from_bugs(capsys):
    from data_tools.io_utils import EXIT_USER_ERROR, UserError, run_cli
    from ernie_style.training.checkpoint import CheckpointError
    from ernie_style.config.pretrain import ConfigError
    from ernie_style.downstream.common import DataError
    from data_tools.vocab import VocabError
    from export.errors import ExportError

    for cls in (UserError, ConfigError, CheckpointError, ExportError, DataError, VocabError):
        def body(cls=cls):
            raise cls(f"{cls.__name__}: what, where, expected")

        assert run_cli(body) == EXIT_USER_ERROR
        assert capsys.readouterr().err == f"error: {cls.__name__}: what, where, expected\n"
    assert run_cli(lambda: None) == 0 and run_cli(lambda: 3) == 3
    with pytest.raises(ValueError, match="a bug"):  # a ValueError that is not a user error is not hidden
        run_cli(lambda: (_ for _ in ()).throw(ValueError("a bug")))
    with pytest.raises(OSError):
        run_cli(lambda: open("/nonexistent/x"), io_errors=False)
    assert run_cli(lambda: open("/nonexistent/x")) == EXIT_USER_ERROR


def test_run_pretrain_user_error_is_one_line_and_a_bug_a_traceback(tmp_path, capsys, monkeypatch):
    import _trainer_util as U
    from ernie_style import run_pretrain
    from ernie_style.tasks.pretrain import PretrainTask

    prefix, vocab = U.make_data(str(tmp_path / "data"), n_docs=30)
    config = os.path.join(REPO, "configs", "roformer_tiny_demo.yaml")
    over = U.tiny_overrides(prefix, vocab, str(tmp_path / "out"))
    assert run_pretrain.main(["--config", config, *over, "train.micro_batch_size=3",
                              "train.global_batch_size=8"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: train.global_batch_size=8: expected a multiple") and err.count("\n") == 1

    def buggy_build_model(self):
        raise ValueError("a bug in the model builder")

    monkeypatch.setattr(PretrainTask, "build_model", buggy_build_model)
    with pytest.raises(ValueError, match="a bug in the model builder"):  # before: "error: ..." and exit 2
        run_pretrain.main(["--config", config, *over])


def test_every_cli_entry_point_runs_through_the_one_wrapper():
    entry_points = []
    for root in ("ernie_style", "export", "data_tools"):
        for d, _, files in os.walk(os.path.join(REPO, root)):
            for name in files:
                path = os.path.join(d, name)
                if name == "__main__.py":  # a package's entry: its cli module holds main
                    entry_points.append(os.path.relpath(os.path.join(d, "cli.py"), REPO))
                elif name.endswith(".py") and 'if __name__ == "__main__"' in open(path, encoding="utf-8").read():
                    entry_points.append(os.path.relpath(path, REPO))
    assert len(entry_points) >= 12, entry_points
    for rel in entry_points:
        # demo.py runs the other entry points as subprocesses and reports their exit codes; sample_data/ holds
        # the generators of the shipped sample files (no user input to get wrong).
        if rel == os.path.join("ernie_style", "demo.py") or "sample_data" in rel:
            continue
        calls = _called_names(rel)
        # the training CLIs go through ernie_style/cli.py's run_training, which is run_cli with their shared prologue
        assert calls & {"run_cli", "run_training"}, f"{rel}: its main does not go through run_cli"
    assert "run_cli" in _called_names(os.path.join("ernie_style", "cli.py"))


def _called_names(rel):
    import ast

    tree = ast.parse(open(os.path.join(REPO, rel), encoding="utf-8").read())
    return {n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}


# ---------------------------------------------------------------------------------------------------------------
# Checkpoint layout: one checksum writer, one verify() for the trainer, checkpoint.py and export


def test_one_verifier_for_trainer_checkpoint_and_export(tmp_path):
    import json

    import _export_util as E
    from ernie_style.training import checkpoint as ckpt
    from ernie_style.storage.model_dir import CheckpointError, verify, write_checksums
    from ernie_style.arch.model_reader import read_checkpoint
    from export.errors import ExportError

    def export_error(path):
        with pytest.raises(ExportError) as e:
            read_checkpoint(str(path))
        return str(e.value)

    cfg = E.tiny_config()
    model_dir = tmp_path / "model"
    E.write_checkpoint(model_dir, cfg, E.random_state(cfg))
    # A model dir without checksums.json: every reader accepts it.
    ckpt.verify_model_dir(str(model_dir))
    read_checkpoint(str(model_dir))
    sums = write_checksums(str(model_dir))
    assert json.loads((model_dir / "checksums.json").read_text()) == sums and "model_state.pdparams" in sums
    assert (model_dir / "checksums.json").read_text() == json.dumps(sums, indent=2, sort_keys=True)
    read_checkpoint(str(model_dir))
    # Damaged: the same message from the trainer's check and from export.
    data = bytearray((model_dir / "vocab.txt").read_bytes())
    (model_dir / "vocab.txt").write_bytes(bytes(data[:-3]))
    with pytest.raises(CheckpointError) as trainer_side:
        ckpt.verify_model_dir(str(model_dir))
    assert "file vocab.txt is damaged" in str(trainer_side.value)
    assert export_error(model_dir) == str(trainer_side.value)

    # A training checkpoint (it holds trainer_state.json) without checksums.json: both refuse it.
    step = tmp_path / "checkpoints" / "step_00000003"
    E.write_checkpoint(step, cfg, E.random_state(cfg))
    (step / "trainer_state.json").write_text("{}")
    with pytest.raises(CheckpointError) as trainer_side:
        ckpt.verify(str(step))
    assert "checksums.json missing" in str(trainer_side.value)
    assert export_error(step) == str(trainer_side.value)
    write_checksums(str(step))
    verify(str(step))
    read_checkpoint(str(step))


def test_special_token_literals_live_in_the_vocab_module_only():
    import re

    found = []
    for root in ("ernie_style", "export", "data_tools"):
        for d, _, files in os.walk(os.path.join(REPO, root)):
            for name in files:
                if name.endswith(".py") and "sample_data" not in d:
                    path = os.path.join(d, name)
                    if re.search(r"\"\[(PAD|UNK|CLS|SEP|MASK)\]\"", open(path, encoding="utf-8").read()):
                        found.append(os.path.relpath(path, REPO))
    assert found == [os.path.join("data_tools", "vocab.py")]


# ---------------------------------------------------------------------------------------------------------------
# Test hooks left the production loop: the trainer calls step callbacks, tests drive faults through them


def test_step_callbacks_run_after_each_step_with_its_checkpoint_written(tmp_path):
    import _trainer_util as U
    from ernie_style import run_pretrain

    for d, _, files in os.walk(os.path.join(REPO, "ernie_style")):
        for name in files:
            if name.endswith(".py"):
                assert "ERNIE_DEBUG" not in open(os.path.join(d, name), encoding="utf-8").read(), name
    prefix, vocab = U.make_data(str(tmp_path / "data"), n_docs=30)
    out = tmp_path / "out"
    seen = []

    def record(trainer):
        latest = out / "checkpoints" / "latest"
        seen.append((trainer.step, os.readlink(latest) if os.path.islink(latest) else None))

    over = U.tiny_overrides(prefix, vocab, str(out), **{"train.save_steps": 2})
    config = os.path.join(REPO, "configs", "roformer_tiny_demo.yaml")
    assert run_pretrain.main(["--config", config, *over], step_callbacks=[record]) == 0
    assert seen == [(1, None), (2, "step_00000002"), (3, "step_00000003")]


def test_the_trainer_finds_the_architecture_from_the_model_config():
    from ernie_style.arch import arch_of
    from ernie_style.arch.roformer import paddlenlp

    spec = arch_of(RoFormerConfig(vocab_size=9, hidden_size=8, num_attention_heads=2))
    assert spec.name == "roformer" and spec.load_state_dict_fn() is paddlenlp.load_state_dict_checked
    with pytest.raises(AssertionError, match="no registered architecture"):
        arch_of(object())
