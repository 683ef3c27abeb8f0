"""``run_pretrain.sh --check-cluster`` / ``run_finetune.sh --check-cluster``: a launch that trains nothing.

Run on every machine exactly like the real command, it goes through the same steps up to the first training step
(the config and data check, the rendezvous of :mod:`ernie_style.training.rendezvous`, ``paddle.distributed.launch``
and the collective runtime), then each rank reports, and every machine prints one table (from the gathered
reports, so the same table everywhere):

- rank, machine, host, device, this rank's endpoint and the network interface that holds its address;
- whether the data (prefixes by the sha256 in their ``meta.json`` and their sizes; fine-tuning files by sha256) and
  the vocab match rank 0's, and whether every rank sees the others' probe files in ``train.output_dir``;
- the all-reduce bandwidth between machines (one rank per machine; on one machine, between its processes):
  ``CHECK_CLUSTER_MB`` MB (default 256), the median of ``CHECK_CLUSTER_ROUNDS`` rounds (default 5) after one
  warm-up round, as nccl-tests' bus bandwidth ``2 (n-1)/n x size / time``;
- the communication settings that decide which network is used: on GPU ``NCCL_SOCKET_IFNAME``,
  ``NCCL_IB_DISABLE`` (and the other ``NCCL_*`` set) with the interface NCCL's default rule picks; on CPU
  ``GLOO_SOCKET_IFNAME`` and the address gloo takes without it (the host name's: a loopback address there cannot
  work across machines).

Then one verdict line: ``cluster check: ok ...`` (exit 0: the real command would start) or each problem named
(exit 1).  The ranks themselves exit 0 (a failing rank would bring the launcher's error dump); the verdict goes to
the file the launch script gives (``--check-cluster-result``), which the script turns into its exit code.  Ranks
that cannot reach each other stop after the join timeout with one line naming the endpoints.
"""
from __future__ import annotations

import fcntl
import os
import socket
import statistics
import struct
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import paddle
import paddle.distributed as dist

from ernie_style.training import rendezvous, run_dir
from ernie_style.training.distributed import DistInfo, init_distributed

SIZE_ENV, ROUNDS_ENV = "CHECK_CLUSTER_MB", "CHECK_CLUSTER_ROUNDS"
# The communication settings shown (those set, besides these that are always shown).
NCCL_SHOWN, GLOO_SHOWN = ("NCCL_SOCKET_IFNAME", "NCCL_IB_DISABLE"), ("GLOO_SOCKET_IFNAME",)


@dataclass
class RankReport:
    """What one rank found (gathered to every rank)."""
    rank: int
    machine: int
    host: str
    device: str
    endpoint: str
    interface: str  # of the endpoint's address
    unseen: List[int]  # ranks whose probe file this one does not see in train.output_dir
    job: Dict
    settings: Dict[str, str]  # NCCL_* / GLOO_* as set on this rank ("unset" for the always-shown ones)
    route: str  # the address/interface the collective library takes here
    loopback: bool  # ... and it is a loopback one
    seconds: List[float] = field(default_factory=list)  # the timed all-reduce rounds (one rank per machine)


# ----------------------------------------------------------------------------------------------
# Network interfaces (Linux)


def interfaces() -> List[Tuple[str, str]]:
    """(name, IPv4 address) of this machine's interfaces with an address, in the kernel's order."""
    out = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for _, name in socket.if_nameindex():
            try:
                packed = fcntl.ioctl(s.fileno(), 0x8915, struct.pack("256s", name.encode()[:15]))  # SIOCGIFADDR
            except OSError:  # no IPv4 address
                continue
            out.append((name, socket.inet_ntoa(packed[20:24])))
    return out


def interface_of(address: str, ifaces: List[Tuple[str, str]]) -> str:
    found = [name for name, a in ifaces if a == address]
    if found:
        return found[0]
    return "lo" if address.startswith("127.") else "?"


def nccl_interface(ifaces: List[Tuple[str, str]], ifname: str) -> str:
    """The interface NCCL's socket transport takes by its documented rule: ``NCCL_SOCKET_IFNAME`` (prefixes;
    ``^`` excludes, ``=`` exact), else an ``ib*`` interface, else the first that is neither ``docker*`` nor
    ``lo``, else ``docker*``, else ``lo``.  (``NCCL_DEBUG=INFO`` makes NCCL print its own choice.)"""
    names = [n for n, _ in ifaces]
    if ifname:
        exclude, spec = ifname.startswith("^"), ifname.lstrip("^")
        exact, spec = spec.startswith("="), spec.lstrip("=")
        prefixes = [p for p in spec.split(",") if p]
        match = (lambda n: n in prefixes) if exact else (lambda n: any(n.startswith(p) for p in prefixes))
        chosen = [n for n in names if match(n) != exclude]
        return chosen[0] if chosen else f"none matches NCCL_SOCKET_IFNAME={ifname}"
    for pick in (lambda n: n.startswith("ib"), lambda n: not n.startswith(("docker", "lo")),
                 lambda n: n.startswith("docker"), lambda n: n.startswith("lo")):
        chosen = [n for n in names if pick(n)]
        if chosen:
            return chosen[0]
    return "none"


