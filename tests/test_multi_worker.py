"""MultiWorkerMirroredStrategy: two worker processes on 127.0.0.1.

The last test runs the training CLI on two workers (Stage I, pseudo labels,
eval on ToyScapes): the pseudo stage is split between them and equals a
one-process run byte for byte, and eval runs once, on the chief.

Both workers run tests/multi_worker_main.py (a few Stage I steps through
`stages.training.fit`) and must end with bit-identical weights. A one-process
run with the same global batch split over two replicas (MirroredStrategy on
two logical CPUs) gives the very same bits. One device against two
replicas (another summation order, no useful a-priori bound for the deep
tiny G) is tests/adapters/test_inter.py's business, not repeated here.
Only the chief writes the real checkpoints. A worker that dies mid-training
ends its peer's collective within seconds (PeerLost); a stuck one would
leave it waiting, so every process has a deadline and both are killed when
anything goes wrong.
"""

import filecmp
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf
from absl import flags

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(HERE, "adapters"))

# pylint: disable=wrong-import-position
import multi_worker_main as worker  # noqa: E402
from adapter_fixtures import compile_tiny, tiny_generator  # noqa: E402
from adapter_fixtures import weights_of  # noqa: E402
from tf_pixintra import config as config_lib  # noqa: E402
from tf_pixintra import train  # noqa: E402
from tf_pixintra.adapters.inter import InterDomainAdapter  # noqa: E402
from tf_pixintra.stages import training  # noqa: E402

STEPS = 2
TIMEOUT_S = 240   # from launch; a run took 70-115 s on 2 heavily shared cores


