"""The converters between our (PaddleNLP-named) checkpoints and Hugging Face ``<Arch>For*`` weights, driven by
the architecture's ``NAME_MAP`` (:class:`~ernie_style.arch.spec.ArchSpec` ``name_map``, Paddle-free); nothing
else in the package knows a parameter name.  Every function takes the ``ArchSpec`` (``spec``; None = the
default architecture, for older callers).

Paddle ``Linear.weight`` is ``[in, out]``, torch ``nn.Linear.weight`` is ``[out, in]``: every row marked ``T``
is transposed. Embeddings, LayerNorms and biases are copied as they are.

Where each tensor goes in the Hugging Face directory:
  ``main``  model.safetensors, loaded by the architecture's MLM class (``spec.hf_pretraining_class``);
  ``side``  pretraining_heads.safetensors (pooler + SOP head, which the MLM class has no place for; torch
            layout and BERT-style names so BertForPreTraining-like code can use them).
Fine-tuned models (issue 12, layout in docs/export.md) carry the encoder, the pooler and one task head, whose
names are the same in both frameworks (``HEAD_SHAPES``); they load into the task's class
(``spec.task_heads[task].hf_class``).  The pooler goes to ``main`` when that class holds one
(``TaskHead.pooler_in_hf``), else to ``side``.

Tensors the architecture computes rather than trains (RoFormer's sinusoidal table) are its ``hf_derived``
object's: written on export, checked and dropped on import.  ``cls.predictions.decoder.{weight,bias}`` are tied
in transformers to the word embeddings / ``cls.predictions.bias`` and are NOT written (as ``save_pretrained``
does; transformers 5.x declares exactly these two as tied targets).
"""
import functools
import re

from ernie_style.arch import get_arch
from ernie_style.arch.spec import resolve
from ernie_style.storage.errors import ModelDirError

L = "{i}"  # the layer index placeholder of every architecture's NAME_MAP


def _cls_mlp(H, C):
    return {"classifier.dense.weight": (H, H), "classifier.dense.bias": (H,),
            "classifier.out_proj.weight": (H, C), "classifier.out_proj.bias": (C,)}


# Head layer kind (ernie_style.tasks.heads.HEADS; TaskHead.head) -> its parameter shapes for hidden size H and C
# labels.  span (qa) is one Linear to (start, end) per token, so its C is always 2.
HEAD_SHAPES = {
    "cls_mlp": _cls_mlp,
    "pooled": lambda H, C: {"classifier.weight": (H, C), "classifier.bias": (C,)},
    "token": lambda H, C: {"classifier.weight": (H, C), "classifier.bias": (C,)},
    "span": lambda H, C: {"qa_outputs.weight": (H, 2), "qa_outputs.bias": (2,)},
}
TASKS = ("seq_cls", "pair_cls", "ner", "qa")  # every architecture's task_heads has exactly these
SIDE_FILE = "pretraining_heads.safetensors"
SOP_PREFIX = "cls.seq_relationship."
MLM_PREFIX = "cls.predictions."


def _spec(spec):
    return get_arch() if spec is None else spec


def word_embeddings(spec=None) -> str:
    """Our name of the word embeddings (the MLM decoder is tied to them): PaddleNLP's, the same in every
    architecture of the BERT family."""
    return _spec(spec).state_prefix + "embeddings.word_embeddings.weight"


def pooler_names(spec=None) -> tuple:
    p = _spec(spec).state_prefix
    return p + "pooler.dense.weight", p + "pooler.dense.bias"


def hf_tied(spec=None) -> dict:
    """transformers ties these to the word embeddings / cls.predictions.bias (5.x: {target: source})."""
    return {"cls.predictions.decoder.weight": word_embeddings(spec),
            "cls.predictions.decoder.bias": "cls.predictions.bias"}


def task_classes(spec=None) -> dict:
    """transformers class -> our task for a fine-tuned source that names none of ours (a sequence classifier is
    seq_cls)."""
    heads = _spec(spec).task_heads
    return {heads[t].hf_class: t for t in ("seq_cls", "ner", "qa")}


def _rule(src_pattern):
    return re.compile("^" + re.escape(src_pattern).replace(re.escape(L), r"(\d+)") + "$")


@functools.lru_cache(maxsize=None)
def _rules(name_map_ref: str) -> tuple:
    rows = resolve(name_map_ref)
    return [(_rule(o), h, t, f) for o, h, t, f in rows], [(_rule(h), o, t, f) for o, h, t, f in rows]


def _lookup(rules, name):
    for rx, dst, transpose, where in rules:
        m = rx.match(name)
        if m:
            return (dst.replace(L, m.group(1)) if m.groups() else dst), transpose, where
    return None


