"""Issue 19 points 1-5: the schedule (phases, batch changes), the data position in consumed samples, resume.

Unit tests on the schedule and the config first; then tiny in-process runs (a checkpoint written by the code before
the schedule resumes as it did; a resume with another global batch == the phase that makes the same change; the data
reset); one real 2-process job killed with SIGKILL after a phase boundary and resumed.
"""
import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import paddle
import pytest

import _launch_util as L
import _trainer_util as U
from ernie_style import run_pretrain
from ernie_style.config.pretrain import ConfigError, load_config
from ernie_style.data.dataset import PretrainingDataset
from ernie_style.data.spec import SampleSpec, Split
from ernie_style.training.metrics import read_records
from ernie_style.training.schedule import Schedule
from ernie_style.training.trainer import GlobalBatchSampler

CONFIG = os.path.join(U.REPO, "configs", "roformer_tiny_demo.yaml")
GOLDEN = os.path.join(U.REPO, "tests", "golden", "legacy_checkpoint")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return U.make_data(str(tmp_path_factory.mktemp("phases_data")))


def cfg_of(data, out="out", **extra):
    return load_config(CONFIG, U.tiny_overrides(*data, str(out), **extra))


def phases(*items) -> str:
    """A train.phases override from dicts."""
    return json.dumps(list(items))


# ---------------------------------------------------------------------------------------------------- the schedule


def old_lr(n, max_lr, min_lr, warmup, decay):
    """The learning rate before the schedule (WarmupLinearDecay of main a91a98d), written out."""
    if warmup and n <= warmup:
        return max_lr * n / warmup
    if n >= decay:
        return min_lr
    return max_lr - (max_lr - min_lr) * ((n - warmup) / (decay - warmup))


def test_without_phases_one_phase_and_the_learning_rates_of_before(data):
    cfg = cfg_of(data, **{"train.max_steps": 50, "optim.warmup_steps": 7, "optim.decay_steps": 40})
    s = Schedule.from_config(cfg, 1)
    assert not s.explicit and len(s.phases) == 1
    p = s.phases[0]
    assert (p.start, p.end, p.max_seq_len, p.global_batch_size, p.accumulation) == (0, 50, 64, 8, 1)
    for n in range(1, 60):
        assert s.lr_at(n) == old_lr(n, 1e-3, cfg.optim.min_lr, 7, 40), n  # bit for bit


def test_phases_inherit_and_the_learning_rate_restarts_only_where_a_phase_sets_it(data):
    cfg = cfg_of(data, **{"train.max_steps": 30, "optim.warmup_steps": 2, "optim.decay_steps": 30,
                          "train.phases": phases({"until_step": 10, "train.global_batch_size": 16},
                                                 {"until_step": 20, "data.max_seq_len": 32},
                                                 {"until_step": 30, "optim.max_lr": 5e-4, "optim.warmup_steps": 3})})
    s = Schedule.from_config(cfg, 2)
    got = [(p.start, p.end, p.max_seq_len, p.global_batch_size, p.micro_batch_size, p.accumulation)
           for p in s.phases]
    assert got == [(0, 10, 64, 16, 8, 1), (10, 20, 32, 16, 8, 1), (20, 30, 32, 16, 8, 1)]
    # phases 1-2: one curve, decaying to min_lr where phase 3's restart begins
    for n in range(1, 21):
        assert s.lr_at(n) == old_lr(n, 1e-3, cfg.optim.min_lr, 2, 20), n
    # phase 3: re-warmup from 0 over 3 steps to 5e-4, then decay to min_lr at optim.decay_steps
    assert [s.lr_at(n) for n in (21, 22, 23)] == pytest.approx([5e-4 / 3, 2 * 5e-4 / 3, 5e-4], rel=1e-12)
    assert s.lr_at(30) == 1e-4 and s.lr_at(25) == pytest.approx(5e-4 - 4e-4 * 2 / 7, rel=1e-12)