def free_ports(n):
    """n distinct free ephemeral ports on 127.0.0.1 (held open, then released)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def launch_workers(tmp_path, checkpoint_dir, steps=STEPS, extra=()):
    """Starts the two workers; returns [(process, out prefix, log path)]."""
    def command(out):
        return [sys.executable, os.path.join(HERE, "multi_worker_main.py"),
                "--out", out, "--checkpoint_dir", checkpoint_dir,
                "--steps", str(steps), "--checkpoint_every", "1", *extra]
    return start_workers(tmp_path, command)


def start_workers(tmp_path, command, count=2, cwd=None):
    """Starts `count` loopback workers, each with its TF_CONFIG and a log
    (stdout and stderr); `command(out prefix)` is a worker's argv. Returns
    [(process, out prefix, log path)]: wait for them with `wait_all`."""
    ports = free_ports(count)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    workers = []
    for index in range(count):
        env = dict(os.environ, CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="2",
                   TF_CONFIG=json.dumps({"cluster": cluster,
                                         "task": {"type": "worker",
                                                  "index": index}}))
        out = str(tmp_path / f"worker{index}")
        log_path = tmp_path / f"worker{index}.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(  # pylint: disable=consider-using-with
                command(out), stdout=log, stderr=subprocess.STDOUT, env=env,
                cwd=cwd)
        workers.append((proc, out, log_path))
    return workers


def wait_all(workers, deadline, expected_code=0):
    """Waits for every worker; kills all of them on a failure or the deadline."""
    try:
        pending = [w for w in workers]
        while pending:
            for w in list(pending):
                code = w[0].poll()
                if code is None:
                    continue
                pending.remove(w)
                if code != expected_code:
                    raise AssertionError(f"worker exited with {code}:\n"
                                         + _tail(w[2]))
            if pending and time.monotonic() > deadline:
                raise AssertionError(
                    "workers still running at the deadline (a crashed or "
                    "slow peer); logs:\n" + "\n".join(_tail(w[2]) for w in workers))
            time.sleep(0.2)
    finally:
        kill_all(workers)


def kill_all(workers):
    """Kills (and reaps) every worker still running."""
    for proc, _, _ in workers:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _tail(path, n=3000):
    with open(path, "rb") as f:
        return f.read().decode("utf-8", "replace")[-n:]


def one_process_weights(strategy):
    """The same run in this process, global batch unchanged."""
    adapter = worker.build_adapter(strategy)
    adapter.fit(worker.make_dataset()(0), steps_per_epoch=STEPS, epochs=1,
                verbose=0)
    return weights_of(adapter.generator, adapter.d_main, adapter.d_aux)


@pytest.mark.e2e   # two TF start-ups + traced steps: 75-120 s on a busy 2-core box
def test_two_workers_agree_with_each_other_and_with_one_process(tmp_path):
    checkpoint_dir = str(tmp_path / "checkpoints")
    workers = launch_workers(tmp_path, checkpoint_dir)
    deadline = time.monotonic() + TIMEOUT_S
    try:
        # Computed while the workers start up and train.
        two_replicas = one_process_weights(
            tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]))
    except BaseException:
        kill_all(workers)
        raise
    wait_all(workers, deadline)

    results = []
    for _, out, _ in workers:
        with np.load(out + ".npz") as npz:
            weights = [npz[f"arr_{i}"] for i in range(len(npz.files))]
        with open(out + ".json", encoding="utf-8") as f:
            results.append((weights, json.load(f)))
    (w0, info0), (w1, info1) = results
    print("worker seconds:", info0["seconds"], info1["seconds"])
    assert info0["replicas"] == info1["replicas"] == 2
    assert info0["is_chief"] and not info1["is_chief"]
    assert len(w0) == len(w1) == len(two_replicas) > 0
    # The all-reduce hands both workers the very same sums.
    for a, b in zip(w0, w1):
        np.testing.assert_array_equal(a, b)
    # The logged losses are means over both replicas, the same on both.
    assert info0["logs"] == info1["logs"]
    assert all(np.isfinite(v) for v in info0["logs"].values())
    # One process, two replicas: the same half batches per replica and a sum
    # of two values (commutative), so the same bits.
    for a, ref in zip(w0, two_replicas):
        np.testing.assert_array_equal(a, ref)
    for a, start in zip(w0, _initial_weights()):
        assert np.isfinite(a).all()
        if a.ndim == 4:   # every conv kernel of G and both Ds has trained
            assert not np.array_equal(a, start)

    # Checkpoints: the chief wrote the real ones; the other worker wrote to
    # workertemp_1 (seen at the end of its training), deleted afterwards.
    real = sorted(os.listdir(checkpoint_dir))
    assert f"ckpt-{STEPS}.index" in real and "ckpt-1.index" in real
    assert "workertemp_1" not in real
    seen = info1["seen_at_train_end"]
    assert "ckpt-1.index" in seen["workertemp_1"]
    assert "workertemp_0" not in seen


def _initial_weights():
    adapter = worker.build_adapter(tf.distribute.OneDeviceStrategy("/cpu:0"))
    return weights_of(adapter.generator, adapter.d_main, adapter.d_aux)


def _source_only_adapter():
    """A cheap adapter (no discriminators) for the checkpoint-routing test."""
    adapter = InterDomainAdapter(tiny_generator(seed=1), variant="source_only")
    compile_tiny(adapter, lr=1e-4)
    return adapter


def test_non_chief_resumes_from_the_real_dir_and_writes_elsewhere(tmp_path):
    """chief=False: restores the chief's checkpoint, saves to a temp dir only."""
    checkpoint_dir = str(tmp_path)
    make = worker.make_dataset()
    training.fit(_source_only_adapter(), make, 1, checkpoint_dir,
                 checkpoint_every=1, verbose=0)
    assert tf.train.latest_checkpoint(checkpoint_dir).endswith("ckpt-1")
    follower = _source_only_adapter()
    skipped = []
    training.fit(follower, lambda skip: skipped.append(skip) or make(skip), 2,
                 checkpoint_dir, checkpoint_every=1, verbose=0, chief=False)
    assert skipped == [1] and int(follower.g_optimizer.iterations) == 2
    assert tf.train.latest_checkpoint(checkpoint_dir).endswith("ckpt-1")
    assert sorted(os.listdir(checkpoint_dir)) == [
        "checkpoint", "ckpt-1.data-00000-of-00001", "ckpt-1.index"]


