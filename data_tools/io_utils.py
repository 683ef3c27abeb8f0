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
from typing import Callable, Dict, List, Optional

EXIT_USER_ERROR = 2


class UserError(Exception):
    """A mistake in the user's input or environment; reported as one line, never a traceback."""


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


def atomic_write(path: str, write: Callable) -> None:
    """``write(f)`` into a temporary binary file, fsync, rename over ``path``; nothing left on failure."""
    tmp = tmp_name(path)
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


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


def write_json(path: str, obj) -> None:
    """Write ``obj`` as JSON to ``path`` and fsync it (no rename: see ``write_json_atomic``)."""
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, indent=1, sort_keys=False)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())


def write_json_atomic(path: str, obj) -> None:
    """Write ``obj`` as JSON under a temporary name, fsync, then rename over ``path``."""
    tmp = tmp_name(path)
    try:
        write_json(tmp, obj)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
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


def run_cli(body: Callable[[], int]) -> int:
    """Run a CLI body, turning ``UserError`` and OS errors into one line on stderr and exit code 2."""
    try:
        return body()
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USER_ERROR
    except OSError as e:
        print(f"error: {describe_os_error(e, 'I/O error')}", file=sys.stderr)
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


def merge_skipped(dst: Dict[str, dict], src: Dict[str, dict], max_locations: int) -> None:
    """Add ``{reason: {"count": n, "first": [locations]}}`` from ``src`` into ``dst``."""
    for reason, entry in src.items():
        d = dst.setdefault(reason, {"count": 0, "first": []})
        d["count"] += int(entry["count"])
        room = max_locations - len(d["first"])
        if room > 0:
            d["first"].extend(entry["first"][:room])


def format_table(rows: List[tuple], title: Optional[str] = None) -> str:
    width = max((len(str(k)) for k, _ in rows), default=0)
    lines = [title] if title else []
    lines += [f"  {str(k):<{width}}  {v}" for k, v in rows]
    return "\n".join(lines)
