"""The one error type of the storage layer (Paddle-free)."""
from data_tools.io_utils import UserError


class ModelDirError(UserError, RuntimeError):
    """A model or checkpoint directory, ours or Hugging Face's, that cannot be used: a missing, damaged, incomplete
    or incompatible file.  The message names the file; CLIs print it as one ``error:`` line (exit code 2)."""
