"""export/: Paddle checkpoint <-> Hugging Face RoFormer, and to PaddleNLP, proved with logits.

References: transformers' RoFormerForMaskedLM (loading report, logits, sinusoidal table, bf16
rounding of torch), our ernie_style RoFormerForPretraining, PaddleNLP's RoFormerForMaskedLM,
transformers' BertTokenizer, the safetensors library, paddle.load. Budget: < 90 s.
"""
import json
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch
from transformers import RoFormerConfig as HFConfig
from transformers import RoFormerForMaskedLM as HFMaskedLM

import _export_util as U
from ernie_style.arch.model_reader import read_checkpoint
from ernie_style.arch.roformer.state_dict_adapter import ROTARY_KEY, sinusoidal_table
from ernie_style.arch.state_dict_adapter import SIDE_FILE, expected_ours, hf_tied, ours_to_hf

HF_TIED = hf_tied()
from ernie_style.storage.pdparams import load_pdparams, save_pdparams
from ernie_style.storage.safetensors_io import float32_to_bf16_bits, read_safetensors
from export import from_pytorch, to_paddlenlp, to_pytorch
from export.errors import ExportError
from export.verify import (
    compare, hf_mlm_logits, paddle_logits, paddle_mlm_logits, paddlenlp_mlm_logits, probe_batch, rotary_tables,
)

# transformers 5.x: RoFormerForMaskedLM._tied_weights_keys = {target: source}
TIED_5X = {
    "cls.predictions.decoder.bias": "cls.predictions.bias",
    "cls.predictions.decoder.weight": "roformer.embeddings.word_embeddings.weight",
}


def _hf_model_keys(config: dict) -> dict:
    hf = HFMaskedLM(HFConfig(**config))
    return {k: tuple(v.shape) for k, v in hf.state_dict().items()}


