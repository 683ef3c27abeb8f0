"""Issue 18 point 1: everything that differs between architectures comes from the ArchSpec.

No module outside ``ernie_style/arch/<name>/`` names architecture <name>'s classes, its modules or its state-dict
prefix.  The forbidden names are read from the registry (each spec's classes, the classes its package defines, the
transformers/PaddleNLP class names and the prefix), so a newly registered architecture is checked too.  Docstrings
and comments are prose (docs) and are not checked; neither are the registry's own lines naming its packages.
"""
import ast
import dataclasses
import os
import re

import pytest

from ernie_style.arch import all_archs
from ernie_style.arch.spec import ArchSpec, TaskHead

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WALKED = ("ernie_style", "export", "data_tools")
REGISTRY = os.path.join("ernie_style", "arch", "__init__.py")


def _package_dir(spec: ArchSpec) -> str:
    return os.path.join(REPO, "ernie_style", "arch", spec.name)


def forbidden(spec: ArchSpec) -> dict:
    """What names ``spec``'s architecture: {"classes": set, "prefix": str, "module": str}."""
    refs = [spec.config, spec.base_model, spec.pretraining_model, *spec.public]
    classes = {r.split(":")[1] for r in refs}
    classes |= {spec.hf_pretraining_class, spec.paddlenlp_pretraining_class}
    classes |= {h.hf_class for h in spec.task_heads.values()}
    pkg = _package_dir(spec)
    for name in sorted(os.listdir(pkg)) if os.path.isdir(pkg) else []:
        if name.endswith(".py"):
            with open(os.path.join(pkg, name), encoding="utf-8") as f:
                tree = ast.parse(f.read())
            classes |= {n.name for n in ast.walk(tree) if isinstance(n, ast.ClassDef)}
    return {"classes": classes, "prefix": spec.prefix, "module": f"ernie_style.arch.{spec.name}",
            "in_text": re.compile(r"\b(" + "|".join(sorted(map(re.escape, classes))) + r")\b"),
            "prefix_in_text": re.compile(rf"(?<![\w/]){re.escape(spec.prefix)}\.")}


_CACHE = {}


def _forbidden(spec: ArchSpec) -> dict:
    key = repr(spec)  # every field (a spec holds a dict, so it does not hash)
    if key not in _CACHE:
        _CACHE[key] = forbidden(spec)
    return _CACHE[key]


def _docstrings(tree) -> set:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
                ids.add(id(first.value))
    return ids


def _registry_lines(tree) -> set:
    """Constants of the registry's ``DEFAULT_ARCH = ...`` and ``ARCHS = {...}`` (they name the packages)."""
    ids = set()
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) in ("DEFAULT_ARCH", "ARCHS") for t in node.targets):
            ids |= {id(n) for n in ast.walk(node) if isinstance(n, ast.Constant)}
    return ids


def violations(source: str, path: str, specs) -> list:
    """``path:line: what`` for every place ``source`` names one of ``specs``' architectures in code."""
    tree = ast.parse(source)
    skip = _docstrings(tree) | (_registry_lines(tree) if path == REGISTRY else set())
    rules = [_forbidden(s) for s in specs]
    out = []
    for node in ast.walk(tree):
        line = getattr(node, "lineno", 0)
        for r in rules:
            words = set()
            if isinstance(node, ast.Name):
                words = {node.id}
            elif isinstance(node, ast.Attribute):
                words = {node.attr}
            elif isinstance(node, ast.alias):
                words = {node.name.split(".")[-1], node.asname or ""}
                if node.name == r["module"] or node.name.startswith(r["module"] + "."):
                    out.append(f"{path}:{line}: imports {node.name}")
            elif isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                words = {node.name}
            elif isinstance(node, ast.keyword):
                words = {node.arg or ""}
            elif isinstance(node, ast.ImportFrom) and node.module:
                if node.module == r["module"] or node.module.startswith(r["module"] + "."):
                    out.append(f"{path}:{line}: imports from {node.module}")
                elif node.module == "ernie_style.arch" and any(a.name == r["prefix"] for a in node.names):
                    out.append(f"{path}:{line}: imports ernie_style.arch.{r['prefix']}")
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip:
                text = node.value
                hits = sorted(set(r["in_text"].findall(text)))
                if r["prefix_in_text"].search(text):
                    hits.append(f"the state-dict prefix {r['prefix']!r}.")
                if r["module"] in text:
                    hits.append(r["module"])
                if hits:
                    out.append(f"{path}:{line}: string {text[:60]!r} names {', '.join(sorted(hits))}")
            for w in sorted(words & (r["classes"] | {r["prefix"]})):
                out.append(f"{path}:{line}: names {w}")
    return out


def _sources(specs):
    own = {os.path.join("ernie_style", "arch", s.name) + os.sep: s.name for s in specs}
    for top in WALKED:
        for root, dirs, files in os.walk(os.path.join(REPO, top)):
            dirs[:] = sorted(d for d in dirs if not d.startswith((".", "__pycache__")))
            for name in sorted(files):
                if name.endswith(".py"):
                    rel = os.path.relpath(os.path.join(root, name), REPO)
                    home = next((a for d, a in own.items() if rel.startswith(d)), None)
                    yield rel, [s for s in specs if s.name != home]


def test_no_module_outside_an_architecture_names_it():
    specs = all_archs()
    found = []
    for rel, checked in _sources(specs):
        with open(os.path.join(REPO, rel), encoding="utf-8") as f:
            found += violations(f.read(), rel, checked)
    assert not found, "architecture named outside its package (go through the ArchSpec):\n" + "\n".join(found)


