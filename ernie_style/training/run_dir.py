"""A run's ``train.output_dir``: one run at a time, and the same directory for every rank.

:func:`claim` is collective and runs before anything is written there:

- rank 0 takes the exclusive lock ``OUTPUT/.run.lock`` (``data_tools.locking``) for the life of the process,
  so a second training into the same directory stops at once with the holder's pid and host instead of
  deleting the first run's temporary files and checkpoints; the kernel releases it when the run ends, however.
- every rank writes a probe file into ``OUTPUT/.probe`` and every rank checks that it sees all of them: with a
  node-local directory on several machines, checkpoints would fail at the first save (rank > 0 writes its RNG
  state into the directory rank 0 created).  Said before training, with the fix.
"""
from __future__ import annotations

import os
import shutil
import socket
from typing import List, Optional

from data_tools import locking
from ernie_style.config.pretrain import ConfigError
from ernie_style.training.checkpoint import agree

RUN_LOCK = ".run.lock"
PROBE_DIR = ".probe"


def _agree(ok: bool, info) -> bool:
    return agree(ok, info)


def claim(output_dir: str, info) -> Optional[locking.Held]:
    """Lock ``output_dir`` for this run and check every rank sees it; returns the lock (rank 0; keep it, release
    it when the run ends)."""
    fd, error = None, None
    try:
        os.makedirs(output_dir, exist_ok=True)
        if info.is_main:
            fd = locking.acquire_exclusive(os.path.join(output_dir, RUN_LOCK),
                                           what=f"train.output_dir={output_dir!r}")
    except (locking.LockHeld, OSError) as e:
        error = str(e)
    if not _agree(error is None, info):
        locking.release(fd)
        raise ConfigError(error or f"train.output_dir={output_dir!r}: rank 0 could not claim it (see its message)")
    if info.world_size > 1:
        _check_shared(output_dir, info)
    return fd


def probe_shared(output_dir: str, info) -> List[int]:
    """Collective: every rank writes a probe file into ``OUTPUT/.probe``; returns the ranks whose file this rank
    does not see (empty when the directory is one for all ranks)."""
    probe = os.path.join(output_dir, PROBE_DIR)
    if info.is_main:
        shutil.rmtree(probe, ignore_errors=True)
        os.makedirs(probe)
    _agree(True, info)
    os.makedirs(probe, exist_ok=True)  # a node-local directory: this rank's own, empty one
    with open(os.path.join(probe, f"rank{info.rank}"), "w", encoding="utf-8") as f:
        f.write(socket.gethostname() + "\n")
    _agree(True, info)
    unseen = [r for r in range(info.world_size) if not os.path.isfile(os.path.join(probe, f"rank{r}"))]
    _agree(True, info)  # every rank has looked before rank 0 removes them
    if info.is_main:
        shutil.rmtree(probe, ignore_errors=True)
    return unseen


def not_shared_message(output_dir: str, info, unseen: List[int]) -> str:
    probe = os.path.join(output_dir, PROBE_DIR)
    seen_by_me = f"rank {info.rank} ({socket.gethostname()}) does not see the probe files of rank(s) " \
                 f"{', '.join(map(str, unseen))}" if unseen else f"another rank does not see rank {info.rank}'s"
    return (f"train.output_dir={output_dir!r} is not shared between the ranks: {seen_by_me} in "
            f"{os.path.abspath(probe)}. Every rank writes checkpoint files there, so it must be one "
            "directory on a filesystem every node mounts (NFS, Lustre, a shared bucket mount); give "
            "such a path as train.output_dir")


def _check_shared(output_dir: str, info) -> None:
    unseen = probe_shared(output_dir, info)
    if not _agree(not unseen, info):
        raise ConfigError(not_shared_message(output_dir, info, unseen))