def _export(ckpt, out, *extra):
    rc = to_pytorch.main([str(ckpt), str(out), *extra])
    assert rc == 0
    return str(out)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny random checkpoint (with checksums) and its float32 Hugging Face export."""
    root = tmp_path_factory.mktemp("export")
    cfg = U.tiny_config()
    state = U.random_state(cfg, seed=1)
    ckpt = U.write_checkpoint(root / "ckpt", cfg, state, checksums=True)
    hf = _export(ckpt, root / "hf")
    return cfg, state, ckpt, hf, root


# ---------------------------------------------------------------------------------------------- name map


@pytest.mark.parametrize("embedding_size", [32, 16])
def test_name_map_covers_every_hf_parameter(embedding_size):
    cfg = U.tiny_config(embedding_size=embedding_size)
    main, side = ours_to_hf(U.random_state(cfg))
    hf_keys = _hf_model_keys(cfg)
    # What we write == what the HF model has, minus the tied copies, plus nothing else.
    assert set(main) | {ROTARY_KEY} == set(hf_keys) - set(HF_TIED)
    for k, a in main.items():
        assert a.shape == hf_keys[k], k
    assert set(side) == {"roformer.pooler.dense.weight", "roformer.pooler.dense.bias",
                         "cls.seq_relationship.weight", "cls.seq_relationship.bias"}
    assert side["cls.seq_relationship.weight"].shape == (2, 32)  # torch layout [out, in]


def test_sinusoidal_table_is_transformers_bit_for_bit():
    from transformers.models.roformer.modeling_roformer import RoFormerSinusoidalPositionalEmbedding

    for n_pos, dim in [(512, 64), (64, 8), (1536, 128)]:
        emb = RoFormerSinusoidalPositionalEmbedding(n_pos, dim)
        ref = (emb.create_weight() if hasattr(emb, "create_weight") else (emb._init_weight(), emb.weight)[1])
        np.testing.assert_array_equal(sinusoidal_table(n_pos, dim), ref.detach().numpy())


# ---------------------------------------------------------------------------------------------- to_pytorch


def test_export_loads_cleanly_with_real_config_values(tiny):
    cfg, _, _, hf, _ = tiny
    model, info = HFMaskedLM.from_pretrained(hf, output_loading_info=True)
    assert info["missing_keys"] == [] and info["unexpected_keys"] == [] and info["mismatched_keys"] == []
    assert info["error_msgs"] == []
    with open(os.path.join(hf, "config.json")) as f:
        conf = json.load(f)
    for k, v in cfg.items():
        assert conf[k] == v, k
    assert conf["model_type"] == "roformer" and conf["architectures"] == ["RoFormerForMaskedLM"]
    assert conf["vocab_size"] == len(U.VOCAB) == model.roformer.embeddings.word_embeddings.weight.shape[0]
    assert model.config.layer_norm_eps == 1e-12 and model.config.hidden_act == "gelu"
    # tied as transformers expects: decoder shares the embedding storage, decoder bias is cls.predictions.bias
    dec = model.cls.predictions.decoder
    assert dec.weight.data_ptr() == model.roformer.embeddings.word_embeddings.weight.data_ptr()
    assert dec.bias.data_ptr() == model.cls.predictions.bias.data_ptr()
    with open(os.path.join(hf, "tokenizer_config.json")) as f:
        tok = json.load(f)
    assert tok["tokenizer_class"] == "BertTokenizer" and tok["do_lower_case"] is True
    assert tok["model_max_length"] == cfg["max_position_embeddings"]
    with open(os.path.join(hf, "special_tokens_map.json")) as f:
        specials = json.load(f)
    assert specials == {"unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]", "cls_token": "[CLS]",
                        "mask_token": "[MASK]"}
    assert all(tok[k] == v for k, v in specials.items())  # tokenizer_config.json agrees
    from transformers import AutoTokenizer

    loaded = AutoTokenizer.from_pretrained(hf)
    for key, token in specials.items():
        assert getattr(loaded, key) == token and getattr(loaded, key + "_id") == U.VOCAB.index(token), key


def test_safetensors_follow_transformers_5x_rules(tiny):
    cfg, _, _, hf, _ = tiny
    path = os.path.join(hf, "model.safetensors")
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(path, "pt") as f:
        assert f.metadata() == {"format": "pt"}
        keys = set(f.keys())
    # 5.x: tied targets absent, their sources present; everything else of the model present.
    assert not keys & set(TIED_5X)
    assert set(TIED_5X.values()) <= keys
    assert keys == set(_hf_model_keys(cfg)) - set(TIED_5X)
    # no shared storage: every tensor has its own disjoint byte range
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
    header.pop("__metadata__")
    ranges = sorted(tuple(v["data_offsets"]) for v in header.values())
    assert all(b_end <= a_start for (_, b_end), (a_start, _) in zip(ranges, ranges[1:]))
    assert all(e > b for b, e in ranges)
    tensors = load_file(path)
    ptrs = [t.data_ptr() for t in tensors.values()]
    assert len(set(ptrs)) == len(ptrs)


def _hf_logits_vs_paddle(cfg, state, hf_dir):
    """Comparison (float64 on both sides) of our Paddle model on ``state`` with transformers on ``hf_dir``."""
    batch = probe_batch(cfg, seed=3)
    ref = paddle_mlm_logits(cfg, state, batch)
    got = hf_mlm_logits(hf_dir, batch)
    assert ref.dtype == got.dtype == np.float64
    return compare(ref, got, batch["attention_mask"]), batch


def _exact(cmp):
    """A correct conversion in float64: float64 noise only, orders of magnitude inside the tolerance."""
    assert cmp.ok and cmp.diff < 1e-9 and cmp.tolerance >= 1e-6, cmp
    return cmp


def test_parity_tiny_random(tiny):
    cfg, state, _, hf, _ = tiny
    cmp, batch = _hf_logits_vs_paddle(cfg, state, hf)
    assert batch["attention_mask"][0].sum() == cfg["max_position_embeddings"]  # one row at full length
    assert batch["attention_mask"].min() == 0 and batch["token_type_ids"].max() == 1  # padding, two segments
    _exact(cmp)
    # and against PaddleNLP's RoFormer as a second, independent Paddle reference (both in float64 with the exact
    # rotary table: PaddleNLP forms the table's angles in the default dtype, ours in float64 then rounds)
    import paddle

    ref = U.paddlenlp_model(cfg, state, dtype="float64")
    with paddle.no_grad():
        pn = ref(**{k: paddle.to_tensor(v) for k, v in batch.items()})
    pn = (pn[0] if isinstance(pn, (tuple, list)) else pn).numpy()
    _exact(compare(paddle_logits(cfg, state, batch, rotary=rotary_tables(cfg, "float64")), pn,
                   batch["attention_mask"]))


def test_parity_factorized_rotary_value_and_verify_flag(tmp_path, capsys):
    cfg = U.tiny_config(embedding_size=16, rotary_value=True, num_hidden_layers=3, max_position_embeddings=96,
                        hidden_act="gelu_new")
    state = U.random_state(cfg, seed=7)
    ckpt = U.write_checkpoint(tmp_path / "ckpt", cfg, state, do_lower_case=False)
    hf = _export(ckpt, tmp_path / "hf", "--verify")
    diff, tol = U.verify_line(capsys.readouterr().out, "logits(paddle) - logits(transformers)")
    assert diff < 1e-9 and tol >= 1e-6
    _exact(_hf_logits_vs_paddle(cfg, state, hf)[0])
    # cased vocabulary: the exported tokenizer keeps case and accents as ours does
    from data_tools.tokenizer import BertTokenizer
    from transformers import AutoTokenizer

    ours = BertTokenizer(os.path.join(ckpt, "vocab.txt"), do_lower_case=False)
    theirs = AutoTokenizer.from_pretrained(hf)
    for text in ["The thing 是 pad", "Ａbc thé 中国"]:
        assert theirs(text, add_special_tokens=False)["input_ids"] == ours.encode(text).tolist(), text


def test_verify_failure_exits_2_and_leaves_no_output(tiny, tmp_path, capsys, monkeypatch):
    """A weight corrupted between writing and --verify (here: one FFN weight nudged by 1e-2 in
    model.safetensors) is caught: exit 2, the difference printed, no output dir and no temp dir."""
    from ernie_style.storage.safetensors_io import write_safetensors

    _, _, ckpt, _, _ = tiny
    real_write = to_pytorch.write_hf_dir
    corrupted = "roformer.encoder.layer.0.intermediate.dense.weight"

    def write_then_corrupt(ckpt_, out, dtype="float32"):
        real_write(ckpt_, out, dtype)
        path = os.path.join(out, "model.safetensors")
        tensors = read_safetensors(path)[0]
        tensors[corrupted] = tensors[corrupted] + np.float32(1e-2)
        # a new file renamed over the old one: the tensors read are memory-mapped from the old file
        write_safetensors(path + ".new", tensors, dtype, metadata={"format": "pt"})
        os.replace(path + ".new", path)

    monkeypatch.setattr(to_pytorch, "write_hf_dir", write_then_corrupt)
    rc = to_pytorch.main([ckpt, str(tmp_path / "hf"), "--verify"])
    captured = capsys.readouterr()
    assert rc == 2
    diff, tol = U.verify_line(captured.out, "logits(paddle) - logits(transformers)")
    assert diff > 1e3 * tol
    err = captured.err.strip()
    assert err.startswith(f"error: {tmp_path / 'hf'}: verification failed: logits differ by"), err
    assert err.endswith("nothing was written")
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert os.listdir(tmp_path) == []  # no output dir, no .hf.tmp-* dir


@pytest.mark.parametrize("rows", [U.SWAP_LAYERS, U.NOT_TRANSPOSED], ids=["swapped_layers", "not_transposed"])
def test_verify_refuses_a_wrong_name_map(tiny, tmp_path, capsys, monkeypatch, rows):
    _, _, ckpt, hf, _ = tiny
    U.wrong_name_map(monkeypatch, rows)
    out = str(tmp_path / "hf")
    U.assert_refused(to_pytorch.main([ckpt, out, "--verify"]), capsys.readouterr(), out,
                   "logits(paddle) - logits(transformers)")
    # the other direction: a correct Hugging Face dir imported through the wrong map
    back = str(tmp_path / "back")
    U.assert_refused(from_pytorch.main([hf, back, "--verify"]), capsys.readouterr(), back,
                   "logits(transformers) - logits(paddle)")


def test_to_paddlenlp_verify_refuses_a_wrong_layout(tiny, tmp_path, capsys, monkeypatch):
    _, _, ckpt, _, _ = tiny
    real = to_paddlenlp.paddlenlp_state

    def swapped(state, spec=None):
        main, sop = real(state, spec)
        a, b = "roformer.encoder.layers.0.linear1.weight", "roformer.encoder.layers.1.linear1.weight"
        main[a], main[b] = main[b], main[a]
        return main, sop

    monkeypatch.setattr(to_paddlenlp, "paddlenlp_state", swapped)
    out = str(tmp_path / "pnlp")
    U.assert_refused(to_paddlenlp.main([ckpt, out, "--verify"]), capsys.readouterr(), out,
                   "logits(paddle) - logits(paddlenlp)")


def test_verify_passes_a_correct_export_whose_float32_noise_exceeds_1e_5(tmp_path, capsys):
    """Issue 16: a correct export measured 1.097e-05 in float32 on an AMD CPU and was refused by the fixed 1e-5.
    Here logits of size ~700 (a scaled MLM LayerNorm) make float32 noise ~1e-4 on any CPU; compared in float64 with a
    tolerance relative to the logits, the export passes with a margin of many orders of magnitude."""
    cfg = U.tiny_config()
    state = U.random_state(cfg, seed=1)
    state["cls.predictions.layer_norm.weight"] = state["cls.predictions.layer_norm.weight"] * np.float32(300)
    ckpt = U.write_checkpoint(tmp_path / "ckpt", cfg, state)
    hf = _export(ckpt, tmp_path / "hf", "--verify")
    diff, tol = U.verify_line(capsys.readouterr().out, "logits(paddle) - logits(transformers)")
    assert diff < 1e-9 and diff * 1e6 < tol
    # the same two models run in float32 differ by more than the old fixed tolerance
    import paddle

    from export.verify import paddle_model

    batch = probe_batch(cfg, seed=3)
    with paddle.no_grad():
        ours = paddle_model(cfg, state)(*(paddle.to_tensor(batch[k]) for k in batch))[0].numpy()
    theirs = HFMaskedLM.from_pretrained(hf).eval()
    with torch.no_grad():
        theirs = theirs(**{k: torch.from_numpy(v) for k, v in batch.items()}).logits.numpy()
    assert compare(ours, theirs, batch["attention_mask"]).diff > 1e-5


def test_parity_model_trained_three_steps(tmp_path):
    cfg = U.tiny_config()
    model = U.train_steps(cfg, U.random_state(cfg, seed=2), steps=3)
    ckpt = tmp_path / "ckpt"
    model.save_pretrained(str(ckpt))  # real paddle.save output
    with open(ckpt / "vocab.txt", "w", encoding="utf-8") as f:
        f.write("".join(t + "\n" for t in U.VOCAB))
    trained = read_checkpoint(ckpt)
    assert not np.allclose(trained.state["roformer.encoder.layers.0.linear1.weight"],
                           U.random_state(cfg, seed=2)["roformer.encoder.layers.0.linear1.weight"])
    hf = _export(ckpt, tmp_path / "hf")
    _exact(_hf_logits_vs_paddle(cfg, trained.state, hf)[0])


def test_tokenizer_ids_and_fill_mask(tiny):
    from data_tools.tokenizer import BertTokenizer
    from transformers import AutoTokenizer, pipeline

    _, _, ckpt, hf, _ = tiny
    ours = BertTokenizer(os.path.join(ckpt, "vocab.txt"), do_lower_case=True)
    theirs = AutoTokenizer.from_pretrained(hf)
    assert "RoFormer" not in type(theirs).__name__  # char-level BERT, not the jieba word tokenizer
    for text in ["我是中国人", "The thing 是 PAD 2024年, 天气很好!", "ＡＢＣ 中文 zhōng", "學生们在说话"]:
        want = [ours.cls_id, *ours.encode(text).tolist(), ours.sep_id]
        assert theirs(text)["input_ids"] == want, text
    fill = pipeline("fill-mask", model=hf, tokenizer=hf)
    out = fill("我是中[MASK]人")
    assert len(out) == 5 and all("token_str" in o for o in out)


@pytest.mark.parametrize("dtype,st_tag", [("float16", "F16"), ("bfloat16", "BF16")])
def test_half_precision_exports(tiny, tmp_path, capsys, dtype, st_tag):
    """--verify of a 16-bit export compares with our model on the same rounded weights: as strict as float32 (the
    old 5e-2 / 2.5e-1 tolerances let a wrong map through); the rounding's own effect is printed apart. Back through
    from_pytorch --verify too (the source's rotary table is 16-bit there: noted, and given to our model)."""
    cfg, state, ckpt, _, _ = tiny
    hf = _export(ckpt, tmp_path / "hf", "--dtype", dtype, "--verify")
    out = capsys.readouterr().out
    diff, tol = U.verify_line(out, "logits(paddle) - logits(transformers)")
    assert diff < 1e-9 and tol >= 1e-6
    moved = float(out.split(f"verify: {dtype} rounding of the weights moves the logits by up to ")[1].split()[0])
    assert 1e-4 < moved < 0.1  # the rounding is real, and far above the tolerance of the mapping check
    assert from_pytorch.main([hf, str(tmp_path / "back"), "--verify"]) == 0
    out = capsys.readouterr().out
    diff, _ = U.verify_line(out, "logits(transformers) - logits(paddle)")
    assert diff < 1e-9
    assert f"the source's {ROTARY_KEY} differs from the float32 sinusoidal table" in out
    _, tags, _ = read_safetensors(os.path.join(hf, "model.safetensors"), widen=False)
    assert set(tags.values()) == {st_tag}
    model, info = HFMaskedLM.from_pretrained(hf, output_loading_info=True, dtype=getattr(torch, dtype))
    assert not info["missing_keys"] and not info["unexpected_keys"]
    w = state["roformer.encoder.layers.1.linear1.weight"]
    want = torch.from_numpy(np.ascontiguousarray(w.T)).to(getattr(torch, dtype))  # torch's own rounding
    assert torch.equal(model.roformer.encoder.layer[1].intermediate.dense.weight.data, want)


def test_bf16_rounding_matches_torch():
    x = np.random.default_rng(0).normal(size=10000).astype(np.float32) * 1e3
    x[:4] = [np.inf, -np.inf, 0.0, -0.0]
    x[4:8] = np.frombuffer(np.array([0x3F808000, 0x3F818000, 0x7F7FFFFF, 0x00000001], np.uint32).tobytes(), np.float32)
    want = torch.from_numpy(x).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
    np.testing.assert_array_equal(float32_to_bf16_bits(x), want)


# ---------------------------------------------------------------------------------------------- from_pytorch


def test_roundtrip_is_bit_identical_and_loads_in_our_model(tiny, tmp_path):
    from ernie_style.training import checkpoint as trainer_ckpt
    from ernie_style.arch.roformer.modeling import RoFormerForPretraining

    cfg, state, _, hf, _ = tiny
    back = tmp_path / "back"
    assert from_pytorch.main([hf, str(back)]) == 0
    got = load_pdparams(back / "model_state.pdparams")
    assert set(got) == set(state)
    for k in state:
        assert got[k].dtype == np.float32 and np.array_equal(got[k], state[k]), k
    with open(back / "model_config.json") as f:
        assert json.load(f) == cfg
    model = RoFormerForPretraining.from_pretrained(str(back))
    assert model.load_report.missing == []
    assert trainer_ckpt.is_plain_model_dir(str(back))  # train.resume=PATH initialises weights from it


def _hf_native(tmp_path, name, safe=True, pooler=False):
    """A checkpoint written by transformers itself (random RoFormerForMaskedLM)."""
    torch.manual_seed(0)
    cfg = U.tiny_config()
    model = HFMaskedLM(HFConfig(**cfg)).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.1)
    d = tmp_path / name
    model.save_pretrained(d, safe_serialization=safe)
    if pooler:
        from safetensors.torch import load_file, save_file

        sd = load_file(d / "model.safetensors")
        sd["roformer.pooler.dense.weight"] = torch.randn(32, 32)
        sd["roformer.pooler.dense.bias"] = torch.randn(32)
        save_file(sd, d / "model.safetensors", metadata={"format": "pt"})
    with open(d / "vocab.txt", "w", encoding="utf-8") as f:
        f.write("".join(t + "\n" for t in U.VOCAB))
    return model, d, cfg


