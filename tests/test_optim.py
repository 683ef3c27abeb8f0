"""The optimizer seam (``optim.name``): LAMB against a NumPy reference written from the paper, and LAMB through the
trainer (AMP's GradScaler, gradient accumulation, exact resume, a switch of optimizer refused on resume)."""
import json
import os

import numpy as np
import paddle
import pytest

import _trainer_util as U
from ernie_style import run_pretrain
from ernie_style.arch import get_arch
from ernie_style.config.pretrain import ConfigError, load_config
from ernie_style.training import OPTIMIZERS
from ernie_style.tasks.pretrain import PretrainTask
from ernie_style.training.amp import Amp
from ernie_style.training.checkpoint import step_dir_name
from ernie_style.training.distributed import DistInfo
from ernie_style.training.optim import WarmupLinearDecay, build_optimizer, decay_param_names
from ernie_style.training.trainer import Trainer

CONFIG = os.path.join(U.REPO, "configs", "roformer_tiny_demo.yaml")


class NumpyLamb:
    """LAMB as You et al. (2019) write it (Algorithm 2), in float64, after global-norm clipping:

        m <- b1 m + (1 - b1) g          v <- b2 v + (1 - b2) g^2
        m_hat = m / (1 - b1^t)          v_hat = v / (1 - b2^t)
        u = m_hat / (sqrt(v_hat) + eps) + wd p
        p <- p - lr * (||p|| / ||u||) * u

    per parameter tensor; a tensor left out of the weight decay gets ``wd = 0`` and no trust ratio (the BERT
    recipe's exclusion from layer adaptation); a zero norm gives the ratio 1."""

    def __init__(self, params: dict, decayed: set, *, beta1, beta2, eps, wd, clip):
        self.p = {k: v.astype(np.float64) for k, v in params.items()}
        self.m = {k: np.zeros_like(v) for k, v in self.p.items()}
        self.v = {k: np.zeros_like(v) for k, v in self.p.items()}
        self.decayed, self.b1, self.b2, self.eps, self.wd, self.clip = decayed, beta1, beta2, eps, wd, clip
        self.t = 0
        self.clipped_steps = 0
        self.ratios = []  # the trust ratios of the decayed tensors

    def step(self, grads: dict, lr: float) -> None:
        self.t += 1
        norm = np.sqrt(sum(float(np.sum(g.astype(np.float64) ** 2)) for g in grads.values()))
        scale = 1.0
        if self.clip > 0 and norm > self.clip:
            scale, self.clipped_steps = self.clip / norm, self.clipped_steps + 1
        for k, p in self.p.items():
            g = grads[k].astype(np.float64) * scale
            self.m[k] = self.b1 * self.m[k] + (1 - self.b1) * g
            self.v[k] = self.b2 * self.v[k] + (1 - self.b2) * g * g
            m_hat = self.m[k] / (1 - self.b1 ** self.t)
            v_hat = self.v[k] / (1 - self.b2 ** self.t)
            wd = self.wd if k in self.decayed else 0.0
            u = m_hat / (np.sqrt(v_hat) + self.eps) + wd * p
            p_norm, u_norm = np.linalg.norm(p), np.linalg.norm(u)
            ratio = p_norm / u_norm if k in self.decayed and p_norm > 0 and u_norm > 0 else 1.0
            if k in self.decayed:
                self.ratios.append(ratio)
            self.p[k] = p - lr * ratio * u


def lr_reference(n: int, max_lr: float, min_lr: float, warmup: int, decay_steps: int) -> float:
    """The learning rate of update n (1, 2, ...): linear warmup, linear decay to min_lr (as README states it)."""
    if n <= warmup:
        return max_lr * n / warmup
    return max(min_lr, max_lr - (max_lr - min_lr) * (n - warmup) / (decay_steps - warmup))


OPTIM = {"optim.name": "lamb", "optim.max_lr": 0.05, "optim.min_lr": 0.001, "optim.warmup_steps": 2,
         "optim.decay_steps": 6, "optim.weight_decay": 0.1, "optim.adam_beta1": 0.8, "optim.adam_beta2": 0.95,
         "optim.adam_epsilon": 1e-6, "optim.grad_clip": 0.2}


