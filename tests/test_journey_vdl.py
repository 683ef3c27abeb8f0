"""Issue 10 point 6: after a resume, the VisualDL server shows the whole history of the run.

Read as the server reads a ``--logdir``: ``LogReader(logdir=...)`` and the server's own ``visualdl.server.lib``
functions (runs, tags, scalar records), not the record files one by one.
"""
import os

import pytest

import _trainer_util as U
from ernie_style import run_pretrain

CONFIG = os.path.join(U.REPO, "configs", "roformer_tiny_demo.yaml")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return U.make_data(str(tmp_path_factory.mktemp("vdl_data")))


def served(logdir):
    """{run: {tag: [(step, value), ...]}} through the VisualDL server's library."""
    from visualdl import LogReader
    from visualdl.server import lib

    reader = LogReader(logdir=logdir)
    out = {}
    tags = lib.get_scalar_tags(reader)  # what the scalar page asks first: {"runs": [...], "tags": [[...], ...]}
    for run, run_tags in zip(tags["runs"], tags["tags"]):
        if not run.startswith(logdir):  # VisualDL keeps records in a process-wide manager: other tests' runs
            continue
        for tag in run_tags:
            out.setdefault(run, {})[tag] = [(int(step), value) for _, step, value in lib.get_scalar(reader, run, tag)]
    return out


def run(data, out, **extra):
    args = U.tiny_overrides(*data, str(out), **{"train.save_steps": 2, "train.eval_steps": 2, "train.resume": "auto",
                                               **extra})
    assert run_pretrain.main(["--config", CONFIG, *args]) == 0


def test_resumed_run_shows_whole_history_in_the_visualdl_server(data, tmp_path):
    out = tmp_path / "out"
    run(data, out, **{"train.max_steps": 4})
    run(data, out, **{"train.max_steps": 8})  # resumes from step 4
    logdir = str(out / "visualdl")
    runs = served(logdir)
    assert len(runs) == 1, runs  # one run, not one per start
    (tags,) = runs.values()
    assert [s for s, _ in tags["train/loss"]] == list(range(1, 9))
    assert [s for s, _ in tags["eval/loss"]] == [2, 4, 6, 8]
    # the values are the log lines' values, before and after the resume
    logged = U.log_fields(str(out / "train.log"))
    for step, value in tags["train/loss"]:
        assert abs(value - logged[step]["loss"]) < 1e-6, (step, value, logged[step]["loss"])
    assert len(os.listdir(logdir)) == 1


def test_steps_after_the_checkpoint_are_replaced_not_doubled(data, tmp_path):
    """A run that died after its last checkpoint logged steps that the resumed run logs again: shown once."""
    out = tmp_path / "out"
    run(data, out, **{"train.max_steps": 5, "train.save_steps": 4})  # checkpoints at 4 and 5
    latest = out / "checkpoints" / "latest"
    import shutil

    shutil.rmtree(out / "checkpoints" / "step_00000005")  # as if it died after logging step 5
    os.remove(latest)
    os.symlink("step_00000004", latest)
    run(data, out, **{"train.max_steps": 6, "train.save_steps": 4})
    (tags,) = served(str(out / "visualdl")).values()
    assert [s for s, _ in tags["train/loss"]] == [1, 2, 3, 4, 5, 6]
