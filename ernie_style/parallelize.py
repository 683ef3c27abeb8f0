"""Everything that wraps the pure model for training, in one place (torchtitan's ``parallelize.py``).

- :func:`init_distributed`: device choice and ``fleet.init(is_collective=True)`` (NCCL on GPUs, gloo on CPU
  through ``paddle.distributed.launch``; a single process needs no launcher).
- :func:`apply_recompute`: activation recomputation per encoder layer, without touching ``modeling.py``.
- :class:`Amp`: the one AMP code path: ``paddle.amp.auto_cast`` / ``GradScaler`` / ``paddle.amp.decorate``
  (O2 with fp32 master weights) are always called with the configured values; Paddle makes them no-ops on
  CPU, which we say once.
- :func:`build_optimizer`: AdamW whose weight decay skips biases and norm weights, global-norm clipping.
- :func:`wrap_model`: data parallel (``fleet.distributed_model``) or group sharding stage 1/2.
"""
from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import dataclass

import numpy as np
import paddle
import paddle.distributed as dist
from paddle.distributed import fleet

from ernie_style import paddle_internals
from ernie_style.config import AmpConfig, OptimConfig, PretrainConfig


@dataclass
class DistInfo:
    rank: int
    world_size: int
    local_rank: int
    device: str  # "cpu" or "gpu"

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(cfg: PretrainConfig) -> DistInfo:
    """Pick the device, start the collective runtime when launched with several ranks."""
    # The process-group timeout Paddle reads (ms) when its global env is first built, i.e. in fleet.init below:
    # a collective that waits longer (a stuck rank) fails the job instead of hanging it.  Paddle passes it to
    # NCCL; its gloo (CPU) groups have a fixed 30 s timeout of their own.
    os.environ["PADDLE_PG_TIMEOUT"] = str(int(cfg.dist.timeout_minutes * 60_000))
    want = cfg.train.device
    has_gpu = paddle.device.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0
    if want == "gpu" and not has_gpu:
        raise ValueError("train.device='gpu': no CUDA device is visible (expected auto or cpu)")
    device = "gpu" if (has_gpu and want != "cpu") else "cpu"
    local_rank = int(os.environ.get("PADDLE_LOCAL_RANK", os.environ.get("PADDLE_RANK_IN_NODE", "0")))
    paddle.set_device(f"gpu:{paddle.distributed.ParallelEnv().device_id}" if device == "gpu" else "cpu")
    world = int(os.environ.get("PADDLE_TRAINERS_NUM", "1"))
    if cfg.dist.sharding_stage == 2 and device != "gpu":
        raise ValueError("dist.sharding_stage=2: Paddle's group_sharded_parallel runs only on GPU/XPU "
                         "(expected 0 or 1 on CPU)")
    if world > 1:
        # Stage 1 = fleet's DygraphShardingOptimizer over all ranks (optimizer states split, gradients reduced
        # at the optimizer step); stage 0/2 = a plain data-parallel group (stage 2 wraps it below).
        stage1 = cfg.dist.sharding_stage == 1
        strategy = fleet.DistributedStrategy()
        strategy.hybrid_configs = {"dp_degree": 1 if stage1 else world, "mp_degree": 1, "pp_degree": 1,
                                   "sharding_degree": world if stage1 else 1}
        fleet.init(is_collective=True, strategy=strategy)
    return DistInfo(rank=dist.get_rank() if world > 1 else 0, world_size=world, local_rank=local_rank, device=device)


def die_with_launcher() -> None:
    """Under paddle.distributed.launch, ask Linux to SIGKILL this rank when the launcher dies.

    The launcher starts every rank in its own session, so killing the launcher (kill -9, OOM killer) would
    otherwise leave ranks hanging in a collective, holding their devices.
    """
    if "PADDLE_TRAINERS_NUM" not in os.environ or not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    PR_SET_PDEATHSIG = 1
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    if os.getppid() == 1:  # the launcher died before prctl took effect
        os._exit(1)


def barrier(info: DistInfo) -> None:
    if info.world_size > 1:
        t = paddle.zeros([1], dtype="float32")
        dist.all_reduce(t)  # an all-reduce is a barrier on every backend (gloo included)


def all_reduce_sum(values, info: DistInfo):
    """Sum a list of Python floats over all ranks (one collective)."""
    if info.world_size == 1:
        return [float(v) for v in values]
    t = paddle.to_tensor([float(v) for v in values], dtype="float64")
    dist.all_reduce(t)
    return [float(v) for v in t.numpy()]


# ----------------------------------------------------------------------------------------------
# Recompute


def apply_recompute(model) -> int:
    """Recompute each encoder layer's activations in backward; returns the number of wrapped layers."""
    from paddle.distributed.fleet.utils import recompute

    layers = model.roformer.encoder.layers
    for layer in layers:
        inner = layer.forward

        def forward(*args, _inner=inner, _layer=layer, **kwargs):
            if not _layer.training:
                return _inner(*args, **kwargs)
            return recompute(_inner, *args, use_reentrant=False, **kwargs)

        layer.forward = forward
    return len(layers)