@pytest.mark.parametrize("scaled", [False, True], ids=["fp32", "grad-scaler"])
def test_lamb_steps_match_the_numpy_reference(scaled):
    """Seven LAMB steps of a small RoFormer (warmup, decay, the clip active on some steps, decay exclusions):
    every parameter within 1e-6 of the reference fed the same gradients.  ``grad-scaler``: the loss goes through
    a real, enabled GradScaler (scale 1024, unscaled before the step, as the trainer does)."""
    cfg = load_config(None, ["model.vocab_size=40", "model.hidden_size=16", "model.num_hidden_layers=2",
                             "model.num_attention_heads=2", "model.intermediate_size=32",
                             "model.hidden_dropout_prob=0", "model.attention_probs_dropout_prob=0",
                             *[f"{k}={v}" for k, v in OPTIM.items()],
                             *(["amp.enable=true", "amp.dtype=float16"] if scaled else [])])
    paddle.seed(3)
    model = get_arch(cfg.model_arch).pretraining_model_class()(cfg.model)
    sched = WarmupLinearDecay(cfg.optim)
    opt = build_optimizer(model, cfg.optim, sched)
    assert isinstance(opt, paddle.optimizer.Lamb)
    amp = Amp(cfg.amp, "cpu", log=lambda m: None)
    if scaled:
        amp.scaler = U.real_enabled_scaler(enable=True, init_loss_scaling=1024.0)
    first_param = next(iter(model.parameters()))
    names = {p.name: n for n, p in model.named_parameters()}
    decayed = {names[p] for p in decay_param_names(model)}
    assert {"roformer.encoder.layers.0.linear1.weight", "cls.seq_relationship.weight"} <= decayed
    assert not {"roformer.encoder.layers.0.linear1.bias", "roformer.encoder.layers.0.norm1.weight"} & decayed
    o = cfg.optim
    ref = NumpyLamb({n: p.numpy() for n, p in model.named_parameters()}, decayed, beta1=o.adam_beta1,
                    beta2=o.adam_beta2, eps=o.adam_epsilon, wd=o.weight_decay, clip=o.grad_clip)
    init = {k: v.copy() for k, v in ref.p.items()}
    rng = np.random.default_rng(0)
    ids = paddle.to_tensor(rng.integers(0, 40, size=(3, 12)))
    types = paddle.to_tensor((np.arange(12) >= 6).astype("int64")[None].repeat(3, 0))
    for n in range(1, 8):
        with amp.autocast():  # on CPU Paddle computes in float32 anyway; the scaler reads its dtype
            mlm, sop = model(ids, token_type_ids=types)
        # a loss whose gradient reaches every parameter (MLM decoder, SOP head and pooler included)
        loss = (mlm.astype("float32") ** 2).mean() * (1 + n) + (sop.astype("float32") ** 2).sum()
        amp.scale(loss).backward()
        raw = first_param.grad.numpy().copy()
        amp.unscale_(opt)
        np.testing.assert_allclose(raw, first_param.grad.numpy() * (1024.0 if scaled else 1.0), rtol=1e-6)
        assert amp.scaler.is_enable() == scaled
        grads = {names[p.name]: p.grad.numpy() for p in model.parameters()}
        assert all(np.abs(g).max() > 0 for g in grads.values())
        assert amp.step(opt)
        opt.clear_grad()
        sched.step()
        ref.step(grads, lr_reference(n, o.max_lr, o.min_lr, o.resolved_warmup_steps(), o.decay_steps))
        worst = max((float(np.abs(p.numpy() - ref.p[k]).max()), k) for k, p in model.named_parameters())
        assert worst[0] <= 1e-6, (n, worst)
    assert 0 < ref.clipped_steps < 7  # the clip acted on some steps, not on all
    assert min(ref.ratios) < 0.05 < 1.5 < max(ref.ratios)  # the trust ratio matters: these are no Adam steps
    moved = {k: float(np.abs(p.numpy() - init[k]).max()) for k, p in model.named_parameters()}
    assert min(moved.values()) > 1e-4, min(moved.items(), key=lambda kv: kv[1])  # every tensor was trained


def test_the_registry_builds_each_optimizer_and_the_config_checks_the_name():
    model = paddle.nn.Sequential(paddle.nn.Linear(4, 3), paddle.nn.LayerNorm(3))
    built = {}
    for name in OPTIMIZERS:
        cfg = load_config(None, ["model.vocab_size=10", f"optim.name={name}"]).optim
        built[name] = type(build_optimizer(model, cfg, WarmupLinearDecay(cfg))).__name__
    assert built == {"adamw": "AdamW", "lamb": "Lamb"}
    with pytest.raises(ConfigError, match=r"^optim.name='sgd': expected one of adamw, lamb$"):
        load_config(None, ["model.vocab_size=10", "optim.name=sgd"])
    with pytest.raises(ConfigError, match=r"^optim.weight_decay=0.0: expected a number > 0 with optim.name=lamb"):
        load_config(None, ["model.vocab_size=10", "optim.name=lamb", "optim.weight_decay=0"])


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return U.make_data(str(tmp_path_factory.mktemp("optim_data")))


def run(data, out, *, check=False, **extra):
    prefix, vocab = data
    return run_pretrain.main(["--config", CONFIG, *(["--check"] if check else []),
                              *U.tiny_overrides(prefix, vocab, str(out), **{"optim.name": "lamb", **extra})])