def _route(device: str, ifaces: List[Tuple[str, str]]) -> Tuple[Dict[str, str], str, bool]:
    """(settings, route, loopback): the communication settings of this rank and the network they lead to."""
    env = os.environ
    if device.startswith("gpu"):
        settings = {k: env.get(k, "unset") for k in NCCL_SHOWN}
        settings.update({k: v for k, v in sorted(env.items()) if k.startswith("NCCL_")})
        name = nccl_interface(ifaces, env.get("NCCL_SOCKET_IFNAME", ""))
        address = dict(ifaces).get(name, "?")
        return settings, f"NCCL interface {name} ({address})", name.startswith("lo")
    settings = {k: env.get(k, "unset") for k in GLOO_SHOWN}
    settings.update({k: v for k, v in sorted(env.items()) if k.startswith("GLOO_")})
    if env.get("GLOO_SOCKET_IFNAME"):
        name = env["GLOO_SOCKET_IFNAME"]
        address = dict(ifaces).get(name, "?")
        return settings, f"gloo interface {name} ({address})", name.startswith("lo")
    # Without GLOO_SOCKET_IFNAME, Paddle's gloo binds the address this host's name resolves to.
    host = socket.gethostname()
    try:
        address = socket.gethostbyname(host)
    except OSError:
        address = "127.0.0.1"
    name = interface_of(address, ifaces)
    return settings, f"gloo address of host name {host}: {address} ({name})", address.startswith("127.")


# ----------------------------------------------------------------------------------------------
# The check


