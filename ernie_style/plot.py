"""Draw training curves from the VisualDL records of a run.

    python -m ernie_style.plot OUTPUT_DIR --out curves.png

Reads the ``OUTPUT_DIR/visualdl/vdlrecords.*`` records (one file holds a run's whole history, resumes
included; older layouts with one file per start are merged, later files winning for a step written twice) and
plots losses, accuracies and the learning rate.  The downstream probes of the run (``ernie_style.watch``: one
record per series under ``OUTPUT_DIR/visualdl/probe_NAME/``) are drawn under the loss curve, against the same
pretraining steps: each series' main metric on dev (solid) and test (dashed).
"""
from __future__ import annotations

import argparse
import glob
import os
import sys
from typing import Dict, List, Tuple

from data_tools.io_utils import UserError, atomic_write_path, run_cli
from ernie_style.finetune_report import main_metric
from ernie_style.training.metrics import read_records


def read_scalars(output_dir: str) -> Dict[str, List[Tuple[int, float]]]:
    """{tag: [(step, value), ...] sorted by step} from the VisualDL records under ``output_dir/visualdl``."""
    scalars, _ = read_records(os.path.join(output_dir, "visualdl"))
    return {tag: sorted((step, value) for step, (value, _) in points.items()) for tag, points in scalars.items()}


def read_probe_scalars(output_dir: str) -> Dict[str, List[Tuple[int, float]]]:
    """{tag: [(step, value), ...]} of the watchers' records (``visualdl/probe_*/``); tags
    ``probe/NAME/SPLIT/METRIC``."""
    out: Dict[str, List[Tuple[int, float]]] = {}
    for logdir in sorted(glob.glob(os.path.join(output_dir, "visualdl", "probe_*"))):
        for tag, points in read_records(logdir)[0].items():
            out[tag] = sorted((step, value) for step, (value, _) in points.items())
    return out


def probe_curves(probes: Dict[str, List[Tuple[int, float]]]) -> List[Tuple[str, List[Tuple[int, float]]]]:
    """(label, points) of each series' main metric on dev and test, in percent."""
    curves = []
    names = sorted({tag.split("/")[1] for tag in probes if tag.count("/") == 3})
    for name in names:
        metrics = {tag.split("/")[3]: 0.0 for tag in probes if tag.startswith(f"probe/{name}/dev/")}
        try:
            main = main_metric(metrics)
        except UserError:
            continue
        for split in ("dev", "test"):
            tag = f"probe/{name}/{split}/{main}"
            if tag in probes:
                curves.append((f"{name} {split} {main}", [(s, 100.0 * v) for s, v in probes[tag]]))
    return curves


def read_texts(output_dir: str) -> Dict[str, List[str]]:
    out: Dict[str, List[str]] = {}
    for tag, _, text, _ in read_records(os.path.join(output_dir, "visualdl"))[1]:
        out.setdefault(tag, []).append(text)
    return out


PANELS = [
    ("loss", ["train/loss", "train/lm_loss", "train/sop_loss", "eval/loss", "eval/lm_loss", "eval/sop_loss"]),
    ("accuracy", ["train/mlm_acc", "train/sop_acc", "eval/mlm_acc", "eval/sop_acc"]),
    ("learning rate", ["train/learning_rate"]),
]


def plot(output_dir: str, out: str) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scalars = read_scalars(output_dir)
    if not scalars:
        raise FileNotFoundError(f"{output_dir}: no VisualDL scalar records under {os.path.join(output_dir, 'visualdl')}")
    curves = probe_curves(read_probe_scalars(output_dir))
    rows = 2 if curves else 1
    fig, grid = plt.subplots(rows, len(PANELS), figsize=(6 * len(PANELS), 4.2 * rows), squeeze=False)
    axes = grid[0]
    if curves:  # under the loss curve, on its steps
        ax = grid[1][0]
        for label, points in curves:
            steps, values = zip(*points)
            ax.plot(steps, values, marker="o", markersize=4, linestyle="--" if " test " in label else "-",
                    label=label)
        ax.set_title("downstream probes (fine-tuned checkpoints), %")
        ax.set_xlabel("pretraining step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        for extra in grid[1][1:]:
            extra.axis("off")
    for ax, (title, tags) in zip(axes, PANELS):
        for tag in tags:
            if tag in scalars:
                steps, values = zip(*scalars[tag])
                ax.plot(steps, values, marker="o" if tag.startswith("eval/") else None, markersize=3, label=tag)
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
    if curves:
        grid[1][0].set_xlim(axes[0].get_xlim())  # the probes' steps line up with the loss curve above
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    atomic_write_path(out, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ernie_style.plot", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("output_dir", help="train.output_dir of a run")
    parser.add_argument("--out", default=None, help="PNG path (default OUTPUT_DIR/curves.png)")
    args = parser.parse_args(argv)
    out = args.out or os.path.join(args.output_dir, "curves.png")
    return run_cli(lambda: _plot(args.output_dir, out), io_errors=False)


def _plot(output_dir: str, out: str) -> int:
    try:
        plot(output_dir, out)
    except FileNotFoundError as e:  # no train.log / visualdl records in output_dir: the user named another dir
        raise UserError(str(e)) from None
    print(f"curves written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
