"""The one error type of the export package and the CLI wrapper that turns it into exit code 2.

Every user-facing problem (missing file, wrong model type, shape mismatch, truncated or
checksum-failing file, refused pickle) is raised as :class:`ExportError` with a one-line
message that names the file and the problem; ``run_cli`` prints it without a traceback.
"""
import sys

EXIT_USER_ERROR = 2


class ExportError(Exception):
    """A problem with the user's input files or arguments (not a bug in the converter)."""


def run_cli(fn, *args) -> int:
    """Run ``fn(*args)``; an ExportError becomes ``error: <message>`` on stderr and exit code 2."""
    try:
        fn(*args)
    except ExportError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USER_ERROR
    return 0