def test_the_data_position_per_sequence_length(data):
    cfg = cfg_of(data, **{"train.max_steps": 8, "train.phases": phases(
        {"until_step": 2}, {"until_step": 4, "train.global_batch_size": 16}, {"until_step": 6, "data.max_seq_len": 32},
        {"until_step": 8, "data.max_seq_len": 64})})
    s = Schedule.from_config(cfg, 1)
    starts = []
    for step in range(8):
        p = s.phase_at(step)
        starts.append((p.number, p.max_seq_len, s.first_sample(p)))
        s.advance(p)
    # a batch change continues the stream; a new length starts its own; back at 64 the 64 stream continues
    assert starts == [(1, 64, 0), (1, 64, 8), (2, 64, 16), (2, 64, 32), (3, 32, 0), (3, 32, 16), (4, 64, 48),
                      (4, 64, 64)]
    assert s.state_dict()["consumed_samples"] == {"32": 32, "64": 80} and s.consumed_samples == 112
    assert s.state_dict()["consumed_by_phase"] == {"1": 16, "2": 32, "3": 32, "4": 32}
    fresh = Schedule.from_config(cfg, 1)
    assert fresh.samples_needed(fresh.phases[0], 0, 8) == 80 and fresh.samples_needed(fresh.phases[2], 4, 8) == 32


def test_sampler_starts_at_the_first_sample():
    assert [i for b in GlobalBatchSampler(2, 4, 8, 4, 0, 1, first_sample=16) for i in b] == list(range(16, 32))
    two = [list(GlobalBatchSampler(2, 4, 8, 2, r, 2, first_sample=5)) for r in range(2)]
    assert two[0][:2] == [[5, 6], [7, 8]] and two[1][:2] == [[9, 10], [11, 12]]


@pytest.mark.parametrize("packing", ["pairs", "full_sentences", "doc_sentences"])
def test_sample_index_prefix_does_not_depend_on_the_samples_asked_for(data, tmp_path, packing):
    """What "the data continues at sample c" rests on: sample i of an index built for N samples is sample i of
    one built for any other N (here across several epochs of the tiny corpus), so a phase or a resume that
    builds the index for another total reads the same samples.  For every sample layout."""
    spec = SampleSpec(data[1], Split.parse("90,5,5"), max_seq_len=64, seed=1234, packing=packing,
                      binary_head=packing == "pairs")
    small = PretrainingDataset(data[0], spec, num_samples=40, cache_dir=str(tmp_path))
    large = PretrainingDataset(data[0], spec, num_samples=400, cache_dir=str(tmp_path))
    assert len(large.samples_mapping) == 400 and len(small.samples_mapping) == 40
    np.testing.assert_array_equal(small.samples_mapping, large.samples_mapping[:40])
    for i in (0, 17, 39):
        a, b = small[i], large[i]
        assert all(np.array_equal(a[k], b[k]) for k in a), i


# ---------------------------------------------------------------------------------------------------- config errors


@pytest.mark.parametrize("items, expected", [
    ([{"until_step": 4}, {"until_step": 3, "train.global_batch_size": 16}],
     "train.phases: phase 2: until_step=3: expected a step after phase 1's until_step=4 (phases in order)"),
    ([{"until_step": 2}, {"until_step": 4, "optim.weight_decay": 0.1}],
     "train.phases: phase 2: a phase may not set 'optim.weight_decay'"),
    ([{"until_step": 2}, {"until_step": 4, "data.max_seqlen": 128}],
     "train.phases: phase 2: a phase may not set 'data.max_seqlen'; did you mean 'data.max_seq_len'?"),
    ([{"until_step": 2}, {"until_step": 4, "data.max_seq_len": 1024}],
     "train.phases: phase 2: data.max_seq_len=1024: expected at most model.max_position_embeddings=512"),
    ([{"until_step": 2}, {"until_step": 4, "train.micro_batch_size": 0}],
     "train.phases: phase 2: train.micro_batch_size=0: expected an integer >= 1"),
    ([{"until_step": 2, "optim.min_lr": 0.5}], "train.phases: phase 1: optim.min_lr=0.5: expected a number in [0"),
    ([{"until_step": 2}, {"data.max_seq_len": 32}], "train.phases: phase 2: until_step is missing"),
    ([{"until_step": 2}], "train.phases: phase 1 ends at until_step=2, before train.max_steps=3"),
    ([{"until_step": 3, "train.global_batch_size": "x"}], "train.phases: phase 1: train.global_batch_size='x'"),
])
def test_bad_phase_lists_name_the_phase(data, items, expected):
    with pytest.raises(ConfigError) as e:
        cfg_of(data, **{"train.phases": phases(*items)})
    assert str(e.value).startswith(expected), str(e.value)