@pytest.mark.parametrize("safe,pooler", [(True, False), (False, False), (True, True)])
def test_from_transformers_checkpoints(tmp_path, capsys, safe, pooler):
    model, d, cfg = _hf_native(tmp_path, "hf", safe=safe, pooler=pooler)
    assert os.path.exists(d / ("model.safetensors" if safe else "pytorch_model.bin"))
    out = tmp_path / "ours"
    assert from_pytorch.main([str(d), str(out), "--verify"]) == 0
    notes = capsys.readouterr().out
    assert U.verify_line(notes, "logits(transformers) - logits(paddle)")[0] < 1e-9
    assert ("initialised roformer.pooler.dense.weight" in notes) != pooler
    assert "initialised cls.seq_relationship.weight" in notes
    ck = read_checkpoint(out)
    if pooler:
        from safetensors.numpy import load_file

        want = load_file(d / "model.safetensors")["roformer.pooler.dense.weight"]
        np.testing.assert_array_equal(ck.state["roformer.pooler.dense.weight"], want.T)
    batch = probe_batch(cfg, seed=5)
    with torch.no_grad():
        ref = model.double()(**{k: torch.from_numpy(v) for k, v in batch.items()}).logits.numpy()
    _exact(compare(ref, paddle_mlm_logits(ck.config, ck.state, batch), batch["attention_mask"]))