def _bandwidth(info: DistInfo, leaders: List[int], size_mb: float, rounds: int) -> List[float]:
    """Collective over all ranks: the timed all-reduce rounds of ``size_mb`` MB among ``leaders`` (empty on
    the other ranks)."""
    group = dist.new_group(leaders) if len(leaders) < info.world_size else None  # (every rank creates it)
    if info.rank not in leaders or len(leaders) < 2:
        return []
    t = paddle.ones([max(1, int(size_mb * 2**20) // 4)], dtype="float32")
    sync = paddle.device.synchronize if info.device == "gpu" else (lambda: None)
    seconds = []
    for i in range(rounds + 1):  # round 0 warms up (connections, buffers)
        small = paddle.zeros([1], dtype="float32")
        dist.all_reduce(small, group=group)  # start together
        sync()
        t0 = time.perf_counter()
        dist.all_reduce(t, group=group)
        sync()
        if i:
            seconds.append(time.perf_counter() - t0)
    return seconds


def _give_up(minutes: float) -> None:
    endpoints = os.environ.get("PADDLE_TRAINER_ENDPOINTS", "?")
    print(f"error: the ranks did not all connect within {minutes:g} min (rank "
          f"{os.environ.get('PADDLE_TRAINER_ID', '?')} at {os.environ.get('PADDLE_CURRENT_ENDPOINT', '?')}); check "
          f"that every machine reaches the others' endpoints {endpoints} (ports open), and that "
          "GLOO_SOCKET_IFNAME (CPU) / NCCL_SOCKET_IFNAME (GPU) name an interface the machines share",
          file=sys.stderr, flush=True)
    os._exit(3)


def run(cfg, job: Dict, result_file: Optional[str], timeout_minutes: float) -> int:
    """One rank of the cluster check (every rank returns 0; the verdict goes to ``result_file``)."""
    watchdog = threading.Timer(timeout_minutes * 60, _give_up, args=(timeout_minutes,))
    watchdog.daemon = True
    watchdog.start()
    info = init_distributed(cfg)
    per_machine = int(os.environ.get("PADDLE_LOCAL_SIZE", info.world_size))
    machines = max(1, info.world_size // per_machine)
    leaders = [m * per_machine for m in range(machines)] if machines > 1 else list(range(info.world_size))
    output_dir = cfg.train.output_dir
    unseen = run_dir.probe_shared(output_dir, info) if info.world_size > 1 else []
    size_mb = float(os.environ.get(SIZE_ENV) or 256)
    rounds = max(1, int(os.environ.get(ROUNDS_ENV) or 5))
    seconds = _bandwidth(info, leaders, size_mb, rounds)
    ifaces = interfaces()
    endpoint = os.environ.get("PADDLE_CURRENT_ENDPOINT", "")
    if info.device == "gpu":
        device = f"gpu:{paddle.distributed.ParallelEnv().device_id} {paddle.device.cuda.get_device_name()}"
    else:
        device = "cpu"
    settings, route, loopback = _route(device, ifaces)
    mine = RankReport(rank=info.rank, machine=info.rank // per_machine, host=socket.gethostname(), device=device,
                      endpoint=endpoint or "-", interface=interface_of(endpoint.rpartition(":")[0], ifaces)
                      if endpoint else "-", unseen=unseen, job=job, settings=settings, route=route,
                      loopback=loopback, seconds=seconds)
    reports: List[RankReport] = []
    if info.world_size > 1:
        gathered: List = []
        dist.all_gather_object(gathered, mine.__dict__)
        reports = [RankReport(**r) for r in gathered]
    else:
        reports = [mine]
    watchdog.cancel()
    lines, problems = report(reports, output_dir, size_mb, leaders, machines)
    if info.local_rank == 0:  # one table per machine: every terminal shows the outcome
        print("\n".join(lines), flush=True)
        if result_file:
            with open(result_file, "w", encoding="utf-8") as f:
                f.write("1\n" if problems else "0\n")
    return 0


def report(reports: List[RankReport], output_dir: str, size_mb: float, leaders: List[int],
           machines: int) -> Tuple[List[str], List[str]]:
    """(the lines to print, the problems) of the gathered reports; Paddle-free."""
    reports = sorted(reports, key=lambda r: r.rank)
    world = len(reports)
    names = [f"rank {r.rank}, host {r.host}" for r in reports]
    diffs = rendezvous.job_diff([r.job for r in reports], names)
    differing: Dict[int, List[str]] = {}  # rank -> keys that differ from rank 0's
    for d in diffs:
        differing.setdefault(reports[d.index].rank, []).append(d.key)

    def column(r: RankReport, what) -> str:
        if r.rank == 0:
            return "ref"
        keys = [k for k in differing.get(r.rank, []) if what(k)]
        return "DIFFERS" if keys else "same"

    is_data = lambda k: k.startswith("data.") and k != "data.vocab_file"  # noqa: E731
    is_vocab = lambda k: k == "data.vocab_file"  # noqa: E731
    not_shared = {r.rank for r in reports if r.unseen}
    rows = [("rank", "machine", "host", "device", "data", "vocab", "output dir", "endpoint (interface)")]
    for r in reports:
        rows.append((str(r.rank), str(r.machine), r.host, r.device, column(r, is_data), column(r, is_vocab),
                     "NOT shared" if r.rank in not_shared else "shared", f"{r.endpoint} ({r.interface})"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [f"cluster check: {machines} machine(s) x {world // machines} process(es) = {world} rank(s)"]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]

    timed = [r for r in reports if r.seconds]
    if timed:
        median = max(statistics.median(r.seconds) for r in timed)  # the slowest member sets the pace
        n = len(leaders)
        bus = 2 * (n - 1) / n * size_mb / median
        between = f"the {n} machines" if machines > 1 else f"the {n} processes of this machine"
        lines.append(f"all-reduce of {size_mb:g} MB between {between} (ranks {', '.join(map(str, leaders))}): "
                     f"median {median:.4f} s of {len(timed[0].seconds)} rounds, {bus:.1f} MB/s bus bandwidth")
    else:
        lines.append("all-reduce: one process, nothing to measure")
    for m in range(machines):
        first = next(r for r in reports if r.machine == m)
        shown = ", ".join(f"{k}={v}" for k, v in first.settings.items())
        lines.append(f"machine {m} ({first.host}): {shown}; {first.route}")

    per_machine = max(1, world // machines)
    problems = [d.line for d in diffs if reports[d.index].rank % per_machine == 0]  # once per machine
    for r in reports:
        if r.unseen:
            problems.append(f"train.output_dir={output_dir!r} is not shared: rank {r.rank} ({r.host}) does not see "
                            f"the probe files of rank(s) {', '.join(map(str, r.unseen))}; give a directory on a "
                            "filesystem every machine mounts")
    if len({r.host for r in reports}) > 1:
        for r in reports:
            if r.loopback and r.rank % per_machine == 0:
                problems.append(f"machine {r.machine} ({r.host}): {r.route} is a loopback address the other "
                                "machines cannot reach; set GLOO_SOCKET_IFNAME / NCCL_SOCKET_IFNAME to the "
                                "interface of the machines' network")
    if problems:
        lines.append(f"cluster check: {len(problems)} problem(s): "
                     + " | ".join(f"{i + 1}) {p}" for i, p in enumerate(problems)))
    else:
        lines.append(f"cluster check: ok -- the real command would start ({world} rank(s) on {machines} "
                     "machine(s))")
    return lines, problems
