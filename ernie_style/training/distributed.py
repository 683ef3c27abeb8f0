"""The process group and the collectives the trainer uses (fleet collective on GPUs/NCCL, gloo on CPU).

- :func:`init_distributed`: device choice (on CPU with the process settings of :mod:`ernie_style.training.cpu_runtime`) and
  ``fleet.init(is_collective=True)`` (a single process needs no launcher); :class:`DistInfo` says who this rank is.
- :func:`die_with_launcher`: process-death handling (a rank dies with its launcher instead of hanging).
- :func:`barrier`, :func:`all_reduce_sum`: the two collectives of the trainer's bookkeeping.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional, Tuple

import paddle
import paddle.distributed as dist
from paddle.distributed import fleet

from ernie_style.config.pretrain import ConfigError, PretrainConfig
from ernie_style.training.cpu_runtime import tune_cpu_process
from ernie_style.training.parent_death import die_with_parent


@dataclass
class DistInfo:
    rank: int
    world_size: int
    local_rank: int
    device: str  # "cpu" or "gpu"
    runtime: Tuple[str, ...] = ()  # process settings applied for the device (ernie_style.training.cpu_runtime)

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
        raise ConfigError("train.device='gpu': no CUDA device is visible (expected auto or cpu)")
    device = "gpu" if (has_gpu and want != "cpu") else "cpu"
    local_rank = int(os.environ.get("PADDLE_LOCAL_RANK", os.environ.get("PADDLE_RANK_IN_NODE", "0")))
    paddle.set_device(f"gpu:{paddle.distributed.ParallelEnv().device_id}" if device == "gpu" else "cpu")
    runtime = tuple(tune_cpu_process()) if device == "cpu" else ()
    world = int(os.environ.get("PADDLE_TRAINERS_NUM", "1"))
    if cfg.dist.sharding_stage == 2 and device != "gpu":
        raise ConfigError("dist.sharding_stage=2: Paddle's group_sharded_parallel runs only on GPU/XPU "
                         "(expected 0 or 1 on CPU)")
    if world > 1:
        # Stage 1 = fleet's DygraphShardingOptimizer over all ranks (optimizer states split, gradients reduced
        # at the optimizer step); stage 0/2 = a plain data-parallel group (stage 2 wraps it below).
        stage1 = cfg.dist.sharding_stage == 1
        strategy = fleet.DistributedStrategy()
        strategy.hybrid_configs = {"dp_degree": 1 if stage1 else world, "mp_degree": 1, "pp_degree": 1,
                                   "sharding_degree": world if stage1 else 1}
        fleet.init(is_collective=True, strategy=strategy)
    return DistInfo(rank=dist.get_rank() if world > 1 else 0, world_size=world, local_rank=local_rank, device=device,
                    runtime=runtime)


def launch_world_size(requested: Optional[int] = None, check: bool = False) -> int:
    """The number of ranks of this launch (the launcher's PADDLE_TRAINERS_NUM, 1 without one); a CLI's
    ``--world-size N`` replaces it, only together with ``--check`` (validating for a launch yet to come)."""
    if requested is None:
        return int(os.environ.get("PADDLE_TRAINERS_NUM", "1"))
    if not check or requested < 1:
        raise ConfigError(f"--world-size={requested}: expected >= 1, together with --check")
    return requested


def die_with_launcher() -> None:
    """Under paddle.distributed.launch, ask Linux to SIGKILL this rank when the launcher dies.

    The launcher starts every rank in its own session, so killing the launcher (kill -9, OOM killer, the death of
    run_pretrain.sh, which takes its launcher along) would otherwise leave ranks hanging in a collective, holding
    their devices.
    """
    if "PADDLE_TRAINERS_NUM" not in os.environ:
        return
    launcher = os.getppid()
    if launcher == 1 or not die_with_parent(launcher):  # the launcher died before the request took effect
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
