"""The export package's user-error type; CLIs run through the project's one wrapper (``data_tools.io_utils.run_cli``).

Every user-facing problem (missing file, wrong model type, shape mismatch, truncated or checksum-failing file,
refused pickle) is one error type, the storage layer's :class:`~ernie_style.storage.errors.ModelDirError` (what
export reads and writes are model directories), raised with a one-line message that names the file and the
problem; ``run_cli`` prints it without a traceback (exit code 2).
"""
from data_tools.io_utils import EXIT_USER_ERROR, UserError, run_cli as _run_cli  # noqa: F401
from ernie_style.storage.errors import ModelDirError

ExportError = ModelDirError  # the name export's modules and their callers use


def run_cli(fn, *args) -> int:
    """Run ``fn(*args)`` through the project's CLI wrapper: a user error is one line and exit code 2."""
    def body() -> int:
        fn(*args)
        return 0

    return _run_cli(body, io_errors=False)