def weights(out, step):
    return paddle.load(os.path.join(str(out), "checkpoints", step_dir_name(step), "model_state.pdparams"))


def test_lamb_trains_with_accumulation_and_resumes_exactly(data, tmp_path, capsys):
    """LAMB through the trainer: 1 x 2 x 4 (accumulation) gives the weights of 1 x 8 x 1; a run stopped at step 3
    and resumed gives the losses and weights of the straight 6 steps; resuming it as AdamW is refused before
    launch, in one line naming both optimizers."""
    drop = {"model.hidden_dropout_prob": 0.1, "model.attention_probs_dropout_prob": 0.1, "train.save_steps": 3}
    straight, resumed, acc = tmp_path / "straight", tmp_path / "resumed", tmp_path / "acc"
    assert run(data, straight, **drop, **{"train.max_steps": 6}) == 0
    assert run(data, resumed, **drop, **{"train.max_steps": 3}) == 0
    assert run(data, resumed, **drop, **{"train.max_steps": 6, "train.resume": "auto"}) == 0
    a = U.log_losses(os.path.join(straight, "train.log"))
    b = U.log_losses(os.path.join(resumed, "train.log"))
    assert [a[s] for s in (4, 5, 6)] == [b[s] for s in (4, 5, 6)]
    wa, wb = weights(straight, 6), weights(resumed, 6)
    assert all(np.array_equal(wa[k].numpy(), wb[k].numpy()) for k in wa)
    opt_state = paddle.load(os.path.join(resumed, "checkpoints", step_dir_name(6), "optimizer.pdopt"))
    assert "roformer.encoder.layers.0.linear1.weight/moment1_0" in opt_state  # structured names, as for AdamW

    # accumulation, dropout off (dropout streams differ with the micro-batch size)
    nodrop = {"train.save_steps": 3, "train.max_steps": 3}
    assert run(data, acc / "8x1", **nodrop) == 0
    assert run(data, acc / "2x4", **nodrop, **{"train.micro_batch_size": 2}) == 0
    w8, w2 = weights(acc / "8x1", 3), weights(acc / "2x4", 3)
    for k in w8:
        np.testing.assert_allclose(w8[k].numpy(), w2[k].numpy(), rtol=0, atol=1e-5, err_msg=k)

    # switching optimizer on resume: refused by --check (run_pretrain.sh, before any process starts), and by the
    # trainer itself (a caller that builds a Trainer without the preflight)
    capsys.readouterr()
    ckpt6 = os.path.join(resumed, "checkpoints", step_dir_name(6))
    expected = (f"optim.name='adamw': the checkpoint {ckpt6} was trained with optim.name='lamb' and holds its "
                "optimizer state; resume it with optim.name=lamb, or start adamw from its weights alone")
    switch = {**drop, "train.max_steps": 8, "train.resume": "auto", "optim.name": "adamw"}
    assert run(data, resumed, check=True, **switch) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and err[0].startswith("error: " + expected), err
    cfg = load_config(CONFIG, U.tiny_overrides(*data, str(resumed), **switch))
    with pytest.raises(ConfigError) as e:
        Trainer(cfg, DistInfo(0, 1, 0, "cpu"), PretrainTask(cfg))
    assert str(e.value).startswith(expected) and "\n" not in str(e.value)
    assert "global step 7," not in open(os.path.join(resumed, "train.log")).read()


def test_fine_tuning_takes_lamb_and_refuses_a_switch_on_resume(tmp_path, capsys):
    """Fine-tuning reads the same optim keys: a LAMB run learns (LAMB's steps are relative to each tensor's norm,
    so its learning rate is larger than AdamW's), and resuming its checkpoint as AdamW is refused in
    one line (fine-tuning's own resume check, before launch)."""
    import _finetune_util as F
    from ernie_style import finetune

    d = F.seq_files(str(tmp_path / "data"))
    out = tmp_path / "out"
    over = F.tiny_overrides(str(out), d["train"], d["dev"], d["vocab"], **{
        "train.epochs": 2, "train.resume": "auto", "optim.name": "lamb", "optim.max_lr": 0.1})
    seq = os.path.join(U.REPO, "configs", "finetune", "seq_cls.yaml")
    assert finetune.main([seq, *over]) == 0
    dev = json.load(open(out / "results.json"))["dev"]
    assert dev["accuracy"] > 0.5, dev  # 3 balanced classes: chance is 1/3
    capsys.readouterr()
    assert finetune.main([seq, *over, "optim.name=adamw", "train.epochs=2"]) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and "error: optim.name='adamw': the checkpoint " in err[0] \
        and "was trained with optim.name='lamb'" in err[0], err