# ----------------------------------------------------------------------------------------------
# AMP


class Amp:
    """auto_cast + GradScaler + (O2) decorate, called the same way on every device."""

    def __init__(self, cfg: AmpConfig, device: str, log=print):
        self.cfg = cfg
        self.enabled = cfg.enable
        self.fp16 = cfg.enable and cfg.dtype == "float16"
        # Dynamic loss scaling only matters for fp16; bf16 has fp32's exponent range.
        self.scaler = paddle.amp.GradScaler(
            enable=self.fp16,
            init_loss_scaling=cfg.init_loss_scaling,
            incr_every_n_steps=cfg.incr_every_n_steps,
            decr_every_n_nan_or_inf=cfg.decr_every_n_nan_or_inf,
            use_dynamic_loss_scaling=True,
        )
        self.skipped_steps = 0
        if cfg.enable and device == "cpu":
            log(f"amp: enabled in the config (dtype {cfg.dtype}, level {cfg.level}) but the device is CPU: "
                "Paddle's auto_cast/GradScaler/decorate are no-ops there, training runs in float32")

    def decorate(self, model, optimizer):
        if self.enabled and self.cfg.level == "O2":
            model, optimizer = paddle.amp.decorate(
                models=model, optimizers=optimizer, level="O2", dtype=self.cfg.dtype, master_weight=True)
        return model, optimizer

    def autocast(self):
        return paddle.amp.auto_cast(
            enable=self.enabled,
            level=self.cfg.level,
            dtype=self.cfg.dtype,
            custom_white_list=list(self.cfg.custom_white_list) or None,
            custom_black_list=list(self.cfg.custom_black_list) or None,
        )

    def scale(self, loss):
        return self.scaler.scale(loss)

    def unscale_(self, optimizer):
        if self.scaler.is_enable():
            self.scaler.unscale_(optimizer)

    def step(self, optimizer) -> bool:
        """Optimizer step through the scaler; returns False when it was skipped (inf/nan gradients)."""
        self.scaler.step(optimizer)
        self.scaler.update()
        skipped = bool(self.scaler.is_enable() and paddle_internals.scaler_found_inf(self.scaler))
        self.skipped_steps += int(skipped)
        return not skipped

    def stats(self) -> dict:
        """loss_scaling / num_good_steps / num_bad_steps as in ernie-1.0's log line (1.0/0/0 when inactive)."""
        if not self.scaler.is_enable():
            return {"loss_scaling": 1.0, "num_good_steps": 0, "num_bad_steps": 0, "skipped_steps": self.skipped_steps}
        return {**paddle_internals.scaler_counters(self.scaler), "skipped_steps": self.skipped_steps}

    def state_dict(self) -> dict:
        state = {k: (v.tolist() if hasattr(v, "tolist") else v) for k, v in self.scaler.state_dict().items()}
        return {"scaler": state, "skipped_steps": self.skipped_steps}

    def load_state_dict(self, state: dict) -> None:
        scaler_state = dict(state.get("scaler") or {})
        if scaler_state:  # empty when saved by a disabled scaler (CPU, bf16, AMP off)
            if "scale" in scaler_state:
                scaler_state["scale"] = np.asarray(scaler_state["scale"], dtype="float32")
            self.scaler.load_state_dict(scaler_state)
        self.skipped_steps = int(state.get("skipped_steps", 0))


# ----------------------------------------------------------------------------------------------
# Optimizer and LR schedule


class WarmupLinearDecay(paddle.optimizer.lr.LRScheduler):
    """Linear warmup to ``max_lr``, linear decay to ``min_lr`` at ``decay_steps``, then constant.

    The LR of the n-th optimizer update (n = 1, 2, ...) is ``lr_at(n)``; it depends only on these
    keys, so extending ``train.max_steps`` never changes it.
    """

    def __init__(self, cfg: OptimConfig):
        self.max_lr, self.min_lr = cfg.max_lr, cfg.min_lr
        self.warmup = cfg.resolved_warmup_steps()
        self.decay_steps = cfg.decay_steps
        super().__init__(learning_rate=cfg.max_lr)

    def lr_at(self, n: int) -> float:
        if self.warmup and n <= self.warmup:
            return self.max_lr * n / self.warmup
        if n >= self.decay_steps:
            return self.min_lr
        frac = (n - self.warmup) / (self.decay_steps - self.warmup)
        return self.max_lr - (self.max_lr - self.min_lr) * frac

    def get_lr(self) -> float:
        return self.lr_at(self.last_epoch + 1)  # last_epoch = updates done so far


