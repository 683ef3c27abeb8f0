"""Machines joining one launch: our own rendezvous at ``MASTER``, before ``paddle.distributed.launch`` starts.

``run_pretrain.sh`` / ``run_finetune.sh`` with ``NNODES=N MASTER=host:port`` (N > 1) run the pre-launch check of
every machine with ``--join``: once its own config and data check out, the machine calls :func:`join`, which

- on the machine that owns MASTER's address (the first launcher there to bind the port) listens at MASTER;
  every other launcher connects to it, retrying until it can;
- prints ``waiting for machines: K of N joined at MASTER after T s; ...`` every 30 s while machines are missing
  (``ERNIE_JOIN_PROGRESS_SECONDS`` changes the interval), and after ``dist.join_timeout_minutes`` (the
  environment variable ``JOIN_TIMEOUT_MINUTES`` overrides it) stops with one line saying what joined, what did not
  and what to check;
- once all N have joined, compares every machine's job (:func:`describe_job`: the resolved config, the data
  fingerprint, the vocab's sha256) with machine 0's: a difference stops every machine with one line naming the keys
  (``train.max_steps: 20 (machine 0, host a) vs 40 (machine 1, host b)``), as does a machine whose own check failed;
- closes the port, so Paddle's launcher can take it for its own rendezvous (``--rank`` = this machine's index).

With ``IPS=host1,host2`` the rendezvous is at the first host, port ``PADDLE_START_PORT`` (6070), the port rank 0's
store takes next.  Nothing here starts a process: a machine that times out or disagrees exits, and so do the others.

Messages between launchers are JSON lines of the dataclasses below.  Paddle-free.
"""
from __future__ import annotations

import dataclasses
import errno
import json
import math
import os
import select
import socket
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from data_tools.io_utils import UserError

PROGRESS_ENV = "ERNIE_JOIN_PROGRESS_SECONDS"  # the waiting line's interval (tests shorten it)
TIMEOUT_ENV = "JOIN_TIMEOUT_MINUTES"  # beside NNODES / MASTER: replaces dist.join_timeout_minutes
DEFAULT_START_PORT = 6070  # paddle.distributed.launch --start_port: rank 0's store with IPS=...

# Keys that may differ between machines: paths of data that is compared by content instead (prefixes by the
# sha256 in their meta.json and their sizes, the vocab and fine-tuning files by sha256, an init by its checksums),
# per-machine resources, and how long a machine waits for the others.  train.output_dir may be mounted at another
# path on each machine; that it is one directory is checked by every rank at start (a probe file per rank).
MAY_DIFFER = ("data.prefixes", "data.vocab_file", "data.train_file", "data.dev_file", "data.test_file",
              "model.init", "data.cache_dir", "data.num_workers", "train.output_dir", "dist.join_timeout_minutes")


class ClusterError(UserError):
    """The machines of a launch did not all join, or do not run the same job."""


# ----------------------------------------------------------------------------------------------
# What a machine runs, and how two of them differ


def flatten(tree: Dict[str, Any], prefix: str = "") -> Dict[str, Any]:
    """``{"train": {"max_steps": 20}}`` -> ``{"train.max_steps": 20}`` (lists stay values)."""
    out: Dict[str, Any] = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def describe_job(config: Dict[str, Any], contents: Dict[str, Any], world_size: int, mode: str) -> Dict[str, Any]:
    """The job a machine would start, as flat ``key: value``: every config key (``config`` is the nested
    ``to_dict()`` of the config) but those of MAY_DIFFER, then ``contents`` (data fingerprint, vocab, init:
    values compared without their ``path``), the launch's number of ranks and ``mode`` (train | check-cluster)."""
    job = {k: v for k, v in flatten(config).items() if k not in MAY_DIFFER}
    job.update(contents)
    job["launch.ranks"] = world_size
    job["launch.mode"] = mode
    return job


def _comparable(value):
    """A value without its ``path`` entries: the same contents at another path are the same data."""
    if isinstance(value, dict):
        return {k: _comparable(v) for k, v in value.items() if k != "path"}
    if isinstance(value, list):
        return [_comparable(v) for v in value]
    return value


def _short(value) -> str:
    if isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value):
        return value[:12]  # a sha256
    if isinstance(value, dict):
        return ", ".join(f"{k} {_short(v)}" for k, v in value.items())
    return repr(value)


