"""Advisory file locks that name their holder (no paddle import; used by data_tools, the trainer and export).

    with exclusive(prefix + ".lock", what=f"--output-prefix {prefix}"):
        ...  # a second process asking for the same lock gets LockHeld naming this pid and host

A lock is a POSIX record lock (``fcntl.lockf``) on a small file next to what it protects.  It belongs to the
process (a forked DataLoader or encoder worker does not inherit it, so an orphaned worker cannot keep it) and
the kernel drops it when the process ends in any way (kill -9 included): a lock never outlives its holder and
needs no clean-up; the file itself stays (harmless, reused by the next run).  Locks of one process never
conflict with each other, and closing any descriptor of the lock file drops them, so a process opens each lock
file once.  The holder of an exclusive lock writes
``pid <n> on <host>`` into the file so that whoever is refused can say who holds it.

``shared`` locks coexist with each other and exclude an exclusive one: export holds a shared lock on a
checkpoint root while it reads, and the trainer's pruning asks for the exclusive lock without waiting and
postpones its deletions when it cannot get it.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import socket
from typing import Iterator, Optional

from data_tools.io_utils import UserError


class LockHeld(UserError):
    """Another process holds the lock; the message names the lock file and, when known, its holder."""


def holder_of(path: str) -> str:
    """``pid N on HOST`` as written by the current (or last) exclusive holder, or ``an unknown process``."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read().strip()
    except OSError:
        text = ""
    return text or "an unknown process"


def _open(path: str) -> int:
    return os.open(path, os.O_RDWR | os.O_CREAT, 0o644)


def _try(fd: int, mode: int, wait: bool) -> bool:
    try:
        fcntl.lockf(fd, mode | (0 if wait else fcntl.LOCK_NB))
        return True
    except OSError as e:
        if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return False
        raise


class Held:
    """A lock this process holds; :meth:`release` (or garbage collection, or the process ending) drops it."""

    def __init__(self, fd: int, path: str, remove: bool = False):
        self.fd, self.path, self.remove = fd, path, remove

    def release(self) -> None:
        if self.fd is not None:
            if self.remove:  # unlinked while still held; acquire_exclusive re-checks the inode it locked
                try:
                    os.unlink(self.path)
                except OSError:
                    pass
            os.close(self.fd)  # drops this process's lock on the file
            self.fd = None

    def __del__(self):
        self.release()


def acquire_exclusive(path: str, what: str = "", remove: bool = False) -> Held:
    """Take the exclusive lock without waiting and return it.

    Raises LockHeld naming the holder when another process has it (exclusive or shared).  ``remove``: delete
    the lock file on release (for locks beside user data, where a stray file would be clutter)."""
    while True:
        fd = _open(path)
        if not _try(fd, fcntl.LOCK_EX, wait=False):
            holder = holder_of(path)
            os.close(fd)
            subject = f"{what} is in use" if what else f"{path} is locked"
            raise LockHeld(f"{subject}: {holder} holds the lock {path} (wait for it to finish, or use another "
                           "directory/prefix; the lock is released automatically when that process ends)")
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # we locked a file its holder removed on release: lock the current one
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
    return Held(fd, path, remove)


def release(lock: Optional[Held]) -> None:
    if lock is not None:
        lock.release()


@contextlib.contextmanager
def exclusive(path: str, what: str = "", remove: bool = False) -> Iterator[None]:
    """Hold the exclusive lock ``path`` for the block; LockHeld (naming the holder) when it is taken."""
    lock = acquire_exclusive(path, what, remove)
    try:
        yield
    finally:
        lock.release()


def try_exclusive(path: str, wait: bool = False) -> Optional[Held]:
    """The exclusive lock, or None when someone holds it and ``wait`` is False (no error)."""
    fd = _open(path)
    if _try(fd, fcntl.LOCK_EX, wait=wait):
        return Held(fd, path)
    os.close(fd)
    return None


@contextlib.contextmanager
def shared(path: str, what: str = "", wait: bool = True) -> Iterator[None]:
    """Hold a shared lock on ``path`` for the block.

    ``wait``: block while an exclusive holder finishes (pruning holds it only while deleting); otherwise
    LockHeld naming the holder.  A lock file that cannot be created (read-only directory: nothing there can
    be changed by a writer either) is no error: the block runs unlocked."""
    try:
        fd = _open(path)
    except OSError as e:
        if e.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
            yield
            return
        raise
    try:
        if not _try(fd, fcntl.LOCK_SH, wait=wait):
            subject = f"{what} is in use" if what else f"{path} is locked"
            raise LockHeld(f"{subject}: {holder_of(path)} holds the lock {path}")
        yield
    finally:
        os.close(fd)
