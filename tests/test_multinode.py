"""Several machines (issue 22): the rendezvous before the launch, the same job everywhere, the cluster check.

Two launchers on this host stand for two machines (``NNODES=2 MASTER=127.0.0.1:PORT NPROC=1``): a missing second
machine gives the waiting line and one error line within the (short) join timeout, with no process left; a
different ``train.max_steps`` stops both before step 1 naming the key; ``--check-cluster`` with a data prefix whose
contents differ on the second "machine" prints the table and exits 1 naming it (the same command exiting 0 is the
README's cluster check, run by tests/test_journey.py).  The protocol, the comparison and the table are also
tested in-process.
"""
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading

import pytest

import _trainer_util as U
from _launch_util import env_of, kill_marked, left_after
from ernie_style.training import cluster_check, rendezvous
from ernie_style.training.rendezvous import ClusterError, Hello, Settings

CONFIG = os.path.join(U.REPO, "configs", "roformer_tiny_demo.yaml")
SCRIPT = os.path.join(U.REPO, "run_pretrain.sh")


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return U.make_data(str(tmp_path_factory.mktemp("multinode_data")))


# ------------------------------------------------------------------------------------------------------------
# In-process: the comparison, the protocol, the settings, the table


def _job(**config):
    tree = {"train": {"max_steps": 20, "output_dir": "/a/out"}, "data": {"num_workers": 2}}
    for key, value in config.items():
        section, name = key.split("__")
        tree[section][name] = value
    contents = {"data.prefixes[0]": {"path": "/a/data/x", "content": {".bin": "ab" * 32}}}
    return rendezvous.describe_job(tree, contents, world_size=2, mode="train")


def test_job_diff_names_the_keys_and_ignores_what_may_differ():
    a = _job()
    b = _job(train__output_dir="/mnt/out", data__num_workers=0)  # paths and per-machine settings may differ
    b["data.prefixes[0]"] = dict(a["data.prefixes[0]"], path="/b/copy/x")  # the same contents elsewhere
    assert rendezvous.job_diff([a, b], ["machine 0, host a", "machine 1, host b"]) == []
    c = _job(train__max_steps=40)
    c["data.prefixes[0]"] = {"path": "/b/x", "content": {".bin": "cd" * 32}}
    lines = [d.line for d in rendezvous.job_diff([a, c], ["machine 0, host a", "machine 1, host b"])]
    assert "train.max_steps: 20 (machine 0, host a) vs 40 (machine 1, host b)" in lines
    assert any(line.startswith("data.prefixes[0]: /a/data/x (content .bin abababababab) (machine 0, host a) vs "
                               "/b/x (content .bin cdcdcdcdcdcd)") for line in lines), lines


def _join_all(port, jobs, timeout_s=30.0):
    """join() of every job in its own thread, at 127.0.0.1:port; returns [machine index or ClusterError]."""
    out = [None] * len(jobs)

    def one(i):
        settings = Settings(f"127.0.0.1:{port}", len(jobs), timeout_s, 100.0, f"NNODES={len(jobs)} MASTER=...")
        try:
            out[i] = rendezvous.join(settings, Hello(host=f"h{i}", pid=i, job=jobs[i]))
        except ClusterError as e:
            out[i] = e

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return out


def test_join_in_process_gives_machine_indexes_or_stops_everyone_naming_the_key():
    got = _join_all(_free_port(), [_job(), _job(), _job()])
    assert sorted(got) == [0, 1, 2], got
    got = _join_all(_free_port(), [_job(), _job(train__max_steps=40)])
    assert all(isinstance(g, ClusterError) for g in got), got
    for g in got:
        assert re.search(r"train\.max_steps: (20|40) \(machine 0, host h\d\) vs (40|20) \(machine 1, host h\d\)",
                         str(g)), g


def test_join_timeout_says_what_joined_and_what_to_check():
    port = _free_port()
    settings = Settings(f"127.0.0.1:{port}", 3, 0.3, 100.0, f"NNODES=3 MASTER=127.0.0.1:{port}")
    with pytest.raises(ClusterError) as e:
        rendezvous.join(settings, Hello(host="a", pid=1, job=_job()))
    assert str(e.value).startswith(f"1 of 3 machines joined at 127.0.0.1:{port} within ")
    assert "missing 2 machine(s)" in str(e.value) and f"reaches 127.0.0.1:{port}" in str(e.value)