def show(value) -> str:
    """A job value for a one-line message: a path with the contents that identify it, or the value."""
    if isinstance(value, dict) and "path" in value:
        rest = {k: v for k, v in value.items() if k != "path"}
        return f"{value['path']} ({_short(rest)})" if rest else str(value["path"])
    return _short(value)


@dataclass
class Difference:
    index: int  # of the job that differs from jobs[0]
    key: str
    line: str  # ``key: value (names[0]) vs value (names[index])``


def job_diff(jobs: List[Dict[str, Any]], names: List[str]) -> List[Difference]:
    """One Difference per key on which a job differs from ``jobs[0]``; ``names[i]`` says which machine (or rank)
    job ``i`` is, e.g. ``machine 1, host b``."""
    out = []
    for i in range(1, len(jobs)):
        for key in sorted(set(jobs[0]) | set(jobs[i])):
            a, b = jobs[0].get(key), jobs[i].get(key)
            if _comparable(a) != _comparable(b):
                out.append(Difference(i, key, f"{key}: {show(a)} ({names[0]}) vs {show(b)} ({names[i]})"))
    return out


# ----------------------------------------------------------------------------------------------
# The messages


@dataclass
class Hello:
    """A launcher joining: who it is, the job it would run, or why it cannot run it."""
    host: str
    pid: int
    job: Dict[str, Any] = field(default_factory=dict)
    error: str = ""  # its pre-launch check failed with this message


@dataclass
class Progress:
    joined: int
    of: int


@dataclass
class Verdict:
    ok: bool
    machine: int = -1  # the receiver's index (its --rank for Paddle's launcher)
    message: str = ""
    hosts: List[str] = field(default_factory=list)


_KINDS = {cls.__name__: cls for cls in (Hello, Progress, Verdict)}


def _encode(msg) -> bytes:
    return (json.dumps({"kind": type(msg).__name__, **dataclasses.asdict(msg)}) + "\n").encode()


def _decode(line: bytes):
    """The message of one line, or None when it is not one of ours (another program at the port)."""
    try:
        obj = json.loads(line)
        return _KINDS[obj.pop("kind")](**obj)
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


class _Lines:
    """Newline-delimited messages on a socket, read without blocking past a deadline."""

    def __init__(self, sock: socket.socket):
        self.sock, self.buf = sock, b""

    def fileno(self) -> int:
        return self.sock.fileno()

    def feed(self) -> bool:
        """Read what is there (call when readable); False at end of stream."""
        try:
            data = self.sock.recv(65536)
        except OSError:
            data = b""
        self.buf += data
        return bool(data)

    def pop(self) -> Optional[bytes]:
        if b"\n" not in self.buf:
            return None
        line, self.buf = self.buf.split(b"\n", 1)
        return line

    def send(self, msg) -> bool:
        try:
            self.sock.sendall(_encode(msg))
            return True
        except OSError:
            return False

    def close(self) -> None:
        self.sock.close()


# ----------------------------------------------------------------------------------------------
# Joining