# ---------------------------------------------------------------------------------------------- to_paddlenlp


def test_to_paddlenlp_logits_equal_ours(tiny, tmp_path, capsys):
    cfg, state, ckpt, _, _ = tiny
    out = tmp_path / "pnlp"
    assert to_paddlenlp.main([ckpt, str(out), "--verify"]) == 0
    printed = capsys.readouterr()
    diff, tol = U.verify_line(printed.out, "logits(paddle) - logits(paddlenlp)")
    assert diff < 1e-9 and tol >= 1e-6
    assert "INFO" not in printed.out + printed.err  # PaddleNLP's loading chatter
    batch = probe_batch(cfg, seed=4)
    got = paddlenlp_mlm_logits(out, batch)
    _exact(compare(paddle_logits(cfg, state, batch, rotary=rotary_tables(cfg, "float64")), got,
                   batch["attention_mask"]))
    from data_tools.tokenizer import BertTokenizer
    from paddlenlp.transformers import AutoTokenizer as PaddleAutoTokenizer

    ours = BertTokenizer(os.path.join(ckpt, "vocab.txt"), do_lower_case=True, flavor="paddlenlp")
    theirs = PaddleAutoTokenizer.from_pretrained(str(out))
    text = "我是中国人 The thing 是 PAD 2024年!"
    assert theirs(text)["input_ids"] == [ours.cls_id, *ours.encode(text).tolist(), ours.sep_id]
    sop = load_pdparams(out / to_paddlenlp.SOP_FILE)
    np.testing.assert_array_equal(sop["cls.seq_relationship.weight"], state["cls.seq_relationship.weight"])


