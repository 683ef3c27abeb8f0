"""Small helpers shared by the corpus pipeline CLIs (preprocess, merge, inspect).

Everything here is about files: hashing, atomic writes (``PREFIX.meta.json`` is ``data_tools.meta``'s),
and the one-line error convention (``UserError`` -> ``error: ...`` on stderr, exit code 2).
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import sys
from typing import Callable, List, Optional, Tuple, Type

EXIT_USER_ERROR = 2


class UserError(Exception):
    """A mistake in the user's input or environment; reported as one line, never a traceback (:func:`run_cli`).
    The project's one user-error type: every component's error class for user mistakes derives from it."""


def sha256_file(path: str, chunk_bytes: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            buf = f.read(chunk_bytes)
            if not buf:
                return h.hexdigest()
            h.update(buf)


def tmp_name(path: str) -> str:
    """The temporary name ``path`` is written under before the atomic rename."""
    return f"{path}.tmp.{os.getpid()}"


def fsync_file(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_path(path: str, write_path: Callable[[str], None]) -> None:
    """``write_path(tmp)`` writes a temporary file (by its path, e.g. ``paddle.save``); it is fsynced and
    renamed over ``path``; nothing is left on failure.  The one atomic file write of the project."""
    tmp = tmp_name(path)
    try:
        write_path(tmp)
        fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def atomic_write(path: str, write: Callable) -> None:
    """``write(f)`` into a temporary binary file, fsync, rename over ``path``; nothing left on failure."""

    def write_path(tmp):
        with open(tmp, "wb") as f:
            write(f)

    atomic_write_path(path, write_path)


def atomic_write_text(path: str, text: str) -> None:
    """``text`` (UTF-8) to ``path`` atomically (see :func:`atomic_write_path`)."""
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def fsync_dir(path: str) -> None:
    try:
        fd = os.open(path or ".", os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def read_text(path: str, error: Type[Exception], *, cannot_read: str, not_utf8: str,
              not_found: Optional[str] = None, encoding: str = "utf-8") -> Tuple[bytes, str]:
    """``(raw bytes, decoded text)`` of the file ``path``.  A failure raises ``error("{path}: <message>")`` with the
    caller's message: ``not_found`` for a missing file (when given, else ``cannot_read``), ``cannot_read``
    formatted with ``strerror``, ``not_utf8`` formatted with ``reason`` and ``start`` (the first bad byte)."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError as e:
        message = not_found or cannot_read.format(strerror=e.strerror)
        raise error(f"{path}: {message}") from None
    except OSError as e:
        raise error(f"{path}: {cannot_read.format(strerror=e.strerror)}") from None
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as e:
        raise error(f"{path}: {not_utf8.format(reason=e.reason, start=e.start)}") from None
    return raw, text


def read_json_dict(path: str) -> Optional[dict]:
    """The JSON object in ``path``; None when the file is missing, unreadable or holds something else."""
    try:
        with open(path, encoding="utf-8") as f:
            out = json.load(f)
    except (OSError, ValueError):
        return None
    return out if isinstance(out, dict) else None


def write_json(path: str, obj) -> None:
    """Write ``obj`` as JSON to ``path`` and fsync it (no rename: see ``write_json_atomic``)."""
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, indent=1, sort_keys=False)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())


def write_json_atomic(path: str, obj) -> None:
    """Write ``obj`` as JSON under a temporary name, fsync, then rename over ``path``."""
    atomic_write_path(path, lambda tmp: write_json(tmp, obj))
    fsync_dir(os.path.dirname(os.path.abspath(path)))


def check_output_prefix(prefix: str) -> None:
    """Fail early, with one line, when ``prefix``'s directory does not exist or is not writable."""
    directory = os.path.dirname(os.path.abspath(prefix))
    if not os.path.isdir(directory):
        raise UserError(f"--output-prefix {prefix}: directory {directory} does not exist")
    probe = os.path.join(directory, f".write_probe.{os.getpid()}")
    try:
        with open(probe, "wb") as f:
            f.write(b"x")
    except OSError as e:
        raise UserError(f"--output-prefix {prefix}: cannot write in {directory} ({e.strerror or e})") from None
    finally:
        if os.path.exists(probe):
            os.remove(probe)


def describe_os_error(e: OSError, what: str) -> str:
    if e.errno == errno.ENOSPC:
        return f"{what}: no space left on device ({e.filename or 'output'})"
    detail = e.strerror or str(e)
    return f"{what}: {detail}" + (f" ({e.filename})" if e.filename else "")


def run_cli(body: Callable[[], Optional[int]], io_errors: bool = True) -> int:
    """The one wrapper of every CLI entry point: runs ``body()`` and returns its exit code (None = 0).

    The project's user-error type, :class:`UserError` (``ConfigError``, ``CheckpointError``, ``ExportError``,
    ``VocabError``, ``DataError``, ... derive from it), becomes one ``error: <message>`` line on stderr and exit
    code 2; with ``io_errors`` an ``OSError`` (a full disk, a missing directory) too.  Anything else is a bug and
    propagates with its traceback."""
    try:
        rc = body()
        return 0 if rc is None else rc
    except UserError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        return EXIT_USER_ERROR
    except OSError as e:
        if not io_errors:
            raise
        print(f"error: {describe_os_error(e, 'I/O error')}", file=sys.stderr, flush=True)
        return EXIT_USER_ERROR


def remove_quietly(paths: List[str]) -> None:
    for p in paths:
        try:
            os.remove(p)
        except FileNotFoundError:
            pass
        except OSError:
            pass


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024.0
    return f"{n:.1f} GB"


def format_table(rows: List[tuple], title: Optional[str] = None) -> str:
    width = max((len(str(k)) for k, _ in rows), default=0)
    lines = [title] if title else []
    lines += [f"  {str(k):<{width}}  {v}" for k, v in rows]
    return "\n".join(lines)