@dataclass
class Settings:
    """Where and how long to wait: from the launcher's environment and the config."""
    master: str  # host:port of the rendezvous
    nnodes: int
    timeout_s: float
    interval_s: float
    same_command: str  # how the user started it (NNODES=2 MASTER=... / IPS=...), for the messages

    @staticmethod
    def timeout_minutes(config_minutes: float, env=os.environ) -> float:
        """JOIN_TIMEOUT_MINUTES when set, else ``config_minutes`` (dist.join_timeout_minutes)."""
        if not env.get(TIMEOUT_ENV):
            return config_minutes
        try:
            minutes = float(env[TIMEOUT_ENV])
        except ValueError:
            minutes = -1.0
        if not (math.isfinite(minutes) and minutes > 0):
            raise ClusterError(f"{TIMEOUT_ENV}={env[TIMEOUT_ENV]!r}: expected a number of minutes > 0")
        return minutes

    @classmethod
    def from_env(cls, config_minutes: float, env=os.environ) -> "Settings":
        """NNODES + MASTER, or IPS (its first host and PADDLE_START_PORT); JOIN_TIMEOUT_MINUTES replaces
        ``config_minutes`` (dist.join_timeout_minutes)."""
        minutes = cls.timeout_minutes(config_minutes, env)
        interval = float(env.get(PROGRESS_ENV) or 30)
        if env.get("IPS"):
            ips = [h for h in env["IPS"].split(",") if h]
            master = f"{ips[0]}:{env.get('PADDLE_START_PORT') or DEFAULT_START_PORT}"
            return cls(master, len(ips), minutes * 60, interval, f"IPS={env['IPS']}")
        nnodes, master = env.get("NNODES", ""), env.get("MASTER", "")
        if not nnodes.isdigit() or not master:
            raise ClusterError(f"--join needs NNODES=N MASTER=host:port or IPS=host1,host2 in the environment "
                               f"(got NNODES={nnodes!r} MASTER={master!r})")
        return cls(master, int(nnodes), minutes * 60, interval, f"NNODES={nnodes} MASTER={master}")

    def address(self) -> Tuple[str, int]:
        host, _, port = self.master.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ClusterError(f"MASTER={self.master!r}: expected host:port (e.g. 10.0.0.1:8090)")
        try:
            return socket.gethostbyname(host), int(port)
        except OSError as e:
            raise ClusterError(f"MASTER={self.master!r}: the host {host!r} is unknown here ({e}); give an "
                               "address every machine resolves") from None

    def check_hint(self) -> str:
        return (f"check that every machine reaches {self.master} (the address, and the port open in any "
                f"firewall) and runs the same command with {self.same_command}")


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _listen(addr: Tuple[str, int]) -> Optional[socket.socket]:
    """A socket listening at MASTER when it is this machine's address and no other launcher here has it."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind(addr)
        # (with SO_REUSEADDR two launchers here may both bind before either listens: the second listen fails)
        s.listen(64)
    except OSError as e:
        s.close()
        if e.errno in (errno.EADDRNOTAVAIL, errno.EADDRINUSE):
            return None  # another machine's address, or another launcher on this one serves it
        raise ClusterError(f"MASTER={addr[0]}:{addr[1]}: cannot listen there ({os.strerror(e.errno or 0)})") \
            from None
    return s


def join(settings: Settings, hello: Hello) -> int:
    """Wait for every machine, compare their jobs; returns this machine's index (0 = the one at MASTER).
    Raises ClusterError (one line) on a timeout, a machine whose check failed, or a difference."""
    addr = settings.address()
    listener = _listen(addr)
    start = time.monotonic()
    try:
        if listener is not None:
            return _serve(settings, listener, hello, start)
        return _connect(settings, addr, hello, start)
    except KeyboardInterrupt:  # Ctrl-C while waiting: one line, not a traceback (nothing has started yet)
        raise ClusterError(f"interrupted while waiting for machines at {settings.master}; nothing was started") \
            from None


def _waiting(settings: Settings, joined: int, start: float) -> str:
    return (f"waiting for machines: {joined} of {settings.nnodes} joined at {settings.master} after "
            f"{time.monotonic() - start:.0f} s; every machine runs the same command with {settings.same_command}")


def _minutes(settings: Settings) -> str:
    return f"{settings.timeout_s / 60:g} min (dist.join_timeout_minutes, or {TIMEOUT_ENV})"


def _serve(settings: Settings, listener: socket.socket, hello: Hello, start: float) -> int:
    deadline = start + settings.timeout_s
    next_line = start + settings.interval_s
    peers: List[Tuple[_Lines, Hello]] = []
    try:
        while len(peers) + 1 < settings.nnodes:
            now = time.monotonic()
            if now >= deadline:
                hosts = ", ".join([f"machine 0 ({hello.host})"] + [f"machine {i + 1} ({h.host})"
                                                                      for i, (_, h) in enumerate(peers)])
                missing = settings.nnodes - 1 - len(peers)
                message = (f"{len(peers) + 1} of {settings.nnodes} machines joined at {settings.master} within "
                           f"{_minutes(settings)}: joined {hosts}; missing {missing} machine(s); "
                           + settings.check_hint())
                for lines, _ in peers:
                    lines.send(Verdict(ok=False, message=message))
                raise ClusterError(message)
            if now >= next_line:
                _say(_waiting(settings, len(peers) + 1, start))
                next_line += settings.interval_s
            wait = max(0.0, min(deadline, next_line) - now)
            ready, _, _ = select.select([listener] + [p for p, _ in peers], [], [], wait)
            if listener in ready:
                peer = _accept(listener, deadline)
                if peer is not None:
                    peers.append(peer)
                    for lines, _ in peers:
                        lines.send(Progress(len(peers) + 1, settings.nnodes))
            for lines, h in list(peers):
                if lines in ready and not lines.feed():  # its launcher stopped before all joined
                    lines.close()
                    peers.remove((lines, h))
                    _say(f"waiting for machines: {h.host} (pid {h.pid}) left before all machines joined")
        listener.close()  # Paddle's launcher takes the port next
        return _decide(settings, hello, peers)
    finally:
        listener.close()
        for lines, _ in peers:
            lines.close()


def _accept(listener: socket.socket, deadline: float) -> Optional[Tuple[_Lines, Hello]]:
    """A launcher's hello (None: the connection was not one of ours, or it went away)."""
    sock, _ = listener.accept()
    sock.settimeout(max(0.1, min(10.0, deadline - time.monotonic())))
    lines = _Lines(sock)
    while True:
        line = lines.pop()
        if line is not None:
            break
        if not lines.feed():
            lines.close()
            return None
    msg = _decode(line)
    if not isinstance(msg, Hello):
        lines.close()
        return None
    sock.settimeout(None)
    return lines, msg


