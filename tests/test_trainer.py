"""Single-process trainer tests (in-process, tiny model): accumulation, resume, AMP wiring, logging, failures.

Multi-process runs through the real launcher are in test_launch.py.
"""
import json
import math
import os
import re
import signal

import numpy as np
import paddle
import pytest

import _trainer_util as U
from ernie_style import run_pretrain
from ernie_style.config.pretrain import load_config
from ernie_style.training import checkpoint as ckpt
from ernie_style.training.amp import Amp
from ernie_style.training.distributed import DistInfo
from ernie_style.training.optim import WarmupLinearDecay, build_optimizer, decay_param_names
from ernie_style.training.trainer import GlobalBatchSampler

CONFIG = os.path.join(U.REPO, "configs", "roformer_tiny_demo.yaml")
LINE_RE = re.compile(
    r"^global step (\d+), loss: (-?\d+\.\d{9}), lm_loss: \d+\.\d{6}, sop_loss: \d+\.\d{6}, speed: \d+\.\d{2} steps/s, "
    r"ips: \d+\.\d{2} seqs/s, learning rate: \d\.\d{5}e[-+]\d\d, loss_scaling: \d+\.\d, num_good_steps: \d+, "
    r"num_bad_steps: \d+, mlm_acc: \d\.\d{6}, sop_acc: \d\.\d{6}, grad_norm: \d+\.\d{6}, tokens/s: \d+\.\d, "
    r"padding: \d+\.\d{2}%$")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return U.make_data(str(tmp_path_factory.mktemp("trainer_data")))


def run(data, out, **extra):
    prefix, vocab = data
    return run_pretrain.main(["--config", CONFIG, *U.tiny_overrides(prefix, vocab, str(out), **extra)])


def weights(out, step):
    return paddle.load(os.path.join(str(out), "checkpoints", ckpt.step_dir_name(step), "model_state.pdparams"))


def assert_same_weights(a, b, tol=1e-5):
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_allclose(a[k].numpy(), b[k].numpy(), rtol=0, atol=tol, err_msg=k)


@pytest.fixture(scope="module")
def ref_run(data, tmp_path_factory):
    """1 process x micro 8 x accumulation 1, 3 steps (dropout off), checkpoint at the end."""
    out = tmp_path_factory.mktemp("ref")
    assert run(data, out, **{"train.eval_steps": 2}) == 0
    return out


def test_accumulation_gives_the_same_weights(data, ref_run, tmp_path):
    assert run(data, tmp_path, **{"train.micro_batch_size": 2}) == 0  # 1 x 2 x 4
    a, b = weights(ref_run, 3), weights(tmp_path, 3)
    assert_same_weights(a, b)
    # ... and training did move the weights away from their initialisation (the comparison is not vacuous)
    from ernie_style.arch.roformer.modeling import RoFormerForPretraining

    cfg = load_config(CONFIG, U.tiny_overrides(*data, str(tmp_path)))
    paddle.seed(cfg.train.seed)  # the trainer's init: the same seed, then the model
    init = RoFormerForPretraining(cfg.model).state_dict()
    moved = {k: float(np.abs(a[k].numpy() - init[k].numpy()).max()) for k in a}
    assert min(moved.values()) > 1e-6, sorted(moved.items(), key=lambda kv: kv[1])[:3]
    la, lb = U.log_losses(os.path.join(ref_run, "train.log")), U.log_losses(os.path.join(tmp_path, "train.log"))
    for step in (1, 2, 3):
        assert abs(float(la[step].split()[1]) - float(lb[step].split()[1])) < 1e-6
    # One process has no gradient all-reduce to skip: every micro-step runs without no_sync.
    assert "trainer: 0 of 12 micro-steps ran under no_sync" in open(os.path.join(tmp_path, "train.log")).read()


