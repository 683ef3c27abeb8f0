"""The optimizers and their schedule: AdamW or LAMB (``optim.name``; weight decay on matrices only), global-norm
clipping, warmup + linear decay of the learning rate, and the gradient norm of each step (:class:`GradNorm`, which
knows where each parallel setup keeps the reduced gradients).

The builders are registered by name in :mod:`ernie_style.training` (``OPTIMIZERS``); each takes the same keys of
the ``optim`` section, so a recipe switches optimizer with one key.  Both are Paddle's own optimizers, so AMP
(``GradScaler``: a step with inf/nan gradients is skipped by ``Optimizer.step`` itself; O2 master weights through
``paddle.amp.decorate``), fleet's data-parallel and sharding wrappers and the checkpoint format
(``optimizer.state_dict()``) treat them alike."""
from __future__ import annotations

from typing import Optional

import paddle
import paddle.distributed as dist

from ernie_style.config.pretrain import OptimConfig
from ernie_style.training import optimizer_builder, paddle_internals
from ernie_style.training.schedule import LrSegment, Schedule


class WarmupLinearDecay(paddle.optimizer.lr.LRScheduler):
    """Linear warmup to ``max_lr``, linear decay to ``min_lr`` at ``decay_steps``, then constant; restarted by the
    phases of ``schedule`` that set a learning-rate key (:mod:`ernie_style.training.schedule`).

    The LR of the n-th optimizer update (n = 1, 2, ...) is ``lr_at(n)``; it depends only on these
    keys, so extending ``train.max_steps`` never changes it.  ``max_lr``, ``min_lr``, ``warmup``, ``decay_steps``:
    the first segment's (the ``optim`` section's).
    """

    def __init__(self, cfg: OptimConfig, schedule: Optional[Schedule] = None):
        self.max_lr, self.min_lr = cfg.max_lr, cfg.min_lr
        self.warmup = cfg.resolved_warmup_steps()
        self.decay_steps = cfg.decay_steps
        self.segments = schedule.lr_at if schedule is not None else \
            LrSegment(0, self.warmup, self.decay_steps, self.max_lr, self.min_lr).lr
        super().__init__(learning_rate=cfg.max_lr)

    def lr_at(self, n: int) -> float:
        return self.segments(n)

    def get_lr(self) -> float:
        return self.lr_at(self.last_epoch + 1)  # last_epoch = updates done so far


def decay_param_names(model) -> set:
    """Paddle names of the parameters that get weight decay: the matrices (rank >= 2: Linear weights and
    embeddings), not the vectors (biases, LayerNorm scales and shifts), decided by shape as nanoGPT does."""
    return {p.name for p in model.parameters() if p.ndim >= 2}


def build_optimizer(model, cfg: OptimConfig, scheduler):
    """The optimizer ``cfg.name`` names, over ``model.parameters()``, its learning rate from ``scheduler``."""
    return optimizer_builder(cfg.name)(model, cfg, scheduler)


def _grad_clip(cfg: OptimConfig):
    return paddle.nn.ClipGradByGlobalNorm(cfg.grad_clip) if cfg.grad_clip > 0 else None


def build_adamw(model, cfg: OptimConfig, scheduler):
    """AdamW (decoupled weight decay ``p <- p - lr * wd * p`` on :func:`decay_param_names`)."""
    decay = decay_param_names(model)
    return paddle.optimizer.AdamW(
        learning_rate=scheduler,
        parameters=model.parameters(),
        beta1=cfg.adam_beta1,
        beta2=cfg.adam_beta2,
        epsilon=cfg.adam_epsilon,
        weight_decay=cfg.weight_decay,
        apply_decay_param_fun=lambda name: name in decay,
        grad_clip=_grad_clip(cfg),
    )


def build_lamb(model, cfg: OptimConfig, scheduler):
    """LAMB (You et al. 2019, "Large Batch Optimization for Deep Learning: Training BERT in 76 minutes"), Paddle's
    ``paddle.optimizer.Lamb``: per parameter tensor, the Adam direction with bias correction plus the weight decay,
    ``u = m_hat / (sqrt(v_hat) + eps) + wd * p``, scaled by the trust ratio ``||p|| / ||u||``:
    ``p <- p - lr * ||p|| / ||u|| * u``.  The parameters :func:`decay_param_names` leaves out (biases, LayerNorm)
    get neither the decay nor the trust ratio (Paddle's ``always_adapt=False``; Google's BERT LAMB excludes the same
    parameters from both): a plain Adam step.  ``optim.weight_decay`` is ``lamb_weight_decay``; beta1, beta2,
    epsilon, the clip and the schedule are the AdamW keys'."""
    decay = decay_param_names(model)
    return paddle.optimizer.Lamb(
        learning_rate=scheduler,
        parameters=model.parameters(),
        beta1=cfg.adam_beta1,
        beta2=cfg.adam_beta2,
        epsilon=cfg.adam_epsilon,
        lamb_weight_decay=cfg.weight_decay,
        exclude_from_weight_decay_fn=lambda p: p.name not in decay,
        grad_clip=_grad_clip(cfg),
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