def _toy_spec() -> ArchSpec:
    m = "toy_pkg.toy"
    return ArchSpec(name="toyarch", prefix="toyenc", hf_model_type="toy", hf_pretraining_class="ToyForMaskedLM",
                    paddlenlp_pretraining_class="ToyForMaskedLM", paddlenlp_tied={},
                    task_heads={"seq_cls": TaskHead("ToyForSequenceClassification", "pooled")},
                    config=f"{m}:ToyConfig", base_model=f"{m}:ToyModel", pretraining_model=f"{m}:ToyForPretraining",
                    name_map=f"{m}:NAME_MAP", expected_shapes=f"{m}:shapes", hf_config_in=f"{m}:a",
                    hf_config_out=f"{m}:b", hf_derived=f"{m}:c", paddlenlp_config=f"{m}:d", load_state_dict=f"{m}:e",
                    init_weights=f"{m}:f", activations=f"{m}:g")


@pytest.mark.parametrize("code, hit", [
    ("from ernie_style.arch.roformer.modeling import RoFormerModel\n", "imports from ernie_style.arch.roformer"),
    ("from ernie_style.arch import roformer\n", "imports ernie_style.arch.roformer"),
    ("layers = model.roformer.encoder.layers\n", "names roformer"),
    ("w = state['roformer.pooler.dense.weight']\n", "the state-dict prefix"),
    ("cls = 'RoFormerForSequenceClassification'\n", "RoFormerForSequenceClassification"),
    ("x = RoFormerConfig(vocab_size=3)\n", "names RoFormerConfig"),
])
def test_the_walker_catches_each_way_of_naming_an_architecture(code, hit):
    spec = next(s for s in all_archs() if s.name == "roformer")
    found = violations(code, "x.py", [spec])
    assert found and hit in found[0], found


def test_the_walker_ignores_prose_and_reads_a_new_architecture_from_its_spec():
    spec = next(s for s in all_archs() if s.name == "roformer")
    prose = '"""Exports RoFormerForMaskedLM; keys roformer.*."""\n# model.roformer\npath = "configs/roformer_tiny.yaml"\n'
    assert violations(prose, "x.py", [spec]) == []
    # a registered architecture brings its own names: nothing here is RoFormer's
    code = "m = model.toyenc\nk = 'toyenc.embeddings.word_embeddings.weight'\nc = ToyForSequenceClassification\n"
    found = violations(code, "x.py", [_toy_spec()])
    assert len(found) == 3, found
    assert violations(code, "x.py", [spec]) == []


# ---------------------------------------------------------------------------------------------------------------
# model.arch in fine-tuning; the architecture a model_config.json names


def _ft_config(tmp_path, init, *extra):
    import _export_util as E
    import _finetune_util as F
    from ernie_style.config.finetune import load_finetune_config

    files = F.seq_files(str(tmp_path / "data"), n_train=8, n_dev=4)
    over = F.tiny_overrides(str(tmp_path / "out"), files["train"], files["dev"], files["vocab"],
                            **({"model.init": init} if init else {}))
    if init and init != "random":  # an init directory brings the architecture and the vocab
        over = [o for o in over if o.split("=")[0] not in
                ("model.hidden_size", "model.num_hidden_layers", "model.num_attention_heads",
                 "model.intermediate_size", "model.max_position_embeddings")]
    return load_finetune_config(os.path.join(REPO, "configs", "finetune", "seq_cls.yaml"), over + list(extra)), E


def test_finetune_model_arch_defaults_to_the_init_and_a_conflict_names_both(tmp_path):
    import _export_util as E
    from ernie_style import arch
    from ernie_style.config.pretrain import ConfigError
    from ernie_style.tasks.finetuning import resolve_init

    init = E.write_checkpoint(tmp_path / "init", E.tiny_config(), E.random_state(E.tiny_config()))
    cfg, _ = _ft_config(tmp_path, init)
    assert cfg.model.arch is None and "arch" not in cfg.to_dict()["model"]  # absent: files as before
    src = resolve_init(cfg)
    assert arch.arch_of(src.model_config).name == "roformer"
    assert resolve_init(_ft_config(tmp_path, init, "model.arch=roformer")[0]).model_config == src.model_config

    with pytest.raises(ConfigError, match=r"model\.arch='nosuch': expected one of bert, roformer"):
        _ft_config(tmp_path, init, "model.arch=nosuch")
    # the second registered architecture given against a RoFormer init
    with pytest.raises(ConfigError) as e:
        resolve_init(_ft_config(tmp_path, init, "model.arch=bert")[0])
    assert str(e.value).startswith(f"model.arch='bert': model.init={init!r} holds a 'roformer' model"), e.value


def test_model_config_json_names_a_non_default_architecture():
    from ernie_style import arch
    from ernie_style.arch.roformer.config import RoFormerConfig

    cfg = RoFormerConfig(vocab_size=10, hidden_size=8, num_attention_heads=2)
    assert arch.model_config_dict(cfg) == cfg.to_dict()  # the default architecture: the file as it always was
    spec, fields = arch.split_model_config(cfg.to_dict())
    assert spec.name == "roformer" and fields == cfg.to_dict()
    toy = dataclasses.replace(spec, name="toyarch")
    assert arch.with_arch(toy, fields) == {"arch": "toyarch", **fields}
    with pytest.raises(ValueError, match="arch is 'nosuch', expected one of bert, roformer"):
        arch.split_model_config({"arch": "nosuch", **fields})