def decay_param_names(model) -> set:
    """Paddle names of the parameters that get weight decay: everything but biases and norm weights."""
    names = set()
    for structured, p in model.named_parameters():
        leaf = structured.lower()
        if "bias" in leaf or "norm" in leaf:
            continue
        names.add(p.name)
    return names


def build_optimizer(model, cfg: OptimConfig, scheduler):
    decay = decay_param_names(model)
    return paddle.optimizer.AdamW(
        learning_rate=scheduler,
        parameters=model.parameters(),
        beta1=cfg.adam_beta1,
        beta2=cfg.adam_beta2,
        epsilon=cfg.adam_epsilon,
        weight_decay=cfg.weight_decay,
        apply_decay_param_fun=lambda name: name in decay,
        grad_clip=paddle.nn.ClipGradByGlobalNorm(cfg.grad_clip) if cfg.grad_clip > 0 else None,
    )


def global_grad_norm(parameters, reduce_over_ranks: bool = False):
    """L2 norm of the gradients of ``parameters`` as a 0-d float32 tensor (no host sync without ``reduce_over_ranks``).

    ``reduce_over_ranks``: every rank holds the reduced gradients of a disjoint shard of the parameters (sharding),
    so the squared norms are summed over all ranks before the square root.
    """
    sq = paddle.zeros([], dtype="float32")
    for p in parameters:
        if p.grad is not None:
            sq = sq + paddle.sum(paddle.square(p.grad.astype("float32")))
    if reduce_over_ranks:
        dist.all_reduce(sq)
    return paddle.sqrt(sq)


class GradNorm:
    """The norm of the gradient one optimizer step applies (averaged over ranks, before clipping), equal on
    every rank.  ``TrainStep`` calls :meth:`before_step` between backward and ``optimizer.step()`` and reads
    :meth:`value` after it.

    - one rank / plain data parallel: backward all-reduces the gradients, so the local norm is the norm.
    - sharding stage 2: backward reduces each gradient to the rank owning it and frees it elsewhere, so
      every rank holds a disjoint shard: squared norms summed over the ranks.
    - sharding stage 1: gradients stay rank-local until ``optimizer.step()`` reduces each to its owner, and
      the clip then scales them in place; the norm is taken in between, over the parameters this rank owns,
      by wrapping the fleet optimizer's gradient sync (``HybridParallelOptimizer._hybrid_sync_grad``).
    """

    def __init__(self, parameters, stage: int = 0, optimizer=None):
        self.parameters = list(parameters)
        self.stage = stage
        self._value = None
        if stage == 1:
            def measure(owned):
                self._value = global_grad_norm(owned, reduce_over_ranks=True)

            paddle_internals.wrap_sharding_grad_sync(optimizer, measure)

    def before_step(self) -> None:
        if self.stage == 1:
            self._value = paddle.full([], float("nan"), dtype="float32")  # stays nan if the step is skipped
        else:
            self._value = global_grad_norm(self.parameters, reduce_over_ranks=self.stage == 2)

    def value(self):
        assert self._value is not None, "before_step() was not called"
        return self._value


# ----------------------------------------------------------------------------------------------
# Data parallel / sharding


def grads_synced(model) -> bool:
    """False while a backward pass would skip the data-parallel gradient all-reduce (inside ``no_sync``)."""
    return bool(getattr(model, "grad_need_sync", True))


def wrap_model(model, optimizer, amp: Amp, cfg: PretrainConfig, info: DistInfo):
    """Returns (model_for_forward, optimizer, no_sync, grad_norm) where ``no_sync()`` is a context manager that
    skips the gradient all-reduce on non-boundary micro-steps (a null context when not applicable) and
    ``grad_norm`` a :class:`GradNorm` that knows where this setup keeps the reduced gradients."""
    params = model.parameters()
    if info.world_size == 1:
        return model, optimizer, contextlib.nullcontext, GradNorm(params)
    stage = cfg.dist.sharding_stage
    if stage == 0:
        dp_model = fleet.distributed_model(model)
        optimizer = fleet.distributed_optimizer(optimizer)
        return dp_model, optimizer, dp_model.no_sync, GradNorm(params)
    if stage == 1:
        # Gradients are reduced inside the optimizer step, so accumulation needs no no_sync.
        sharded = fleet.distributed_model(model)
        optimizer = fleet.distributed_optimizer(optimizer)
        return sharded, optimizer, contextlib.nullcontext, GradNorm(params, stage=1, optimizer=optimizer)
    from paddle.distributed.sharding import group_sharded_parallel

    sharded_model, optimizer, scaler = group_sharded_parallel(model, optimizer, level="os_g", scaler=amp.scaler)
    amp.scaler = scaler
    # Stage 2 reduces gradient shards in backward hooks; every micro-step communicates (correct, slower).
    return sharded_model, optimizer, contextlib.nullcontext, GradNorm(params, stage=2)