@pytest.mark.parametrize("chief, expected", [(True, "ck"),
                                             (False, "ck/workertemp_3")])
def test_checkpoint_write_dir(chief, expected):
    assert training.checkpoint_write_dir("ck", chief, 3) == os.path.join(
        *expected.split("/"))


def test_a_failed_worker_gets_its_peer_killed(tmp_path):
    """wait_all: one worker exits 3, the other (blocked) is killed at once."""
    workers = []
    for i, code in enumerate(("import sys; sys.exit(3)",
                              "import time; time.sleep(120)")):
        log_path = tmp_path / f"w{i}.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(  # pylint: disable=consider-using-with
                [sys.executable, "-c", code], stdout=log,
                stderr=subprocess.STDOUT)
        workers.append((proc, None, log_path))
    start = time.monotonic()
    with pytest.raises(AssertionError, match="exited with 3"):
        wait_all(workers, time.monotonic() + 60)
    assert time.monotonic() - start < 30
    assert workers[1][0].returncode is not None   # killed and reaped


@pytest.mark.e2e   # two TF start-ups + traced steps, as the test above
def test_sigterm_on_one_worker_stops_both_after_the_same_step(tmp_path):
    """Worker 1 gets SIGTERM during step 2 of 6: both workers agree to stop
    after step 2 (none is left waiting in an all-reduce), the chief saves
    ckpt-2 with every optimizer at iteration 2, and both exit 130."""
    checkpoint_dir = str(tmp_path / "checkpoints")
    workers = launch_workers(tmp_path, checkpoint_dir, steps=6,
                             extra=("--sigterm_at", "2"))
    wait_all(workers, time.monotonic() + TIMEOUT_S, expected_code=130)
    infos = []
    for _, out, _ in workers:
        with open(out + ".json", encoding="utf-8") as f:
            infos.append(json.load(f))
    assert all(info["interrupted"] for info in infos)
    assert [info["iterations"] for info in infos] == [2, 2]
    assert tf.train.latest_checkpoint(checkpoint_dir).endswith("ckpt-2")
    restored = worker.build_adapter(tf.distribute.OneDeviceStrategy("/cpu:0"))
    _, step = training.restore(restored, checkpoint_dir)
    assert int(step) == 2 and [int(o.iterations) for o in (
        restored.g_optimizer, restored.d_main_optimizer,
        restored.d_aux_optimizer)] == [2, 2, 2]


def test_a_worker_killed_mid_training_ends_its_peer_with_peer_lost(tmp_path):
    """Worker 1 is SIGKILLed at the start of step 3 of 1000: the chief's
    collective is aborted (the peer's socket closes) and `training.fit`
    raises PeerLost naming the checkpoints kept, well before the deadline
    (the step rate would need about 1000 steps); the chief's periodic
    checkpoint of step 2 is there to resume from."""
    checkpoint_dir = str(tmp_path / "checkpoints")
    workers = launch_workers(tmp_path, checkpoint_dir, steps=1000,
                             extra=("--crash_at", "3", "--checkpoint_every", "2"))
    (chief, chief_out, chief_log), (other, _, _) = workers
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while chief.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert other.poll() == -signal.SIGKILL, _tail(chief_log)
        assert chief.poll() == 3, _tail(chief_log)
    finally:
        kill_all(workers)
    with open(chief_out + ".json", encoding="utf-8") as f:
        message = json.load(f)["peer_lost"]
    assert "stopped answering" in message and checkpoint_dir in message, message
    assert tf.train.latest_checkpoint(checkpoint_dir).endswith("ckpt-2")