def test_ctrl_c_while_waiting_is_one_line():
    port = _free_port()
    settings = Settings(f"127.0.0.1:{port}", 2, 30.0, 100.0, f"NNODES=2 MASTER=127.0.0.1:{port}")
    timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT))
    # Python's own Ctrl-C handler, as in a fresh `run_pretrain.sh` process: a test run before this one in the same
    # pytest(-xdist) process may have left another (a Trainer built in-process and never trained keeps its own)
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    timer.start()
    try:
        with pytest.raises(ClusterError, match=f"interrupted while waiting for machines at 127.0.0.1:{port}"):
            rendezvous.join(settings, Hello(host="a", pid=1, job=_job()))
    finally:
        timer.join()
        signal.signal(signal.SIGINT, old)


def test_another_program_at_the_port_is_named():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        port = server.getsockname()[1]

        def answer():
            conn, _ = server.accept()
            conn.recv(65536)
            conn.sendall(b"HTTP/1.0 400 Bad Request\r\n\r\n")
            conn.close()

        t = threading.Thread(target=answer)
        t.start()
        settings = Settings(f"127.0.0.1:{port}", 2, 10.0, 100.0, "NNODES=2 MASTER=...")
        with pytest.raises(ClusterError, match="not as a launcher of this project"):
            rendezvous.join(settings, Hello(host="b", pid=2, job=_job()))
        t.join()


def test_settings_from_the_environment():
    s = Settings.from_env(10.0, {"NNODES": "2", "MASTER": "10.0.0.1:8090", "JOIN_TIMEOUT_MINUTES": "0.5"})
    assert (s.master, s.nnodes, s.timeout_s, s.interval_s) == ("10.0.0.1:8090", 2, 30.0, 30.0)
    assert Settings.from_env(10.0, {"NNODES": "2", "MASTER": "h:1"}).timeout_s == 600.0  # the config's minutes
    s = Settings.from_env(10.0, {"IPS": "10.0.0.1,10.0.0.2"})
    assert (s.master, s.nnodes) == ("10.0.0.1:6070", 2)
    with pytest.raises(ClusterError, match="JOIN_TIMEOUT_MINUTES='soon': expected a number of minutes > 0"):
        Settings.from_env(10.0, {"NNODES": "2", "MASTER": "h:1", "JOIN_TIMEOUT_MINUTES": "soon"})
    with pytest.raises(ClusterError, match="MASTER='10.0.0.1': expected host:port"):
        Settings(**{**s.__dict__, "master": "10.0.0.1"}).address()


def test_nccl_interface_follows_nccl_rules():
    ifaces = [("lo", "127.0.0.1"), ("docker0", "172.17.0.1"), ("eth0", "10.0.0.2"), ("ib0", "192.168.0.2")]
    assert cluster_check.nccl_interface(ifaces, "") == "ib0"
    assert cluster_check.nccl_interface(ifaces[:3], "") == "eth0"
    assert cluster_check.nccl_interface(ifaces, "eth") == "eth0"
    assert cluster_check.nccl_interface(ifaces, "^lo,docker,ib") == "eth0"
    assert cluster_check.nccl_interface(ifaces, "=eth") == "none matches NCCL_SOCKET_IFNAME==eth"


def _report(rank, host, unseen=(), loopback=False, **job):
    return cluster_check.RankReport(rank=rank, machine=rank, host=host, device="cpu", endpoint=f"{host}:1",
                                    interface="eth0", unseen=list(unseen), job=_job(**job),
                                    settings={"GLOO_SOCKET_IFNAME": "unset"}, route="gloo address ...",
                                    loopback=loopback, seconds=[0.2, 0.1, 0.3] if rank < 2 else [])