def test_logged_values_are_averaged_over_the_logging_window(data, ref_run, tmp_path):
    assert run(data, tmp_path, **{"train.logging_steps": 3, "train.eval_steps": 2}) == 0
    per_step = U.log_fields(os.path.join(ref_run, "train.log"))
    window = U.log_fields(os.path.join(tmp_path, "train.log"))
    assert sorted(per_step) == [1, 2, 3] and sorted(window) == [3]
    for key in ("loss", "lm_loss", "sop_loss", "grad_norm"):
        mean = sum(per_step[s][key] for s in (1, 2, 3)) / 3
        assert abs(window[3][key] - mean) < 2e-6, (key, window[3][key], mean)
    assert len({per_step[s]["loss"] for s in (1, 2, 3)}) == 3  # the mean differs from the last step's value


def test_log_lines_visualdl_and_plot(ref_run, tmp_path):
    from ernie_style.plot import main as plot_main
    from ernie_style.plot import read_scalars, read_texts

    lines = [ln.rstrip("\n") for ln in open(os.path.join(ref_run, "train.log"), encoding="utf-8")]
    steps = [ln for ln in lines if ln.startswith("global step")]
    assert len(steps) == 3 and all(LINE_RE.match(ln) for ln in steps), steps
    assert any(ln.startswith("eval at step 2: loss:") for ln in lines)
    assert any(ln.startswith("test at step 3: loss:") for ln in lines)
    scalars = read_scalars(str(ref_run))
    for tag in ("train/loss", "train/lm_loss", "train/sop_loss", "train/mlm_acc", "train/sop_acc",
                "train/learning_rate", "train/grad_norm", "train/ips", "amp/loss_scaling", "amp/num_good_steps",
                "amp/num_bad_steps", "eval/loss", "eval/mlm_acc", "eval/sop_acc", "test/loss"):
        assert tag in scalars, tag
    logged = [float(LINE_RE.match(ln).group(2)) for ln in steps]
    np.testing.assert_allclose([v for _, v in scalars["train/loss"]], logged, rtol=1e-6)
    assert [s for s, _ in scalars["train/learning_rate"]] == [1, 2, 3]
    assert "micro_batch_size: 8" in read_texts(str(ref_run))["config"][0]
    png = tmp_path / "curves.png"
    assert plot_main([str(ref_run), "--out", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_checkpoint_contents(ref_run):
    d = os.path.join(ref_run, "checkpoints", "latest")
    ckpt.verify(d)
    state = json.load(open(os.path.join(d, "trainer_state.json")))
    assert state["step"] == 3 and state["consumed_samples"] == 24 and state["global_batch_size"] == 8
    assert state["config"]["train"]["micro_batch_size"] == 8 and "lr_scheduler" in state and "amp" in state
    model_cfg = json.load(open(os.path.join(d, "model_config.json")))
    assert model_cfg["hidden_size"] == 32 and model_cfg["vocab_size"] == 125
    keys = set(paddle.load(os.path.join(d, "model_state.pdparams")))
    assert "roformer.encoder.layers.1.self_attn.q_proj.weight" in keys and "cls.seq_relationship.weight" in keys
    opt = paddle.load(os.path.join(d, "optimizer.pdopt"))
    assert any(k.startswith("roformer.encoder.layers.0.linear1.weight/") for k in opt)  # structured names


def test_dataloader_workers_give_the_same_batches(data, ref_run, tmp_path):
    assert run(data, tmp_path, **{"data.num_workers": 1}) == 0
    assert_same_weights(weights(ref_run, 3), weights(tmp_path, 3), tol=0)


def test_recompute_gives_the_same_losses(data, ref_run, tmp_path, monkeypatch):
    import paddle.distributed.fleet.utils as fleet_utils

    from ernie_style.arch.roformer import modeling

    calls = {"recompute": 0, "train_forward": 0}
    real_recompute, real_forward = fleet_utils.recompute, modeling.RoFormerLayer.forward

    def recompute(*args, **kwargs):
        calls["recompute"] += 1
        return real_recompute(*args, **kwargs)

    def forward(self, *args, **kwargs):
        calls["train_forward"] += self.training
        return real_forward(self, *args, **kwargs)

    monkeypatch.setattr(fleet_utils, "recompute", recompute)
    monkeypatch.setattr(modeling.RoFormerLayer, "forward", forward)
    assert run(data, tmp_path, **{"train.recompute": True}) == 0
    assert "recompute: 2 encoder layers" in open(os.path.join(tmp_path, "train.log")).read()
    # Every layer goes through recompute once per micro-step (2 layers x 3 steps), and its forward runs
    # twice for each: once in forward, once again in backward to rebuild the activations.
    assert calls == {"recompute": 6, "train_forward": 12}
    assert_same_weights(weights(ref_run, 3), weights(tmp_path, 3), tol=1e-6)


def test_resume_extends_max_steps_exactly_with_dropout(data, tmp_path):
    drop = {"model.hidden_dropout_prob": 0.1, "model.attention_probs_dropout_prob": 0.1, "train.save_steps": 3}
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert run(data, straight, **drop, **{"train.max_steps": 6}) == 0
    assert run(data, resumed, **drop, **{"train.max_steps": 3}) == 0
    assert run(data, resumed, **drop, **{"train.max_steps": 6, "train.resume": "auto"}) == 0
    a = U.log_losses(os.path.join(straight, "train.log"))
    b = U.log_losses(os.path.join(resumed, "train.log"))
    assert [a[s] for s in (4, 5, 6)] == [b[s] for s in (4, 5, 6)]
    assert_same_weights(weights(straight, 6), weights(resumed, 6), tol=0)
    log = open(os.path.join(resumed, "train.log")).read()
    assert "resume: from " in log and "step_00000003" in log

    # A checkpoint of another architecture is refused with the differing key, before any step.
    assert run(data, resumed, **drop, **{"train.max_steps": 6, "train.resume": "auto", "model.hidden_size": 64}) == 2

    # A damaged newest checkpoint is refused; auto falls back to the previous one and reaches the same state.
    target = os.path.join(resumed, "checkpoints", "step_00000006", "model_state.pdparams")
    os.truncate(target, os.path.getsize(target) - 7)
    assert run(data, resumed, **drop, **{"train.max_steps": 6, "train.resume": "auto", "train.keep_checkpoints": 5}) == 0
    log = open(os.path.join(resumed, "train.log")).read()
    assert "refusing checkpoint" in log and "step_00000006" in log and "is damaged" in log
    assert_same_weights(weights(straight, 6), weights(resumed, 6), tol=0)


def test_resume_from_plain_model_dir_loads_weights_only(data, ref_run, tmp_path):
    from ernie_style.arch.roformer.modeling import RoFormerForPretraining
    from ernie_style.tasks.pretrain import PretrainTask
    from ernie_style.training.trainer import Trainer

    src = os.path.join(ref_run, "checkpoints", "step_00000003")
    model_dir = tmp_path / "plain"
    model_dir.mkdir()
    for name in ("model_config.json", "model_state.pdparams"):
        (model_dir / name).write_bytes(open(os.path.join(src, name), "rb").read())
    prefix, vocab = data
    cfg = load_config(CONFIG, U.tiny_overrides(prefix, vocab, str(tmp_path / "out"), **{"train.resume": str(model_dir)}))
    before = signal.getsignal(signal.SIGINT)
    trainer = Trainer(cfg, DistInfo(0, 1, 0, "cpu"), PretrainTask(cfg))
    assert trainer.step == 0
    assert_same_weights(trainer.inner.state_dict(), paddle.load(os.path.join(src, "model_state.pdparams")), tol=0)
    assert "initialised weights from model dir" in open(tmp_path / "out" / "train.log").read()
    assert isinstance(trainer.inner, RoFormerForPretraining)
    # eval uses the same batches every time: identical numbers for an unchanged model
    assert trainer.evaluate(trainer.valid, "eval") == trainer.evaluate(trainer.valid, "eval")
    # a trainer given up before train() (an in-process caller, a refused start) leaves no signal handler and no
    # fork hook behind: a child forked later is not moved into a process group of its own
    from ernie_style.training import interrupt

    assert interrupt._active and signal.getsignal(signal.SIGINT) is not before
    trainer.release()
    assert not interrupt._active and signal.getsignal(signal.SIGINT) is before


@pytest.mark.parametrize("arch", ["roformer", "bert"])  # architecture-independent (issue 18 point 5)
def test_amp_is_wired_through_paddle(data, tmp_path, monkeypatch, arch):
    calls = {"auto_cast": [], "decorate": [], "scaler": [], "load": []}
    real_auto_cast, real_decorate, real_scaler = paddle.amp.auto_cast, paddle.amp.decorate, paddle.amp.GradScaler

    def auto_cast(**kw):
        calls["auto_cast"].append(kw)
        return real_auto_cast(**kw)

    def decorate(**kw):
        calls["decorate"].append(kw)
        return real_decorate(**kw)

    def spy_scaler(**kw):  # the real GradScaler, enabled although this is a CPU (see U.real_enabled_scaler)
        calls["scaler"].append(kw)
        scaler = U.real_enabled_scaler(real_scaler, **kw)
        real_load = scaler.load_state_dict

        def load_state_dict(state):
            calls["load"].append(state)
            real_load(state)

        scaler.load_state_dict = load_state_dict
        return scaler

    monkeypatch.setattr(paddle.amp, "auto_cast", auto_cast)
    monkeypatch.setattr(paddle.amp, "decorate", decorate)
    monkeypatch.setattr(paddle.amp, "GradScaler", spy_scaler)
    amp = {"amp.enable": True, "amp.level": "O2", "amp.dtype": "float16", "amp.init_loss_scaling": 4096,
           "amp.custom_white_list": "[softmax]", "amp.custom_black_list": "[reduce_sum]", "train.max_steps": 2,
           "model.arch": arch}
    assert run(data, tmp_path, **amp) == 0
    assert calls["decorate"] and calls["decorate"][0]["level"] == "O2" and calls["decorate"][0]["dtype"] == "float16"
    assert calls["decorate"][0]["master_weight"] is True
    ac = calls["auto_cast"][0]
    assert (ac["enable"], ac["level"], ac["dtype"]) == (True, "O2", "float16")
    assert ac["custom_white_list"] == ["softmax"] and ac["custom_black_list"] == ["reduce_sum"]
    assert len(calls["auto_cast"]) >= 2  # every micro-step goes through it
    assert calls["scaler"][0]["enable"] is True and calls["scaler"][0]["init_loss_scaling"] == 4096.0
    log = open(os.path.join(tmp_path, "train.log")).read()
    assert log.count("no-ops there") == 1  # said once
    state = json.load(open(os.path.join(tmp_path, "checkpoints", "latest", "trainer_state.json")))
    # what the real scaler's state_dict() holds: 2 finite steps counted, the scale not yet raised
    assert state["amp"]["scaler"]["scale"] == [4096.0] and state["amp"]["scaler"]["incr_count"] == 2
    # a checkpoint whose scaler moved on (as on a GPU): the resumed real scaler reports the saved counters
    saved = os.path.join(tmp_path, "checkpoints", "latest")
    state["amp"]["scaler"].update(scale=[1024.0], incr_count=3, decr_count=1)
    with open(os.path.join(saved, "trainer_state.json"), "w") as f:
        json.dump(state, f)
    sums = json.load(open(os.path.join(saved, "checksums.json")))
    sums["trainer_state.json"] = ckpt.sha256_file(os.path.join(saved, "trainer_state.json"))
    json.dump(sums, open(os.path.join(saved, "checksums.json"), "w"))
    assert run(data, tmp_path, **{**amp, "train.resume": "auto", "train.max_steps": 3}) == 0
    assert calls["load"] and calls["load"][-1]["incr_count"] == 3 and float(calls["load"][-1]["scale"][0]) == 1024.0
    line = [x for x in open(os.path.join(tmp_path, "train.log")) if x.startswith("global step 3,")][0]
    assert "loss_scaling: 1024.0, num_good_steps: 4, num_bad_steps: 0" in line, line  # the real scaler went on


def test_amp_stats_read_the_real_grad_scaler():
    amp = Amp(load_config(None, ["model.vocab_size=10"]).amp, "cpu", log=lambda m: None)
    amp.scaler = U.real_enabled_scaler(enable=True, init_loss_scaling=512.0, incr_every_n_steps=7)
    assert amp.scaler.is_enable()
    assert amp.stats() == {"loss_scaling": 512.0, "num_good_steps": 0, "num_bad_steps": 0, "skipped_steps": 0}
    state = json.loads(json.dumps(amp.state_dict()))  # as trainer_state.json stores it
    state["scaler"].update(scale=[64.0], incr_count=5, decr_count=2)
    other = Amp(load_config(None, ["model.vocab_size=10"]).amp, "cpu", log=lambda m: None)
    other.scaler = U.real_enabled_scaler(enable=True)
    other.load_state_dict(state)
    assert other.stats() == {"loss_scaling": 64.0, "num_good_steps": 5, "num_bad_steps": 2, "skipped_steps": 0}
    assert other.scaler.state_dict()["incr_every_n_steps"] == 7


@pytest.mark.skipif(not (paddle.device.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0),
                    reason="Paddle's GradScaler detects inf/nan gradients only on GPU")
@pytest.mark.parametrize("name", ["adamw", "lamb"])
def test_amp_counts_skipped_steps_with_the_real_scaler(name):
    cfg = load_config(None, ["model.vocab_size=10", "amp.enable=true", "amp.init_loss_scaling=1024",
                             f"optim.name={name}"])
    amp = Amp(cfg.amp, "gpu", log=lambda m: None)
    layer = paddle.nn.Linear(2, 2)
    before = layer.weight.numpy().copy()
    opt = build_optimizer(layer, cfg.optim, WarmupLinearDecay(cfg.optim))
    loss = (layer(paddle.ones([1, 2])) * float("inf")).sum()
    amp.scale(loss).backward()
    assert amp.step(opt) is False and amp.skipped_steps == 1 and amp.stats()["num_bad_steps"] >= 0
    np.testing.assert_array_equal(layer.weight.numpy(), before)  # the skipped step left the weights alone


def test_lr_schedule_matches_reference():
    cfg = load_config(None, ["model.vocab_size=10", "optim.max_lr=1e-3", "optim.min_lr=1e-4",
                             "optim.warmup_steps=10", "optim.decay_steps=100"]).optim

    def reference(n):
        if n <= 10:
            return 1e-3 * n / 10
        if n >= 100:
            return 1e-4
        return 1e-3 + (1e-4 - 1e-3) * (n - 10) / 90

    sched = WarmupLinearDecay(cfg)
    for n in range(1, 130):
        assert math.isclose(sched(), reference(n), rel_tol=1e-12), n  # LR of the n-th update
        sched.step()
    assert math.isclose(WarmupLinearDecay(cfg).lr_at(55), reference(55))


def test_weight_decay_skips_bias_and_norm():
    from ernie_style.arch.roformer.modeling import RoFormerForPretraining

    cfg = load_config(None, ["model.vocab_size=40", "model.hidden_size=16", "model.num_hidden_layers=1",
                             "model.num_attention_heads=2", "model.intermediate_size=32", "optim.weight_decay=0.5",
                             "optim.max_lr=0.1", "optim.warmup_steps=0", "optim.grad_clip=0"])
    model = RoFormerForPretraining(cfg.model)
    by_name = dict(model.named_parameters())
    decayed = {n for n, p in by_name.items() if p.name in decay_param_names(model)}
    assert "roformer.encoder.layers.0.linear1.weight" in decayed and "cls.seq_relationship.weight" in decayed
    for n in by_name:
        assert (n in decayed) != ("bias" in n or "norm" in n), n
    # numerically: with zero gradients AdamW only decays, p <- p * (1 - lr * wd), on the decayed set only
    before = {n: p.numpy().copy() for n, p in by_name.items()}
    opt = build_optimizer(model, cfg.optim, WarmupLinearDecay(cfg.optim))
    for p in model.parameters():
        p.grad = paddle.zeros_like(p)
    opt.step()
    for n, p in by_name.items():
        factor = 1 - 0.1 * 0.5 if n in decayed else 1.0
        np.testing.assert_allclose(p.numpy(), before[n] * factor, rtol=1e-6, atol=1e-7, err_msg=n)


def test_batch_sampler_order_is_independent_of_ranks():
    single = [i for b in GlobalBatchSampler(2, 5, 16, 2, 0, 1) for i in b]
    assert single == list(range(32, 80))
    two = [list(GlobalBatchSampler(2, 5, 16, 4, r, 2)) for r in range(2)]
    merged = []
    for g in range(3):  # rank 0's micro-batches then rank 1's, per global batch
        merged += [i for b in two[0][2 * g:2 * g + 2] for i in b] + [i for b in two[1][2 * g:2 * g + 2] for i in b]
    assert merged == single and len(GlobalBatchSampler(2, 5, 16, 4, 1, 2)) == 6


@pytest.mark.parametrize("override, needle", [
    ({"data.prefixes": "[/nope/corpus]"}, "/nope/corpus.idx not found"),
    ({"model.vocab_size": 100}, "model.vocab_size=100: smaller than the 125 entries"),
    ({"train.global_batch_size": 12}, "train.global_batch_size=12: expected a multiple of"),
    ({"data.prefixes": "[{nowwm}]"}, "nowwm.wwm not found (the word-start flags"),
    ({"train.resume": "/nope/ckpt"}, "train.resume='/nope/ckpt'"),
])
def test_user_errors_exit_2_with_one_line(data, tmp_path, capsys, override, needle):
    import shutil

    if "{nowwm}" in str(override.get("data.prefixes")):  # .idx/.bin present, .wwm missing
        nowwm = str(tmp_path / "nowwm")
        for ext in (".idx", ".bin"):
            shutil.copyfile(data[0] + ext, nowwm + ext)
        override = {"data.prefixes": f"[{nowwm}]"}
    assert run(data, tmp_path, **override) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert not os.path.exists(tmp_path / "checkpoints")


def test_check_uses_the_launch_world_size(data, tmp_path, capsys):
    over = U.tiny_overrides(*data, str(tmp_path), **{"train.micro_batch_size": 4, "train.global_batch_size": 12})
    assert run_pretrain.main(["--config", CONFIG, "--check", *over]) == 0  # 1 rank: 12 = 4 x 3
    assert run_pretrain.main(["--config", CONFIG, "--check", "--world-size", "2", *over]) == 2
    err = capsys.readouterr().err
    assert "train.global_batch_size=12: expected a multiple of train.micro_batch_size (4) x data-parallel " \
           "size (2) = 8" in err


# fp16 AMP configured on CPU: Paddle disables the GradScaler, so nothing would skip the bad step; it must stop.
@pytest.mark.parametrize("amp", [{}, {"amp.enable": True, "amp.dtype": "float16"}], ids=["fp32", "fp16-on-cpu"])
def test_non_finite_loss_stops_and_keeps_the_last_checkpoint(data, tmp_path, monkeypatch, capsys, amp):
    import ernie_style.tasks.pretrain as trainer_mod

    real = trainer_mod.pretraining_loss
    n = {"calls": 0}

    def exploding(*args):
        n["calls"] += 1
        loss, lm, sop = real(*args)
        return (loss, lm * float("nan"), sop) if n["calls"] > 2 else (loss, lm, sop)

    monkeypatch.setattr(trainer_mod, "pretraining_loss", exploding)
    assert run(data, tmp_path, **{"train.save_steps": 1, "train.max_steps": 5, **amp}) == 1
    err = capsys.readouterr().err
    root = tmp_path / "checkpoints"
    assert "non-finite loss nan at step 3" in err
    assert f"The newest checkpoint of this run: {root / 'step_00000002'}" in err  # the real one, not the directory
    assert os.readlink(root / "latest") == "step_00000002"
    assert sorted(n for n in os.listdir(root) if n.startswith("step_")) == ["step_00000001", "step_00000002"]


def test_data_tokenized_with_another_vocab_is_refused(data, tmp_path, capsys):
    import shutil

    prefix, vocab = data
    copy = str(tmp_path / "copy")
    for ext in (".idx", ".bin", ".wwm"):
        shutil.copyfile(prefix + ext, copy + ext)
    from dataclasses import replace

    from data_tools import meta as dmeta
    from data_tools.tokenizers import TokenizerSpec

    real = dmeta.DatasetMeta(  # only the vocab matters here
        created_by="test", vocab=dmeta.VocabInfo(vocab, "0" * 64, 125), tokenizer=TokenizerSpec(True),
        segmenter=dmeta.SegmenterInfo("none", "", ""), settings={}, dtype="uint16", wwm_encoding="uint8", inputs=[],
        counts=dmeta.Counts(), skipped={}, skipped_first={}, repaired={}, repaired_first={}, files={}, run={})
    with open(copy + ".meta.json", "w") as f:
        json.dump(real.to_dict(), f)
    assert run((copy, vocab), tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert f"not the vocab {copy} was tokenized with" in err and "Traceback" not in err
    with open(copy + ".meta.json", "w") as f:
        json.dump(replace(real, vocab=dmeta.VocabInfo(vocab, ckpt.sha256_file(vocab), 125)).to_dict(), f)
    from ernie_style.tasks.pretrain import check_inputs

    check_inputs(load_config(CONFIG, U.tiny_overrides(copy, vocab, str(tmp_path / "out"))), 1)  # no error


def test_non_finite_loss_says_when_there_is_no_checkpoint(data, tmp_path, capsys):
    """A learning rate that blows the weights up (a real non-finite loss, no injection): before the first save
    the stop says there is nothing to resume from, not a checkpoint directory that does not exist."""
    assert run(data, tmp_path, **{"optim.max_lr": 1e30, "train.max_steps": 5}) == 1
    err = capsys.readouterr().err
    line = next(ln for ln in err.splitlines() if "non-finite loss" in ln)
    assert re.match(r"error: non-finite loss (nan|inf) at step \d \(learning rate \d\.\d{5}e\+\d\d\); stopping "
                    r"without saving it\. No checkpoint of this run was saved \(the first is due at step 1000, "
                    r"train\.save_steps\): there is nothing to resume from$", line), line
    assert not (tmp_path / "checkpoints").exists() or not os.listdir(tmp_path / "checkpoints")


def test_non_finite_loss_after_a_resume_names_the_resumed_checkpoint(data, tmp_path, capsys):
    assert run(data, tmp_path, **{"train.max_steps": 2, "train.save_steps": 2}) == 0
    capsys.readouterr()
    assert run(data, tmp_path, **{"train.max_steps": 6, "train.resume": "auto", "optim.max_lr": 1e30}) == 1
    err = capsys.readouterr().err
    assert "stopping without saving it. No checkpoint was saved since the resume from " \
           f"{tmp_path / 'checkpoints' / 'step_00000002'} (the newest of this run)" in err


def test_resume_reports_the_run_length_and_a_changed_schedule(data, tmp_path):
    """Pretraining: a longer run (train.max_steps) keeps the schedule (it depends on optim.* only), said as a key
    change alone; a shorter optim.decay_steps changes the learning rate ahead, said with both values."""
    assert run(data, tmp_path, **{"train.max_steps": 2, "train.save_steps": 1}) == 0
    assert run(data, tmp_path, **{"train.max_steps": 3, "train.save_steps": 1, "train.resume": "auto"}) == 0
    log = open(tmp_path / "train.log", encoding="utf-8").read()
    assert "resume: train.max_steps: 2 (checkpoint) -> 3 (now)" in log and "learning-rate schedule" not in log
    assert run(data, tmp_path, **{"train.max_steps": 4, "train.resume": "auto", "optim.decay_steps": 10}) == 0
    new = open(tmp_path / "train.log", encoding="utf-8").read()[len(log):]
    # max_lr 1e-3 after 2 warmup steps, linear to min_lr 1e-4 (the demo config) at decay_steps
    old_lr, new_lr = 1e-3 - 9e-4 * (4 - 2) / 98, 1e-3 - 9e-4 * (4 - 2) / 8
    assert "resume: optim.decay_steps: 100 (checkpoint) -> 10 (now)" in new
    assert ("resume: learning-rate schedule recomputed: total steps 3 -> 4, decay ends at step 100 -> 10; the "
            f"learning rate of step 4 is {new_lr:.5e} ({old_lr:.5e} under the checkpoint's)") in new