def expected_ours(config: dict, with_heads=True, task=None, num_labels=None, spec=None) -> dict:
    """``{our name: shape}`` of every parameter a checkpoint with ``config`` must hold.

    Pretraining checkpoints (``task=None``): encoder + MLM head, and with ``with_heads`` the pooler and SOP head.
    Fine-tuned models (``task`` in the spec's task_heads): encoder + pooler + that task's head for ``num_labels``.
    """
    spec = _spec(spec)
    H = config["hidden_size"]
    shapes = dict(resolve(spec.expected_shapes)(config))
    pooler = pooler_names(spec)
    if task is not None:
        shapes = {k: v for k, v in shapes.items() if not k.startswith(MLM_PREFIX)}
        shapes[pooler[0]], shapes[pooler[1]] = (H, H), (H,)
        shapes.update(HEAD_SHAPES[spec.task_heads[task].head](H, num_labels))
    elif with_heads:
        shapes[pooler[0]], shapes[pooler[1]] = (H, H), (H,)
        shapes[SOP_PREFIX + "weight"], shapes[SOP_PREFIX + "bias"] = (H, 2), (2,)
    return shapes


def summarise_names(names, limit: int = 20) -> str:
    """``names`` grouped by layer (the index written ``{i}``), e.g. ``roformer.encoder.layers.{i}.linear1.bias
    (2 layers)``: what differs, readable for a whole family of tensors at once."""
    groups = {}
    for n in names:
        key = re.sub(r"\.\d+\.", ".{i}.", n)
        groups[key] = groups.get(key, 0) + 1
    parts = [f"{k} ({c} layers)" if "{i}" in k else k for k, c in groups.items()]
    more = f", and {len(parts) - limit} more" if len(parts) > limit else ""
    return ", ".join(parts[:limit]) + more


def check_ours(state: dict, config: dict, where: str, task=None, num_labels=None, spec=None) -> None:
    """Raise ModelDirError naming ``where`` unless ``state`` holds exactly the expected names and shapes
    (of a pretraining checkpoint, or with ``task`` of a fine-tuned model with ``num_labels`` labels)."""
    spec = _spec(spec)
    expected = expected_ours(config, task=task, num_labels=num_labels, spec=spec)
    if task is None and not any(k.startswith(SOP_PREFIX) for k in state):
        # an MLM-only run (data.binary_head false) builds no SOP head
        expected = {k: v for k, v in expected.items() if not k.startswith(SOP_PREFIX)}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    what = "this model_config" if task is None else f"task {task!r} with this model_config"
    if missing:
        raise ModelDirError(f"{where}: missing {len(missing)} parameter(s) for {what} of a {spec.name} model: "
                            f"{summarise_names(missing)}")
    if unexpected:
        raise ModelDirError(f"{where}: {len(unexpected)} unexpected parameter(s) for {what} of a {spec.name} "
                            f"model: {summarise_names(unexpected)}")
    for name, shape in expected.items():
        if tuple(state[name].shape) != shape:
            got = list(state[name].shape)
            if task not in (None, "qa") and not name.startswith(spec.state_prefix):
                raise ModelDirError(f"{where}: {name} has shape {got}, expected {list(shape)} (hidden_size "
                                  f"{config['hidden_size']}, {num_labels} labels in config.json id2label)")
            raise ModelDirError(f"{where}: {name} has shape {got}, model_config expects {list(shape)}")


def ours_to_hf(state: dict, spec=None, task=None) -> tuple:
    """Our state dict -> (main ``{hf name: array}``, side ``{hf name: array}``), torch layout; with ``task`` the
    pooler goes to main when the task's transformers class holds one.

    Transposed weights are views; writers copy them one at a time.
    """
    spec = _spec(spec)
    rules = _rules(spec.name_map)[0]
    pooler_main = task is not None and spec.task_heads[task].pooler_in_hf
    pooler = pooler_names(spec)
    main, side = {}, {}
    for name, a in state.items():
        hit = _lookup(rules, name)
        assert hit is not None, f"no HF name for {name}"
        dst, transpose, where = hit
        if pooler_main and name in pooler:
            where = "main"
        (main if where == "main" else side)[dst] = a.T if transpose else a
    return main, side


def hf_to_ours(tensors: dict, where: str, spec=None) -> tuple:
    """HF ``{name: array}`` (main and side merged) -> (our state dict, names skipped as derived/tied)."""
    spec = _spec(spec)
    rules = _rules(spec.name_map)[1]
    skip = set(resolve(spec.hf_derived).names) | set(hf_tied(spec))
    ours, skipped = {}, []
    for name, a in tensors.items():
        if name in skip:
            skipped.append(name)
            continue
        hit = _lookup(rules, name)
        if hit is None:
            raise ModelDirError(f"{where}: tensor {name!r} has no place in our {spec.name} models")
        dst, transpose, _ = hit
        ours[dst] = a.T if transpose else a
    return ours, skipped


def add_base_prefix(tensors: dict, spec=None) -> dict:
    """A checkpoint saved from the bare base model (transformers' ``<Arch>Model``) lacks the ``<prefix>.`` of its
    encoder's names; add it back (names of the encoder's own sublayers, from the name map)."""
    spec = _spec(spec)
    p = spec.state_prefix
    if any(k.startswith(p) for k in tensors):
        return tensors
    roots = tuple(sorted({h[len(p):].split(".")[0] + "." for _, h, _, _ in resolve(spec.name_map) if h.startswith(p)}))
    return {(p + k if k.startswith(roots) else k): v for k, v in tensors.items()}