def _decide(settings: Settings, hello: Hello, peers: List[Tuple[_Lines, Hello]]) -> int:
    """Machine 0: every machine's job against its own; the verdict to all; this machine's index (0)."""
    hellos = [hello] + [h for _, h in peers]
    names = [f"machine {i}, host {h.host}" for i, h in enumerate(hellos)]
    failed = [f"machine {i} (host {h.host}) cannot start: {h.error}" for i, h in enumerate(hellos) if h.error]
    message = ""
    if failed:
        message = "; ".join(failed)
    else:
        # A cluster check goes on to show everything in its table; only a different kind of launch stops it.
        checking = hello.job.get("launch.mode") == "check-cluster"
        diff = [d.line for d in job_diff([h.job for h in hellos], names)
                if not checking or d.key.startswith("launch.")]
        if diff:
            message = (f"the machines do not run the same job: {'; '.join(diff)} -- run the same command with the "
                       "same config, data and vocab on every machine (README \"Several machines\" lists what may "
                       "differ)")
    hosts = [h.host for h in hellos]
    for i, (lines, _) in enumerate(peers):
        lines.send(Verdict(ok=not message, machine=i + 1, message=message, hosts=hosts))
    # the others close first (their side keeps the TIME_WAIT, the port here is free at once)
    end = time.monotonic() + 5.0
    for lines, _ in peers:
        ready, _, _ = select.select([lines], [], [], max(0.0, end - time.monotonic()))
        if ready:
            lines.feed()
    if message:
        raise ClusterError(message)
    return 0


def _connect(settings: Settings, addr: Tuple[str, int], hello: Hello, start: float) -> int:
    deadline = start + settings.timeout_s
    next_line = start + settings.interval_s
    reason = ""
    while True:
        now = time.monotonic()
        if now >= deadline:
            raise ClusterError(f"could not reach the rendezvous at {settings.master} within {_minutes(settings)} "
                               f"({reason}); " + settings.check_hint())
        if now >= next_line:
            _say(f"waiting for machines: {settings.master} not reachable yet ({reason}) after {now - start:.0f} s; "
                 f"every machine runs the same command with {settings.same_command}")
            next_line += settings.interval_s
        try:
            sock = socket.create_connection(addr, timeout=max(0.1, min(5.0, deadline - now)))
            break
        except OSError as e:
            reason = os.strerror(e.errno) if e.errno else str(e)
            time.sleep(max(0.0, min(0.5, deadline - time.monotonic())))
    lines = _Lines(sock)
    try:
        if not lines.send(hello):
            raise ClusterError(f"the rendezvous at {settings.master} closed the connection; " + settings.check_hint())
        joined = 0
        while True:
            now = time.monotonic()
            if now >= deadline:
                raise ClusterError(f"{joined or '?'} of {settings.nnodes} machines joined at {settings.master} "
                                   f"within {_minutes(settings)}; " + settings.check_hint())
            if now >= next_line:
                _say(_waiting(settings, joined, start))
                next_line += settings.interval_s
            ready, _, _ = select.select([lines], [], [], max(0.0, min(deadline, next_line) - now))
            if not ready:
                continue
            alive = lines.feed()
            while True:
                line = lines.pop()
                if line is None:
                    break
                msg = _decode(line)
                if isinstance(msg, Progress):
                    joined = msg.joined
                elif isinstance(msg, Verdict):
                    if not msg.ok:
                        raise ClusterError(msg.message)
                    return msg.machine
                else:
                    raise ClusterError(f"{settings.master} answers, but not as a launcher of this project "
                                       "(another program holds the port?); give MASTER a free port")
            if not alive:
                raise ClusterError(f"the launcher at {settings.master} stopped before all machines joined (see "
                                   "its terminal); " + settings.check_hint())
    finally:
        lines.close()