def test_a_phase_batch_that_does_not_divide_is_refused_before_launch(data, tmp_path, capsys):
    over = U.tiny_overrides(*data, str(tmp_path / "o"), **{"train.micro_batch_size": 4, "train.phases": phases(
        {"until_step": 1}, {"until_step": 3, "train.global_batch_size": 12})})
    assert run_pretrain.main(["--check", "--world-size", "2", "--config", CONFIG, *over]) == 2
    assert capsys.readouterr().err.strip() == (
        "error: train.phases: phase 2: train.global_batch_size=12: expected a multiple of train.micro_batch_size (4) "
        "x data-parallel size (2) = 8")


# ---------------------------------------------------------------------------------------------------- resume


def train(data, out, **extra):
    assert run_pretrain.main(["--config", CONFIG, *U.tiny_overrides(*data, str(out), **extra)]) == 0
    return U.log_losses(os.path.join(str(out), "train.log"))


def state_of(out, step):
    return json.load(open(os.path.join(str(out), "checkpoints", f"step_{step:08d}", "trainer_state.json")))


LEGACY = {"model.hidden_size": 16, "model.num_hidden_layers": 1, "model.num_attention_heads": 2,
          "model.intermediate_size": 32, "model.max_position_embeddings": 64, "model.hidden_dropout_prob": 0.1,
          "model.attention_probs_dropout_prob": 0.1, "train.save_steps": 2, "train.keep_checkpoints": 5}


def test_a_checkpoint_from_before_the_schedule_resumes_as_it_did(data, tmp_path):
    """tests/golden/legacy_checkpoint/step_00000002 was written by main a91a98d (generate.py there): it has no
    "schedule" entry; its data position is step x global batch.  Resumed to step 4, the losses are the ones that
    code logged for steps 3-4 without interruption (dropout on: the RNG states are restored too)."""
    out = tmp_path / "out"
    shutil.copytree(os.path.join(GOLDEN, "step_00000002"), out / "checkpoints" / "step_00000002")
    os.symlink("step_00000002", out / "checkpoints" / "latest")
    assert "schedule" not in state_of(out, 2)
    losses = train(data, out, **LEGACY, **{"train.max_steps": 4, "train.resume": "auto"})
    recorded = json.load(open(os.path.join(GOLDEN, "losses.json")))["losses"]
    assert sorted(losses) == [3, 4]
    for step in (3, 4):
        got, want = (float(x.split(": ")[1]) for x in (losses[step], recorded[str(step)]))
        # float noise across CPUs is ~1e-7 here; a wrong data position or RNG state moves the loss by > 1e-3
        assert abs(got - want) < 1e-5, (step, got, want)
    state = state_of(out, 4)
    assert state["consumed_samples"] == 32 and state["schedule"]["consumed_samples"] == {"64": 32}
    assert state["schedule"]["consumed_by_phase"] == {"1": 32}
    assert "global_batch_size" not in open(out / "train.log").read().split("resume: from")[1]


