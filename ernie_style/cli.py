"""The shared entry of the training CLIs, ``ernie_style.run_pretrain`` and ``ernie_style.finetune``.

Each parses its own arguments (a config, ``--check``, ``--world-size``, ``--print-output-dir``, overrides) and
hands :func:`run_training` its config loader and what to do with the config.
"""
from __future__ import annotations

import os
import warnings
from typing import Callable, List

from data_tools.io_utils import run_cli


def one_line_warning(message, category, filename, lineno, line=None) -> str:
    return f"warning: {message}\n"  # not the source line Python adds, which says nothing to a user


def run_training(args, load_config: Callable[[str, List[str]], object], run: Callable[[object], int]) -> int:
    """The exit code of a training CLI: ``load_config(args.config, args.overrides)``, then with
    ``args.print_output_dir`` print the config's ``train.output_dir``, else ``run(config)``.

    Warnings print as one ``warning:`` line.  User mistakes print one ``error:`` line and exit 2
    (:func:`data_tools.io_utils.run_cli`); an ``OSError`` keeps its traceback (it is not the user's input here)."""
    warnings.formatwarning = one_line_warning

    def body() -> int:
        cfg = load_config(args.config, args.overrides)
        if args.print_output_dir:
            print(os.path.abspath(cfg.train.output_dir))
            return 0
        return run(cfg)

    return run_cli(body, io_errors=False)