def test_cluster_table_names_each_problem():
    lines, problems = cluster_check.report([_report(0, "a"), _report(1, "b")], "/out", 100.0, [0, 1], 2)
    assert problems == [] and lines[-1].startswith("cluster check: ok")
    assert "median 0.2000 s of 3 rounds, 500.0 MB/s bus bandwidth" in "\n".join(lines)
    reports = [_report(0, "a", loopback=True), _report(1, "b", unseen=[0], train__max_steps=40)]
    lines, problems = cluster_check.report(reports, "/out", 100.0, [0, 1], 2)
    assert problems[0] == "train.max_steps: 20 (rank 0, host a) vs 40 (rank 1, host b)"
    assert "is not shared: rank 1 (b) does not see the probe files of rank(s) 0" in problems[1]
    assert "machine 0 (a): gloo address ... is a loopback address" in problems[2]
    assert lines[-1].startswith("cluster check: 3 problem(s): 1) train.max_steps")
    row = next(line for line in lines if line.startswith("1 "))
    assert row.split()[4:7] == ["same", "same", "NOT"]  # data, vocab, output dir


def test_job_contents_compares_prefixes_by_meta_sha256_and_size(sample_data, tmp_path):
    from ernie_style.config.pretrain import load_config
    from ernie_style.training.preflight import job_contents

    copy = tmp_path / "copy"
    copy.mkdir()
    for ext in (".bin", ".idx", ".wwm", ".meta.json"):
        if os.path.exists(sample_data.prefix + ext):
            shutil.copy(sample_data.prefix + ext, str(copy / "sample") + ext)

    def contents(prefix):
        return job_contents(load_config(CONFIG, [f"data.prefixes=[{prefix}]", f"data.vocab_file={sample_data.vocab}"]))

    a, b = contents(sample_data.prefix), contents(copy / "sample")
    assert a["data.prefixes[0]"]["content"][".bin"] == b["data.prefixes[0]"]["content"][".bin"]  # meta's sha256
    assert len(a["data.prefixes[0]"]["content"][".bin"]) == 64
    assert rendezvous.job_diff([a, b], ["0", "1"]) == []
    with open(str(copy / "sample") + ".bin", "r+b") as f:  # an incomplete copy: its meta.json says otherwise
        f.truncate(os.path.getsize(str(copy / "sample") + ".bin") // 2)
    assert [d.key for d in rendezvous.job_diff([a, contents(copy / "sample")], ["0", "1"])] == ["data.prefixes[0]"]


# ------------------------------------------------------------------------------------------------------------
# Two launchers on this host, through run_pretrain.sh


def _launchers(tag, tmp_path, overrides_per_machine, *extra_args, nnodes=2, **env):
    """run_pretrain.sh once per entry of ``overrides_per_machine`` (each a "machine" of ``nnodes``), the same MASTER;
    returns [(returncode, stdout, stderr)] once all have ended, after checking that none left a process behind."""
    master = f"127.0.0.1:{_free_port()}"
    procs = []
    try:
        for node, over in enumerate(overrides_per_machine):
            procs.append(subprocess.Popen(
                ["bash", SCRIPT, *extra_args, CONFIG, *over], cwd=U.REPO, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, text=True,
                env=env_of(tag, PYTHON=sys.executable, NNODES=str(nnodes), MASTER=master,
                           NPROC="1", LOG_DIR=str(tmp_path / f"log{node}"), ERNIE_JOIN_PROGRESS_SECONDS="1", **env)))
        outs = [p.communicate(timeout=240) for p in procs]
        assert left_after(tag) == {}, "processes left running"
    finally:
        kill_marked(tag)
    return [(p.returncode, o, e) for p, (o, e) in zip(procs, outs)], master


@pytest.mark.multiproc
def test_a_missing_machine_gives_the_waiting_line_then_one_error_line(data, tmp_path):
    over = U.tiny_overrides(*data, str(tmp_path / "out"), **{"train.micro_batch_size": 4})
    [(rc, out, err)], master = _launchers(f"join-timeout-{os.getpid()}", tmp_path, [over], JOIN_TIMEOUT_MINUTES="0.05")
    assert rc == 2, out + err
    assert f"waiting for machines: 1 of 2 joined at {master} after " in err, err
    assert f"every machine runs the same command with NNODES=2 MASTER={master}" in err
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"error: 1 of 2 machines joined at {master} within 0.05 min"), err
    assert "missing 1 machine(s)" in last and f"check that every machine reaches {master}" in last
    assert not os.path.exists(tmp_path / "log0" / "workerlog.0")  # no launch started


