"""Starting a launch as a terminal does, and finding every process it started (the stop tests)."""
import os
import signal
import time

from data_tools import locking
from ernie_style.training.run_dir import RUN_LOCK

MARK = "ERNIE_TEST_LAUNCH"  # set in a test launch's environment: every process it starts inherits it


def marked(tag: str) -> dict:
    """{pid: command line} of the live processes whose environment holds ``ERNIE_TEST_LAUNCH=tag``: the script,
    its output filters, the launcher, the ranks, their DataLoader workers."""
    needle = f"{MARK}={tag}".encode()
    found = {}
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as f:
                if needle not in f.read().split(b"\0"):
                    continue
            with open(f"/proc/{name}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":  # a zombie has ended; its parent has not reaped it
                    continue
            with open(f"/proc/{name}/cmdline", "rb") as f:
                found[int(name)] = f.read().replace(b"\0", b" ").decode(errors="replace")[:200]
        except OSError:  # ended meanwhile
            continue
    return found


def left_after(tag: str, seconds: float = 10.0) -> dict:
    """The processes of ``tag`` still alive ``seconds`` after the call (returns as soon as none is)."""
    deadline = time.time() + seconds
    left = marked(tag)
    while left and time.time() < deadline:
        time.sleep(0.25)
        left = marked(tag)
    return left


def kill_marked(tag: str) -> None:
    """SIGKILL what is left of ``tag`` (a failed test's clean-up)."""
    for pid in marked(tag):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def as_a_terminal_starts_it() -> None:
    """``preexec_fn``: a session and process group of its own, as a terminal's job gets, and SIGINT at its default
    (a job started with & from a non-interactive shell inherits SIGINT ignored, which bash then cannot trap)."""
    os.setsid()
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def lock_is_free(output_dir) -> bool:
    """Nobody holds the run lock of ``output_dir`` (a re-run would not be refused as in use)."""
    held = locking.try_exclusive(os.path.join(str(output_dir), RUN_LOCK))
    if held is None:
        return False
    held.release()
    return True


def env_of(tag: str, **extra) -> dict:
    return dict(os.environ, OMP_NUM_THREADS="1", **{MARK: tag}, **extra)
