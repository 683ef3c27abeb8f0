"""What wraps the pure model for training, applied once, outside ``modeling.py`` (torchtitan's ``parallelize.py``).

- :func:`apply_recompute`: activation recomputation per encoder layer.
- :func:`wrap_model`: data parallel (``fleet.distributed_model``) or group sharding stage 1/2.

The pieces around it live in modules named for what they hold: ``ernie_style.training.distributed`` (process group,
collectives, process-death handling), ``ernie_style.training.amp`` (mixed precision), ``ernie_style.training.optim`` (AdamW, LR
schedule, gradient norm) and ``ernie_style.training.paddle_internals`` (every private Paddle API use).
"""
from __future__ import annotations

import contextlib

from paddle.distributed import fleet

from ernie_style.arch import arch_of
from ernie_style.config.pretrain import PretrainConfig
from ernie_style.training.amp import Amp
from ernie_style.training.distributed import DistInfo
from ernie_style.training.optim import GradNorm

# The old import paths of what moved out (users' scripts and older tests import them from here).
from ernie_style.training.distributed import all_reduce_sum, barrier, die_with_launcher, init_distributed  # noqa: E402,F401
from ernie_style.training.optim import WarmupLinearDecay, build_optimizer, decay_param_names  # noqa: E402,F401


def apply_recompute(model) -> int:
    """Recompute each encoder layer's activations in backward; returns the number of wrapped layers."""
    from paddle.distributed.fleet.utils import recompute

    layers = arch_of(model.config).encoder(model).encoder.layers  # the ArchSpec's encoder, pretraining or task model
    for layer in layers:
        inner = layer.forward

        def forward(*args, _inner=inner, _layer=layer, **kwargs):
            if not _layer.training:
                return _inner(*args, **kwargs)
            return recompute(_inner, *args, use_reentrant=False, **kwargs)

        layer.forward = forward
    return len(layers)


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