@pytest.fixture(scope="module")
def two_steps(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("two_steps")
    train(data, out, **{"train.max_steps": 2, "train.save_steps": 2})
    return out


def test_resume_with_another_global_batch_continues_at_the_consumed_samples(data, two_steps, tmp_path):
    """Batch 8 for 2 steps, then resumed at batch 16 (accumulation 2): one line says so, and the steps after it
    are exactly those of one run whose phase 2 makes the same change (samples [16, 32), [32, 48))."""
    out = tmp_path / "resumed"
    shutil.copytree(two_steps, out, symlinks=True)
    resumed = train(data, out, **{"train.max_steps": 4, "train.resume": "auto", "train.global_batch_size": 16})
    log = open(out / "train.log").read()
    assert ("resume: train.global_batch_size: 8 (checkpoint) -> 16 (now) from step 3; the data continues at sample "
            "16 of the sequence-length-64 sample index (the samples consumed): step 3 reads samples [16, 32)") in log
    phased = train(data, tmp_path / "phased", **{"train.max_steps": 4, "train.phases": phases(
        {"until_step": 2}, {"until_step": 4, "train.global_batch_size": 16})})
    for step in (3, 4):
        assert resumed[step] == phased[step], (step, resumed[step], phased[step])
    assert state_of(out, 4)["schedule"]["consumed_samples"] == {"64": 48}


def test_other_data_refused_unless_reset_which_keeps_weights_and_optimizer(data, two_steps, tmp_path, capsys):
    other, _ = U.make_data(str(tmp_path / "other"), seed=5)
    out = tmp_path / "out"
    shutil.copytree(two_steps, out, symlinks=True)
    over = {"train.max_steps": 3, "train.resume": "auto", "data.max_ngrams": 2}
    assert run_pretrain.main(["--config", CONFIG, *U.tiny_overrides(*data, str(out), **over)]) == 2
    err = capsys.readouterr().err
    assert "error: data.max_ngrams: 3 (checkpoint) vs 2 (now) -- " in err and "or train.resume_data=reset" in err
    over["train.resume_data"] = "reset"
    train((other, data[1]), out, **over)
    log = open(out / "train.log").read()
    assert ("resume: train.resume_data=reset: the weights, the optimizer and the step (2) are kept; the data starts "
            "over at sample 0 of the sequence-length-64 sample index (the 16 samples the checkpoint had consumed are "
            "not counted)") in log
    assert state_of(out, 3)["schedule"]["consumed_samples"] == {"64": 8} and state_of(out, 3)["step"] == 3
    # the same command again (after a crash, or to go further) continues the new data order; it does not reset again
    train((other, data[1]), out, **dict(over, **{"train.max_steps": 4}))
    assert state_of(out, 4)["schedule"]["consumed_samples"] == {"64": 16}
    assert log.count("train.resume_data=reset:") == open(out / "train.log").read().count("train.resume_data=reset:")


def test_another_sequence_length_inside_a_phase_is_refused(data, two_steps, tmp_path, capsys):
    out = tmp_path / "out"
    shutil.copytree(two_steps, out, symlinks=True)
    assert run_pretrain.main(["--config", CONFIG, *U.tiny_overrides(*data, str(out), **{
        "train.max_steps": 4, "train.resume": "auto",
        "train.phases": phases({"until_step": 4, "data.max_seq_len": 32})})]) == 2
    assert capsys.readouterr().err.startswith(
        "error: train.phases: phase 1: data.max_seq_len=32: the checkpoint at step 2 was training at 64; another "
        "sequence length would not continue its data")


# ---------------------------------------------------------------------------------------------------- 2 processes


def test_exact_resume_after_kill_9_past_a_phase_boundary(data, tmp_path):
    """2 ranks, dropout on, 3 phases (batch 8 -> 16 at step 3, seq 64 -> 32 at step 5); the job is killed with
    SIGKILL after step 4 (checkpoint inside phase 2) and resumed: it crosses into phase 3 (a new sample index) and
    every loss is the uninterrupted run's to 9 decimals, the final weights bit for bit."""
    over = {"model.hidden_dropout_prob": 0.1, "model.attention_probs_dropout_prob": 0.1, "train.max_steps": 6,
            "train.save_steps": 4, "train.micro_batch_size": 4, "train.resume": "auto",
            "train.phases": phases({"until_step": 2}, {"until_step": 4, "train.global_batch_size": 16},
                                   {"until_step": 6, "data.max_seq_len": 32})}
    straight = tmp_path / "straight"
    p = U.launch(2, CONFIG, U.tiny_overrides(*data, str(straight), **over), str(tmp_path / "log_s"))
    assert p.returncode == 0, p.stdout[-3000:]

    killed, tag = tmp_path / "killed", f"phases-{os.getpid()}"
    cmd = [sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node", "2", "--log_dir",
           str(tmp_path / "log_k"), sys.executable, "-m", "tests._faults", "hang", "all", "4",
           "ernie_style.run_pretrain", "--config", CONFIG, *U.tiny_overrides(*data, str(killed), **over)]
    job = subprocess.Popen(cmd, cwd=U.REPO, env=L.env_of(tag), stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, start_new_session=True)
    latest = killed / "checkpoints" / "latest"
    try:
        deadline = time.time() + 180
        while time.time() < deadline and not (os.path.islink(latest) and os.readlink(latest) == "step_00000004"):
            assert job.poll() is None
            time.sleep(0.5)
        assert os.path.islink(latest)
    finally:
        for pid in L.marked(tag):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        job.wait(timeout=30)
    assert not L.left_after(tag, 10)
    assert max(U.log_losses(killed / "train.log")) == 4

    p = U.launch(2, CONFIG, U.tiny_overrides(*data, str(killed), **over), str(tmp_path / "log_r"))
    assert p.returncode == 0, p.stdout[-3000:]
    a, b = U.log_losses(straight / "train.log"), U.log_losses(killed / "train.log")
    assert sorted(a) == sorted(b) == [1, 2, 3, 4, 5, 6]
    for step in a:
        assert a[step] == b[step], (step, a[step], b[step])  # "loss: x.xxxxxxxxx", 9 decimals
    log = open(killed / "train.log").read()
    assert "phase 3: sample index for max_seq_len 32" in log.split("resume: from")[1]
    assert U.log_fields(killed / "train.log")[6]["phase"] == 3
    wa, wb = (paddle.load(str(d / "checkpoints" / "step_00000006" / "model_state.pdparams"))
              for d in (straight, killed))
    for k in wa:
        np.testing.assert_array_equal(wa[k].numpy(), wb[k].numpy(), err_msg=k)


def test_a_command_line_key_the_first_phase_sets_is_refused(data, tmp_path):
    recipe = tmp_path / "recipe.yaml"
    text = open(CONFIG).read().replace("train:\n", "train:\n  phases: [{until_step: 3, train.global_batch_size: 16}, "
                                                 "{until_step: 1000000}]\n", 1)
    recipe.write_text(text)
    over = U.tiny_overrides(*data, "o")
    over = [o for o in over if not o.startswith("train.global_batch_size=")]
    assert load_config(str(recipe), over).train.phases[0]["train.global_batch_size"] == 16
    with pytest.raises(ConfigError, match=r"^train.global_batch_size \(command line\): phase 1 of train.phases sets "
                                          r"it \(16\), so the command line's value would never be used"):
        load_config(str(recipe), [*over, "train.global_batch_size=32"])
    # a later phase's key: the command line sets the earlier phases' value (no refusal)
    assert load_config(str(recipe), [*over, "data.max_seq_len=32"]).data.max_seq_len == 32


# ---------------------------------------------------------------------------------------------------- the recipes


def scaled_overrides(recipe, data, out):
    """The recipe's schedule scaled down: every phase 2 steps long, batch sizes / 32, micro batches / 16, sequence
    lengths / 8, warmups to at most 1 step, a 2-layer width-32 model; every other key of each phase kept."""
    cfg = load_config(recipe, [f"data.vocab_file={data[1]}"])
    t, d = cfg.train, cfg.data

    def scale(key, value):
        if key == "data.max_seq_len":
            return value // 8
        if key == "train.global_batch_size":
            return max(2, value // 32)
        if key == "train.micro_batch_size":
            return max(1, value // 16)
        if key == "optim.warmup_steps":
            return min(value, 1)
        return value

    items = [{**{k: scale(k, v) for k, v in p.items()}, "until_step": 2 * (i + 1)} for i, p in enumerate(t.phases)]
    steps = 2 * len(items)
    extra = {"data.max_seq_len": d.max_seq_len // 8, "train.global_batch_size": max(2, t.global_batch_size // 32),
             "train.micro_batch_size": max(1, t.micro_batch_size // 16), "train.max_steps": steps,
             "optim.decay_steps": steps, "optim.warmup_steps": 1, "optim.warmup_ratio": 0, "amp.enable": False,
             "train.phases": phases(*items), "train.eval_steps": 2, "model.max_position_embeddings": 128}
    return U.tiny_overrides(*data, str(out), **extra), items


@pytest.mark.parametrize("name", ["roformer_base_wwm_cluecorpussmall.yaml", "roberta_char_tiny.yaml",
                                  "bert_wwm_ext_base.yaml"])
def test_recipe_phases_run_scaled_down(data, tmp_path, name):
    recipe = os.path.join(U.REPO, "configs", name)
    over, items = scaled_overrides(recipe, data, tmp_path / "out")
    over.append(f"data.cache_dir={tmp_path / 'index'}")
    assert run_pretrain.main(["--config", recipe, *over]) == 0
    log = open(tmp_path / "out" / "train.log").read()
    fields = U.log_fields(tmp_path / "out" / "train.log")
    assert [fields[s]["phase"] for s in sorted(fields)] == [1, 1, 2, 2]
    assert "schedule: phase 2 of 2, steps 3-4" in log
    scalars, texts = read_records(str(tmp_path / "out" / "visualdl"))
    assert {s: v for s, (v, _) in scalars["train/phase"].items()} == {1: 1.0, 2: 1.0, 3: 2.0, 4: 2.0}
    assert [(tag, step) for tag, step, _, _ in texts if tag == "phase"] == [("phase", 0), ("phase", 2)]
    if name.startswith("roberta"):  # UER's stage 2: its own sample index at seq 512 / 8, lr restarted at 5e-5
        assert "phase 2: sample index for max_seq_len 64" in log
        # eval at the phase's sequence length: the valid split's index was built for 64 when phase 2 started
        cache = [json.load(open(p)) for p in glob.glob(os.path.join(str(tmp_path / "index"), "*_valid_samples_*.json"))]
        assert sorted(c["params"]["max_seq_len"] for c in cache) == [16, 64]
        assert fields[3]["learning rate"] == pytest.approx(5e-5) and fields[2]["learning rate"] == 0.0
        assert fields[1]["sop_loss"] == 0.0  # MLM only
    elif name.startswith("bert"):  # HFL's stage 2: seq 512 / 8 on its own sample index, batch 384 / 32, LAMB re-warmed
        assert "phase 2: sample index for max_seq_len 64" in log and "global batch 12 (micro 1" in log
        assert fields[3]["learning rate"] == pytest.approx(1e-4) and fields[2]["learning rate"] == 0.0
    else:  # the batch doubles, the data continues where batch 128 / 32 left it
        assert "phase 2: continues the max_seq_len 64 sample index at its sample 8" in log
        assert fields[3]["ips"] > 0 and "global batch 8 (micro 4" in log


def test_a_phase_added_at_the_resumed_step_may_change_the_sequence_length(data, two_steps, tmp_path):
    """Two runs made one after the fact (UER's stage 2 after a run without phases): a phase of the new config that
    starts at the resumed step starts its own sample index, as the same config would from step 0."""
    out = tmp_path / "out"
    shutil.copytree(two_steps, out, symlinks=True)
    train(data, out, **{"train.max_steps": 3, "train.resume": "auto", "train.phases": phases(
        {"until_step": 2}, {"until_step": 3, "data.max_seq_len": 32})})
    log = open(out / "train.log").read().split("resume: from")[1]
    assert "phase 2: sample index for max_seq_len 32" in log and "the data starts at its sample 0" in log
    assert state_of(out, 3)["schedule"]["consumed_samples"] == {"32": 8, "64": 16}
