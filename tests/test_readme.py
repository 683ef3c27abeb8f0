"""The README's configuration table is the config classes' own list: every key, every default."""
import dataclasses
import os
import re

import yaml

from ernie_style.arch.roformer.modeling import RoFormerConfig
from ernie_style.config.pretrain import SECTIONS, PretrainConfig

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Defaults the table states in words rather than as a YAML value.
IN_WORDS = {"model.vocab_size", "model.embedding_size"}


def readme_table() -> dict:
    text = open(os.path.join(REPO, "README.md"), encoding="utf-8").read()
    section = text.split("## Configuration keys", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `([a-z_]+\.[a-z_0-9]+)` \| ([^|]*) \| ([^|]*) \|$", section, flags=re.M)
    assert rows, "no table rows found under '## Configuration keys'"
    table = {}
    for key, default, meaning in rows:
        assert key not in table, f"{key} is listed twice"
        assert meaning.strip(), f"{key} has no meaning column"
        table[key] = default.strip()
    return table


def config_defaults() -> dict:
    out = {"model.arch": PretrainConfig.__dataclass_fields__["model_arch"].default,  # selects the model section
           "model.size": None}  # a preset of the model keys, resolved when the config loads
    for section in dataclasses.fields(PretrainConfig):
        if section.name not in SECTIONS:
            continue
        cls = RoFormerConfig if section.name == "model" else section.default_factory
        for f in dataclasses.fields(cls):
            if f.default is not dataclasses.MISSING:
                value = f.default
            elif f.default_factory is not dataclasses.MISSING:
                value = f.default_factory()
            else:
                value = None  # required (model.vocab_size): filled from the vocab file
            out[f"{section.name}.{f.name}"] = value
    return out


def test_table_lists_every_config_key_and_nothing_else():
    table, fields = readme_table(), config_defaults()
    assert sorted(set(fields) - set(table)) == [], "config keys missing from the README table"
    assert sorted(set(table) - set(fields)) == [], "README table keys that the config does not have"


def test_table_defaults_are_the_code_defaults():
    table, fields = readme_table(), config_defaults()
    for key, cell in table.items():
        if key in IN_WORDS:
            continue
        stated = yaml.safe_load(cell)
        actual = fields[key]
        if isinstance(actual, float) and isinstance(stated, str):
            stated = float(stated)  # YAML 1.1 reads "1e-4" as a string
        assert stated == actual, f"README says {key} defaults to {cell!r}; the code has {actual!r}"


def test_layout_table_names_every_ernie_style_module():
    """The README's layout row for ernie_style/ names every module and package in it (so it follows the tree)."""
    text = open(os.path.join(REPO, "README.md"), encoding="utf-8").read()
    layout = text.split("## Layout", 1)[1].split("\n## ", 1)[0]
    row = next(line for line in layout.splitlines() if line.startswith("| `ernie_style/` |"))
    root = os.path.join(REPO, "ernie_style")
    names = [n for n in os.listdir(root) if n.endswith(".py") and n != "__init__.py"]
    names += [n + "/" for n in os.listdir(root) if os.path.isfile(os.path.join(root, n, "__init__.py"))]
    missing = sorted(n for n in names if f"`{n}`" not in row)
    assert not missing, f"README layout row for ernie_style/ does not name: {', '.join(missing)}"