# ---------------------------------------------------------------------------------------------- pdparams format


def test_pdparams_written_without_paddle_read_by_paddle_load(tmp_path):
    import paddle

    rng = np.random.default_rng(0)
    f32 = rng.normal(size=(3, 5)).astype(np.float32)
    state = {"a.weight": f32, "b.weight": f32.T, "c.bias": float32_to_bf16_bits(f32)}
    save_pdparams(tmp_path / "x.pdparams", state)
    loaded = paddle.load(str(tmp_path / "x.pdparams"))
    assert set(loaded) == set(state)
    np.testing.assert_array_equal(loaded["a.weight"].numpy(), f32)
    np.testing.assert_array_equal(loaded["b.weight"].numpy(), f32.T)
    assert loaded["c.bias"].dtype == paddle.bfloat16
    np.testing.assert_array_equal(loaded["c.bias"].astype("float32").numpy(),
                                  torch.from_numpy(f32).to(torch.bfloat16).float().numpy())
    # and paddle.save output through the restricted reader
    paddle.save({"w": paddle.to_tensor(f32), "h": paddle.to_tensor(f32).astype("bfloat16")}, str(tmp_path / "p.pdparams"))
    back = load_pdparams(tmp_path / "p.pdparams")
    np.testing.assert_array_equal(back["w"], f32)
    assert back["h"].dtype == np.uint16


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused_and_nothing_runs(tiny, tmp_path, capsys):
    _, _, ckpt, _, _ = tiny
    marker = tmp_path / "pwned"
    bad = tmp_path / "bad"
    os.makedirs(bad)
    for name in ("model_config.json", "vocab.txt", "tokenizer_config.json"):
        with open(os.path.join(ckpt, name), "rb") as src, open(bad / name, "wb") as dst:
            dst.write(src.read())
    with open(bad / "model_state.pdparams", "wb") as f:
        pickle.dump({"roformer.embeddings.word_embeddings.weight": _Evil(marker)}, f, protocol=4)
    with pytest.raises(ExportError, match=r"model_state\.pdparams: not loaded: refused global (posix|os)\.system"):
        load_pdparams(bad / "model_state.pdparams")
    assert to_pytorch.main([str(bad), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "refused global" in err and "Traceback" not in err
    assert not marker.exists() and not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------------------------- bad input


def _copy_dir(src, dst):
    os.makedirs(dst)
    for name in os.listdir(src):
        with open(os.path.join(src, name), "rb") as a, open(os.path.join(dst, name), "wb") as b:
            b.write(a.read())
    return dst


def _missing(name):
    """A breaker removing ``name`` (and checksums.json, so the converter reaches its own check)."""

    def breaker(d):
        os.remove(d / name)
        os.remove(d / "checksums.json")
        return f"{name}: file not found"

    breaker.__name__ = f"_break_missing_{name}"
    return breaker


def _break_model_type(d):
    os.remove(d / "checksums.json")
    cfg = json.loads((d / "model_config.json").read_text())
    cfg["model_type"] = "bert"
    (d / "model_config.json").write_text(json.dumps(cfg))
    return "model_config.json: model_type is 'bert', expected 'roformer'"


def _break_shape(d):
    os.remove(d / "checksums.json")
    cfg = json.loads((d / "model_config.json").read_text())
    cfg["intermediate_size"] = 48
    (d / "model_config.json").write_text(json.dumps(cfg))
    return "model_state.pdparams: roformer.encoder.layers.0.linear1.weight has shape [32, 64], model_config expects [32, 48]"


def _break_truncated(d):
    os.remove(d / "checksums.json")
    data = (d / "model_state.pdparams").read_bytes()
    (d / "model_state.pdparams").write_bytes(data[: len(data) // 2])
    return "model_state.pdparams: truncated or corrupt pickle"


def _break_checksum(d):
    data = bytearray((d / "model_state.pdparams").read_bytes())
    data[-100] ^= 1
    (d / "model_state.pdparams").write_bytes(bytes(data))
    return "file model_state.pdparams is damaged (checksum mismatch"


def _break_missing_listed_file(d):
    os.remove(d / "vocab.txt")  # checksums.json still lists it
    return "file vocab.txt listed in checksums.json is missing"


@pytest.mark.parametrize("breaker", [_missing("model_state.pdparams"), _break_model_type, _break_shape,
                                     _break_truncated, _break_checksum, _missing("vocab.txt"),
                                     _missing("model_config.json"), _break_missing_listed_file],
                         ids=lambda b: b.__name__)
@pytest.mark.parametrize("tool", ["to_pytorch", "to_paddlenlp"])
def test_bad_checkpoint_clear_error_exit_2_no_output(tiny, tmp_path, capsys, breaker, tool):
    _, _, ckpt, _, _ = tiny
    bad = _copy_dir(ckpt, tmp_path / "bad")
    expected = breaker(bad)
    out = tmp_path / "out"
    rc = {"to_pytorch": to_pytorch.main, "to_paddlenlp": to_paddlenlp.main}[tool]([str(bad), str(out)])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith("error: ") and expected in err and err.count("\n") == 1, err
    assert str(bad) in err
    assert sorted(os.listdir(tmp_path)) == ["bad"]  # no output, no temp dir left behind


def test_malicious_pytorch_bin_is_refused(tiny, tmp_path, capsys):
    _, _, _, hf, _ = tiny
    d = _copy_dir(hf, tmp_path / "hfbin")
    os.remove(d / "model.safetensors")
    marker = tmp_path / "pwned"
    with open(d / "pytorch_model.bin", "wb") as f:
        pickle.dump({"roformer.embeddings.word_embeddings.weight": _Evil(marker)}, f, protocol=2)
    assert from_pytorch.main([str(d), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "pytorch_model.bin: cannot be loaded safely" in err and "Traceback" not in err
    assert not marker.exists() and not (tmp_path / "out").exists()


def test_bad_hf_dirs(tiny, tmp_path, capsys):
    _, _, _, hf, _ = tiny
    wrong = _copy_dir(hf, tmp_path / "wrong")
    conf = json.loads((wrong / "config.json").read_text())
    (wrong / "config.json").write_text(json.dumps({**conf, "model_type": "albert"}))
    trunc = _copy_dir(hf, tmp_path / "trunc")
    data = (trunc / "model.safetensors").read_bytes()
    (trunc / "model.safetensors").write_bytes(data[:-1000])
    noweights = _copy_dir(hf, tmp_path / "noweights")
    os.remove(noweights / "model.safetensors")
    cases = [(wrong, "config.json: model_type is 'albert', expected 'roformer' or 'bert'"),
             (trunc, "model.safetensors: truncated"),
             (noweights, "no model.safetensors, model.safetensors.index.json or pytorch_model.bin"),
             (tmp_path / "absent", "not a directory")]
    for src, expected in cases:
        assert from_pytorch.main([str(src), str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and expected in err and "Traceback" not in err, err
        assert not (tmp_path / "out").exists()
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".")]


def _hf_bad_shape(d):
    from ernie_style.storage.safetensors_io import write_safetensors

    path = d / "model.safetensors"
    tensors = read_safetensors(path)[0]
    name = "roformer.encoder.layer.1.output.dense.weight"  # [hidden 32, intermediate 64]
    tensors[name] = tensors[name][:, :48]
    write_safetensors(str(path) + ".new", tensors, "float32", metadata={"format": "pt"})  # the old one is mmapped
    os.replace(str(path) + ".new", path)
    return "roformer.encoder.layers.1.linear2.weight has shape [48, 32], model_config expects [64, 32]"


def _hf_vocab_longer_than_config(d):
    with open(d / "vocab.txt", "a", encoding="utf-8") as f:
        f.write("额外\n")
    return f"vocab.txt: {len(U.VOCAB) + 1} tokens, {d / 'config.json'} says vocab_size {len(U.VOCAB)}"


def _hf_config_vocab_size_differs(d):
    conf = json.loads((d / "config.json").read_text())
    (d / "config.json").write_text(json.dumps({**conf, "vocab_size": len(U.VOCAB) + 8}))
    return (f"{d / 'model.safetensors'}: word embeddings have {len(U.VOCAB)} rows, {d / 'config.json'} says "
            f"vocab_size {len(U.VOCAB) + 8}")


def _hf_missing_vocab(d):
    os.remove(d / "vocab.txt")
    return "vocab.txt: file not found"


def _hf_missing_config(d):
    os.remove(d / "config.json")
    return "config.json: file not found"


@pytest.mark.parametrize("breaker", [_hf_bad_shape, _hf_vocab_longer_than_config, _hf_config_vocab_size_differs,
                                     _hf_missing_vocab, _hf_missing_config])
def test_bad_hf_dir_clear_error_exit_2_no_output(tiny, tmp_path, capsys, breaker):
    _, _, _, hf, _ = tiny
    bad = _copy_dir(hf, tmp_path / "bad")
    expected = breaker(bad)
    rc = from_pytorch.main([str(bad), str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith("error: ") and expected in err and err.count("\n") == 1 and "Traceback" not in err, err
    assert f"{bad}{os.sep}" in err  # the message names the file with its path
    assert sorted(os.listdir(tmp_path)) == ["bad"]  # no output, no temp dir left behind


def test_bare_roformer_model_imports_with_a_fresh_mlm_head_said_in_a_note(tmp_path, capsys):
    """Issue 18 point 6 (bare base-model keys are taken, for every architecture): the MLM head is initialised
    (LayerNorm scale 1, biases 0) and a note says so; the encoder is the source's."""
    from transformers import RoFormerModel

    from ernie_style.storage.pdparams import load_pdparams

    d = tmp_path / "base"
    RoFormerModel(HFConfig(**U.tiny_config())).save_pretrained(d)
    with open(d / "vocab.txt", "w", encoding="utf-8") as f:
        f.write("".join(t + "\n" for t in U.VOCAB))
    assert from_pytorch.main([str(d), str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "note: the source is a bare base model (no MLM head): cls.predictions.* initialised" in out
    state = load_pdparams(str(tmp_path / "out" / "model_state.pdparams"))
    assert (state["cls.predictions.layer_norm.weight"] == 1).all() and (state["cls.predictions.decoder_bias"] == 0).all()


def test_activation_without_transformers_equivalent(tiny, tmp_path, capsys):
    cfg = U.tiny_config(hidden_act="swiglu")
    ckpt = U.write_checkpoint(tmp_path / "ckpt", cfg, U.random_state(cfg))
    assert to_pytorch.main([ckpt, str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "model_config.json: hidden_act 'swiglu' has no exact transformers equivalent" in err
    assert not (tmp_path / "out").exists()


def test_existing_output_is_not_clobbered(tiny, tmp_path, capsys):
    _, _, ckpt, _, _ = tiny
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert to_pytorch.main([ckpt, str(out)]) == 2
    assert "output exists and is not empty" in capsys.readouterr().err
    assert (out / "keep.txt").read_text() == "mine"


# ---------------------------------------------------------------------------------------------- no paddle


def test_runs_without_paddle_or_torch(tiny, tmp_path):
    """With paddle, torch and transformers unimportable the converters still work; --verify says why it skips."""
    _, _, ckpt, hf, _ = tiny
    code = f"""
import sys
for m in ("paddle", "paddlenlp", "torch", "transformers"):
    sys.modules[m] = None  # import of these now raises ImportError
from export import to_pytorch, from_pytorch, to_paddlenlp
assert to_pytorch.main([{ckpt!r}, {str(tmp_path / 'hf')!r}, "--verify"]) == 0
assert from_pytorch.main([{hf!r}, {str(tmp_path / 'back')!r}]) == 0
assert to_paddlenlp.main([{ckpt!r}, {str(tmp_path / 'pnlp')!r}]) == 0
loaded = [m for m in ("ernie_style.training.trainer", "ernie_style.arch.roformer.modeling") if m in sys.modules]
assert not loaded, loaded
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "verification skipped: paddle not importable" in r.stdout
    a = read_safetensors(tmp_path / "hf" / "model.safetensors")[0]
    b = read_safetensors(os.path.join(hf, "model.safetensors"))[0]
    assert set(a) == set(b) and all(np.array_equal(a[k], b[k]) for k in a)
    assert os.path.exists(tmp_path / "hf" / SIDE_FILE)


def test_expected_names_match_our_model():
    from ernie_style.arch.roformer.modeling import RoFormerConfig, RoFormerForPretraining

    for e in (32, 16):
        cfg = U.tiny_config(embedding_size=e)
        model = RoFormerForPretraining(RoFormerConfig.from_dict(cfg))
        got = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        assert got == expected_ours(cfg)


# ---------------------------------------------------------------------------------------------- with the trainer


def test_trainer_checkpoint_exports_and_imported_model_resumes(tmp_path, capsys):
    """A real 3-step trainer checkpoint (via `latest`) -> HF with --verify -> back -> train.resume=PATH."""
    import _trainer_util as T
    from ernie_style import run_pretrain

    config = os.path.join(T.REPO, "configs", "roformer_tiny_demo.yaml")
    prefix, vocab = T.make_data(str(tmp_path / "data"), n_docs=60)
    assert run_pretrain.main(["--config", config, *T.tiny_overrides(prefix, vocab, str(tmp_path / "run"))]) == 0
    latest = str(tmp_path / "run" / "checkpoints" / "latest")
    hf = _export(latest, tmp_path / "hf", "--verify")
    assert "verify: max |logits(paddle) - logits(transformers)|" in capsys.readouterr().out
    back = tmp_path / "back"
    assert from_pytorch.main([hf, str(back)]) == 0
    trained = read_checkpoint(latest).state
    imported = read_checkpoint(back).state
    assert all(np.array_equal(trained[k], imported[k]) for k in trained)
    out = tmp_path / "resumed"
    overrides = T.tiny_overrides(prefix, vocab, str(out), **{"train.resume": str(back), "train.max_steps": 1})
    assert run_pretrain.main(["--config", config, *overrides]) == 0
    with open(out / "train.log", encoding="utf-8") as f:
        assert f"resume: initialised weights from model dir {back}" in f.read()