@pytest.mark.multiproc
def test_a_different_max_steps_stops_both_machines_before_step_1(data, tmp_path):
    out = str(tmp_path / "out")
    over = [U.tiny_overrides(*data, out, **{"train.micro_batch_size": 4, "train.max_steps": steps})
            for steps in (3, 4)]
    results, _ = _launchers(f"mismatch-{os.getpid()}", tmp_path, over)
    for rc, stdout, err in results:
        assert rc == 2, stdout + err
        last = err.strip().splitlines()[-1]
        assert re.match(r"error: the machines do not run the same job: train\.max_steps: (3|4) \(machine 0, host "
                        r"\S+\) vs (4|3) \(machine 1, host \S+\) -- ", last), err
        assert "global step" not in stdout + err
    assert not os.path.exists(os.path.join(out, "checkpoints"))


@pytest.mark.multiproc
def test_check_cluster_names_a_data_prefix_whose_contents_differ(data, tmp_path):
    other = U.make_data(str(tmp_path / "copy"), seed=1)[0]  # "the same data" on machine 1, other contents
    out = str(tmp_path / "out")
    over = U.tiny_overrides(*data, out, **{"train.micro_batch_size": 4})
    results, _ = _launchers(f"check-{os.getpid()}", tmp_path, [over, over + [f"data.prefixes=[{other}]"]],
                            "--check-cluster", CHECK_CLUSTER_MB="1", CHECK_CLUSTER_ROUNDS="2")
    for rc, stdout, err in results:
        assert rc == 1, stdout + err
        lines = stdout.splitlines()
        header = next(i for i, line in enumerate(lines) if line.startswith("rank  machine  host  device  data"))
        assert lines[header + 1].split()[:6] == ["0", "0", socket.gethostname(), "cpu", "ref", "ref"]
        assert lines[header + 2].split()[:7] == ["1", "1", socket.gethostname(), "cpu", "DIFFERS", "same", "shared"]
        assert any(line.startswith("all-reduce of 1 MB between the 2 machines (ranks 0, 1): median ") for line in lines)
        assert any(line.startswith("machine 1 (") and "GLOO_SOCKET_IFNAME=" in line for line in lines)
        # (machine 0 is the launcher that bound MASTER first: either one)
        assert lines[-1].startswith("cluster check: 1 problem(s): 1) data.prefixes[0]: "), lines[-1]
        assert f"{data[0]} (" in lines[-1] and f"{other} (" in lines[-1] and " vs " in lines[-1]
        assert "global step" not in stdout
    assert not os.path.exists(os.path.join(out, "checkpoints"))


def test_finetune_jobs_compare_files_by_content_not_path(tmp_path):
    """run_finetune.sh's job: the data files and the vocab by sha256 (copies elsewhere are the same job)."""
    import _finetune_util as F
    from ernie_style import finetune
    from ernie_style.config.finetune import load_finetune_config

    d = F.seq_files(str(tmp_path / "a"), n_train=40, n_dev=10)
    copy = tmp_path / "b"
    shutil.copytree(d["root"], copy)
    seq = os.path.join(U.REPO, "configs", "finetune", "seq_cls.yaml")

    def job(root, **extra):
        cfg = load_finetune_config(seq, F.tiny_overrides(str(tmp_path / "out"), os.path.join(root, "train.tsv"),
                                                         os.path.join(root, "dev.tsv"),
                                                         os.path.join(root, "vocab.txt"), **extra))
        return rendezvous.describe_job(cfg.to_dict(), finetune.job_contents(cfg), 2, "train")

    a = job(d["root"])
    assert a["data.train_file"]["sha256"] and a["model.init"] == "random"
    assert rendezvous.job_diff([a, job(str(copy))], ["0", "1"]) == []
    with open(copy / "train.tsv", "a", encoding="utf-8") as f:
        f.write("0\t多一行\n")
    diff = rendezvous.job_diff([a, job(str(copy), **{"train.epochs": 3})], ["machine 0", "machine 1"])
    assert [x.key for x in diff] == ["data.train_file", "train.epochs"], diff
    assert diff[0].line.startswith(f"data.train_file: {os.path.join(d['root'], 'train.tsv')} (sha256 ")