# The smoke config, smaller: 2 Stage I steps, 8 target images, 2 val images.
PIPELINE_FLAGS = (
    "--flagfile", os.path.join(ROOT, "configs", "toyscapes_smoke.cfg"),
    "--toyscapes_counts=8,8,2", "--inter_steps=2", "--checkpoint_every=2",
    "--log_every=0", "--image_every=0", "--num_preview_images=2")
PIPELINE_TIMEOUT_S = 240   # from launch; the run takes ~45 s on 2 idle cores


def train_command(run_dir, data_dir, *extra):
    return [sys.executable, "-m", "tf_pixintra.train", *PIPELINE_FLAGS,
            f"--run_dir={run_dir}", f"--toyscapes_dir={data_dir}", *extra]


@pytest.mark.e2e   # two TF start-ups, 2 traced steps, a pseudo stage: ~60 s
def test_two_workers_share_pseudo_labels_and_the_chief_evaluates(tmp_path):
    run_dir, data_dir = tmp_path / "run", tmp_path / "data"
    workers = start_workers(tmp_path, lambda out: train_command(
        run_dir, data_dir, "--pipeline=inter,pseudo,eval",
        "--strategy=multi_worker",
        # A stuck peer ends the other with a message before the deadline.
        "--peer_wait_secs=120"), cwd=ROOT)
    wait_all(workers, time.monotonic() + PIPELINE_TIMEOUT_S)
    chief_log, other_log = (_tail(w[2], 200000) for w in workers)

    # Pseudo labels: each worker made one shard (no shard flags given).
    pseudo = run_dir / "pseudo_r1"
    for k in (0, 1):
        part = json.loads((pseudo / f"pass1-0000{k}-of-00002.json").read_text())
        assert part["worker"] == k
    # Eval ran once, on the chief; the other worker took its result (the
    # table both print) and finished. (Whether a worker logs its wait
    # depends on timing: the chief may be done before it looks.)
    assert "eval: scoring" in chief_log and "eval: scoring" not in other_log
    eval_miou = json.loads((run_dir / "eval" / "metrics.json").read_text())[
        "target_miou"]
    for log in (chief_log, other_log):
        assert f"eval         {eval_miou:11.2f}" in log
    # Each worker scores its own Stage I model: the same figure, as the moving
    # statistics of the smoke config's trained BN are averaged over the workers.
    inter_miou = json.loads((run_dir / "inter" / "metrics.json").read_text())[
        "target_miou"]
    for log in (chief_log, other_log):
        assert f"inter        {inter_miou:11.2f}" in log

    # One process (this one), the same model and shards: the same files,
    # byte for byte.
    one = tmp_path / "one"
    one.mkdir()
    shutil.copy(run_dir / "config.json", one / "config.json")
    shutil.copytree(run_dir / "inter", one / "inter")
    flag_values = flags.FlagValues()
    config_lib.define_flags(flag_values)
    flag_values(["train", *train_command(one, data_dir, "--stage=pseudo",
                                         "--num_shards=2")[3:]])
    rows = train.run(config_lib.from_flags(flag_values))
    assert rows[0][0] == "pseudo_r1" and rows[0][1]["prop"] > 0
    names = sorted(os.listdir(pseudo))
    assert names == sorted(os.listdir(one / "pseudo_r1"))
    assert {"target-00000-of-00002.tfrecord", "target-00001-of-00002.tfrecord",
            "target-index.json", "summary.json", "preview_001.png"} <= set(names)
    for name in names:
        if name.startswith("pass1-"):   # + which worker wrote it
            a = json.loads((pseudo / name).read_text())
            b = json.loads((one / "pseudo_r1" / name).read_text())
            assert a.pop("worker") in (0, 1) and a == b, name
        else:
            assert filecmp.cmp(pseudo / name, one / "pseudo_r1" / name,
                               shallow=False), name
