"""The shared entry of the training CLIs, ``ernie_style.run_pretrain`` and ``ernie_style.finetune``.

Each parses its own arguments (a config, ``--check``, ``--world-size``, ``--print-output-dir``, overrides) and
hands :func:`run_training` its config loader and what to do with the config.
"""
from __future__ import annotations

import os
import socket
import sys
import warnings
from typing import Callable, List

from data_tools.io_utils import UserError, run_cli


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


def add_launch_arguments(parser) -> None:
    """The arguments the launch scripts pass for several machines and for ``--check-cluster``."""
    parser.add_argument("--join", action="store_true",
                        help="with --check: then join the other machines (NNODES/MASTER or IPS in the environment) "
                             "and compare their jobs with this one (run_pretrain.sh passes it)")
    parser.add_argument("--join-result", metavar="FILE", help="with --join: write this machine's index there")
    parser.add_argument("--check-cluster", action="store_true",
                        help="train nothing: with --check, check for a cluster check; as a rank, report and print "
                             "the cluster table (run_pretrain.sh --check-cluster)")
    parser.add_argument("--check-cluster-result", metavar="FILE",
                        help="with --check-cluster: write the verdict (0 ok, 1 problems) there")


def _mode(args) -> str:
    return "check-cluster" if args.check_cluster else "train"


def check_then_join(args, cfg, check: Callable[[], None], contents: Callable[[], dict]) -> int:
    """``--check``: ``check()`` (raises a UserError), and with ``--join`` then the rendezvous of the machines with
    this machine's job (``cfg`` + ``contents()``), or with the check's error so that every machine stops with
    it; this machine's index goes to ``--join-result``."""
    if not args.join:
        check()
        return 0
    # training.distributed imports Paddle: only machines that join need it (a plain --check stays light)
    from ernie_style.training import rendezvous
    from ernie_style.training.distributed import launch_world_size

    settings = rendezvous.Settings.from_env(cfg.dist.join_timeout_minutes)
    hello = rendezvous.Hello(host=socket.gethostname(), pid=os.getpid())
    try:
        check()
        world = launch_world_size(args.world_size, check=True)
        hello.job = rendezvous.describe_job(cfg.to_dict(), contents(), world, _mode(args))
    except UserError as e:
        hello.error = str(e)
        print(f"error: {e}\n(telling the other machines at {settings.master})", file=sys.stderr, flush=True)
    machine = rendezvous.join(settings, hello)
    if args.join_result:
        with open(args.join_result, "w", encoding="utf-8") as f:
            f.write(f"{machine}\n")
    return 0


def cluster_check_rank(args, cfg, contents: Callable[[], dict]) -> int:
    """One rank of ``--check-cluster`` (see :mod:`ernie_style.training.cluster_check`)."""
    # Paddle (the collectives of the check): only a --check-cluster rank loads it
    from ernie_style.training import cluster_check, rendezvous
    from ernie_style.training.distributed import die_with_launcher, launch_world_size

    die_with_launcher()
    job = rendezvous.describe_job(cfg.to_dict(), contents(), launch_world_size(), _mode(args))
    minutes = rendezvous.Settings.timeout_minutes(cfg.dist.join_timeout_minutes)
    return cluster_check.run(cfg, job, args.check_cluster_result, minutes)
