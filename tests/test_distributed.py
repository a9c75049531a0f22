"""transformer_c.distributed and data-parallel training (Trainer(comm=...), train under mpirun).

The MPI tests launch ``mpirun --oversubscribe -np 2`` on this file (its ``__main__`` is the
worker) and compare with a single-process run in the test process: 2 ranks x batch b against
one process with batch 2b, dropout included (each rank's rows draw their masks at their row
offset in the global micro-batch), parameters after a few steps to float32 rounding. They are
skipped when mpirun or mpi4py is absent (CI installs both: .ci/run).
"""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from transformer_c import distributed as dist
from transformer_c.data import CharTokenizer, StreamDataset
from transformer_c.nn import GPT, GPTConfig
from transformer_c.train import TrainConfig, Trainer

TEXT = ("First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n"
        "You are all resolved rather to die than to famish?\n") * 20
STEPS = 4
HERE = os.path.abspath(__file__)
ROOT = os.path.dirname(os.path.dirname(HERE))


def trainer(*, batch_size, grad_accum=1, dropout=0.0, comm=None, label_smoothing=0.0,
            init_seed=0):
    """A float32 tiny GPT trainer (the same initial weights, from init_seed, and data in every
    process)."""
    tok = CharTokenizer.train(TEXT)
    cfg = GPTConfig(vocab_size=tok.vocab_size, block_size=16, n_layer=2, n_head=2, n_embd=16,
                    dropout=dropout)
    model = GPT.create(cfg, np.random.default_rng(init_seed), dtype=np.float32)
    ids = tok.encode(TEXT)
    n = int(0.9 * ids.size)
    tc = TrainConfig(max_iters=20, batch_size=batch_size, grad_accum=grad_accum, warmup_iters=2,
                     eval_every=0, eval_iters=3, lr=3e-3, min_lr=3e-4,
                     label_smoothing=label_smoothing)
    return Trainer(model, StreamDataset(ids[:n], 16), StreamDataset(ids[n:], 16), tc,
                   quiet=True, comm=comm)


# (name, per-rank trainer kwargs, the equivalent one-process trainer kwargs for 2 ranks)
CASES = [("plain", dict(batch_size=3), dict(batch_size=6)),
         ("accum", dict(batch_size=2, grad_accum=2), dict(batch_size=4, grad_accum=2)),
         ("dropout", dict(batch_size=3, dropout=0.2), dict(batch_size=6, dropout=0.2)),
         ("dropout_accum", dict(batch_size=2, grad_accum=2, dropout=0.2),
          dict(batch_size=4, grad_accum=2, dropout=0.2))]


def run(t, steps=STEPS):
    """((loss, gradient norm) of each step, parameters after them, validation loss)."""
    losses = [(s["loss"], s["grad_norm"]) for s in (t.train_step() for _ in range(steps))]
    return losses, t.model.flat_parameters.copy(), t.eval_loss(t.val_data)[0]


def worker(out):
    """The mpirun side: every case on MPI_COMM_WORLD; rank r writes out.r.npz."""
    comm = dist.init(True)
    res = {}
    for name, kw, _ in CASES:
        losses, params, val = run(trainer(comm=comm, **kw))
        comm.assert_same(params, f"{name}: the parameters")
        res[f"{name}.losses"], res[f"{name}.params"] = np.array(losses), params
        res[f"{name}.val"] = np.array(val)
    # a different start on rank 1 is overwritten by rank 0's broadcast
    t = trainer(batch_size=3, comm=comm, init_seed=comm.rank)
    res["bcast"] = t.model.flat_parameters.copy()
    res["size"] = np.array(comm.size)
    np.savez(f"{out}.{comm.rank}.npz", **res)


def mpirun_cmd(n=2):
    """The mpirun command line for n local ranks (we may run as root: allow it)."""
    return ["mpirun", "--allow-run-as-root", "--oversubscribe", "-np", str(n),
            "-x", "PYTHONPATH", "-x", "OMP_NUM_THREADS"]


def needs_mpi():
    if shutil.which("mpirun") is None:
        pytest.skip("mpirun is not installed (apt-get install openmpi-bin libopenmpi-dev)")
    pytest.importorskip("mpi4py", reason="mpi4py is not installed (pip install "
                        "\"transformer_c[mpi]\")")


def launch(args, tmp_path, n=2, timeout=300):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
               OMP_NUM_THREADS="1")
    p = subprocess.run(mpirun_cmd(n) + [sys.executable] + args, cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, p.stdout + p.stderr
    return p


@pytest.fixture(scope="module")
def mpi_results(tmp_path_factory):
    needs_mpi()
    tmp = tmp_path_factory.mktemp("mpi")
    launch([HERE, "worker", str(tmp / "out")], tmp)
    return [dict(np.load(tmp / f"out.{r}.npz")) for r in range(2)]


# ------------------------------------------------------------------------------ no MPI needed

def test_single_process_collectives_are_the_identity():
    c = dist.SingleProcess()
    assert (c.rank, c.size, c.is_root) == (0, 1, True)
    a = np.arange(5, dtype=np.float32)
    assert c.allreduce_mean_(a) is a and np.array_equal(a, np.arange(5))
    assert c.broadcast_(a) is a and c.sum([1.5, 2]) == (1.5, 2.0) and c.max(3) == 3
    c.assert_same(a, "a")   # one rank always agrees with itself


def test_launched_size_and_init_without_mpi(monkeypatch):
    assert dist.launched_size({}) == 1
    assert dist.launched_size({"OMPI_COMM_WORLD_SIZE": "4"}) == 4
    assert dist.launched_size({"PMI_SIZE": "3"}) == 3
    assert dist.launched_size({"PMI_SIZE": "x"}) == 1
    for name in dist._LAUNCHER_SIZE_VARS:
        monkeypatch.delenv(name, raising=False)
    assert isinstance(dist.init(None), dist.SingleProcess)   # not launched: one process
    assert isinstance(dist.init(False), dist.SingleProcess)
    monkeypatch.setitem(sys.modules, "mpi4py", None)          # mpi4py not installed
    with pytest.raises(dist.MPIUnavailable, match=r"pip install \"transformer_c\[mpi\]\""):
        dist.init(True)
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "2")           # under mpirun without mpi4py
    with pytest.raises(dist.MPIUnavailable, match="one of 2 ranks.*mpi4py is not installed"):
        dist.init(None)


def test_rescale_batch_keeps_the_global_batch():
    cfg = {"batch_size": 4, "lr": 1.0}
    assert dist.rescale_batch(cfg, 2, 2) == (cfg, None)
    new, note = dist.rescale_batch(cfg, 2, 1)
    assert new == {"batch_size": 8, "lr": 1.0} and "global micro-batch of 8" in note
    assert dist.rescale_batch(cfg, 2, 4)[0]["batch_size"] == 2
    with pytest.raises(ValueError, match="does not split over 3 ranks"):
        dist.rescale_batch(cfg, 2, 3)


def test_cli_distributed_without_mpi_is_a_clear_error(monkeypatch, capsys, tmp_path):
    from transformer_c.cli import main
    for name in dist._LAUNCHER_SIZE_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setitem(sys.modules, "mpi4py", None)
    monkeypatch.setattr(dist.shutil, "which", lambda name: None)
    rc = main(["train", "--distributed", "--preset", "tiny", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and "--distributed:" in err and "not started by mpirun" in err
    assert "mpirun is not installed" in err
    assert not (tmp_path / "o").exists()


class HalfOfTwo(dist.SingleProcess):
    """Rank ``rank`` of 2 with no one to talk to: the collectives return this rank's own
    values, so a test sees one rank's local gradient."""
    size = 2

    def __init__(self, rank):
        self.rank = rank


@pytest.mark.parametrize("grad_accum", [1, 2])
def test_each_rank_computes_its_rows_of_the_global_batch_with_dropout(grad_accum):
    """Without MPI: the two ranks' local gradients of one step (rows [0, b) and [b, 2b) of
    each global micro-batch, at their row offset), averaged, are one process's with batch 2b,
    dropout on, to float32 rounding; their masks are not rank 0's."""
    b = 3
    single = trainer(batch_size=2 * b, grad_accum=grad_accum, dropout=0.3)
    starts = single.rng.integers(0, len(single.train_data), size=grad_accum * 2 * b)
    single.model.train()
    want = single.compute_grads(starts)[1].copy()
    ranks = [trainer(batch_size=b, grad_accum=grad_accum, dropout=0.3, comm=HalfOfTwo(r))
             for r in range(2)]
    local = [t.compute_grads(starts)[1].copy() for t in ranks]
    got = (local[0] + local[1]) / 2
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
    # rank 1 with rank 0's masks (row offset 0) computes another gradient
    t = ranks[1]
    t._micro_loss_and_grads(t.train_data.batch_at(starts[b:2 * b]), t.dropout_seed(0, 0), 0)
    if grad_accum == 1:
        assert np.abs((local[0] + t.model.flat_grads) / 2 - want).max() > 1e-3


def test_checkpoint_records_the_world_size(tmp_path):
    t = trainer(batch_size=2)
    assert t.state()["world_size"] == 1


# ------------------------------------------------------------------------------ 2 ranks

def test_ranks_stay_identical_and_broadcast_from_rank0(mpi_results):
    r0, r1 = mpi_results
    assert int(r0["size"]) == 2
    for name, _, _ in CASES:
        assert np.array_equal(r0[f"{name}.params"], r1[f"{name}.params"]), name
        assert np.array_equal(r0[f"{name}.losses"], r1[f"{name}.losses"]), name
        assert r0[f"{name}.val"] == r1[f"{name}.val"]
    rank0_init = trainer(batch_size=3).model.flat_parameters
    assert np.array_equal(r0["bcast"], rank0_init) and np.array_equal(r1["bcast"], rank0_init)
    assert not np.array_equal(trainer(batch_size=3, init_seed=1).model.flat_parameters,
                              rank0_init)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_two_ranks_reproduce_one_process_with_twice_the_batch(mpi_results, case):
    name, rank_kw, single_kw = case
    losses, params, _ = run(trainer(**single_kw))
    r0 = mpi_results[0]
    np.testing.assert_allclose(r0[f"{name}.losses"], losses, rtol=2e-6)
    np.testing.assert_allclose(r0[f"{name}.params"], params, rtol=1e-5, atol=2e-6)
    # sharded evaluation: the windows of one process with batch 2b, on the ranks' parameters
    ref = trainer(batch_size=2 * rank_kw["batch_size"])
    ref.model.flat_parameters[...] = r0[f"{name}.params"]
    assert r0[f"{name}.val"] == pytest.approx(ref.eval_loss(ref.val_data)[0], rel=1e-6)
    # and the comparison can fail: one step more is far from it
    _, further, _ = run(trainer(**single_kw), STEPS + 1)
    assert np.abs(further - r0[f"{name}.params"]).max() > 1e-4


def test_cli_train_on_two_ranks_then_resume_on_one(tmp_path):
    needs_mpi()
    from transformer_c import checkpoint as ckpt
    out, ref = tmp_path / "run", tmp_path / "ref"
    model = ["--preset", "tiny", "--n-embd", "32", "--block-size", "32", "--schedule",
             "constant", "--warmup-iters", "2", "--eval-every", "5", "--eval-iters", "2",
             "--log-every", "1"]
    common = ["-m", "transformer_c", "train", "--sample-tokens", "0", "--threads", "1"]
    p = launch(common + model + ["--out", str(out), "--max-iters", "10", "--batch-size", "2"],
               tmp_path)
    assert p.stdout.count("Training a GPT") == 1                     # rank 0 speaks alone
    assert "10 steps of 1 x 2 ranks x 2 windows" in p.stdout
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert log[0]["type"] == "start" and log[0]["ranks"] == 2
    steps = [r["step"] for r in log if r["type"] == "train"]
    assert steps == list(range(1, 11))                                # one writer
    assert all(r["allreduce_seconds"] >= 0 for r in log if r["type"] == "train")
    assert json.loads((out / "last" / "checkpoint.json").read_text())["world_size"] == 2
    at10 = ckpt.load(out / "last").model.flat_parameters.copy()
    # resume on one process: 4 windows per micro-batch keep the global batch ...
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))

    def one_process(*args):
        p = subprocess.run([sys.executable] + common + list(args), cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=300)
        assert p.returncode == 0, p.stdout + p.stderr
        return p

    p = one_process("--out", str(out), "--resume", "--max-iters", "12")
    assert "2 ranks x 2 windows; on 1 ranks each takes 4" in p.stdout
    assert "12 steps of 1 x 4 windows" in p.stdout
    meta = json.loads((out / "last" / "checkpoint.json").read_text())
    assert meta["world_size"] == 1 and meta["train_config"]["batch_size"] == 4
    assert meta["step"] == 12
    # ... and continue the run one process with batch 4 makes, to float32 rounding
    one_process(*model, "--out", str(ref), "--max-iters", "12", "--batch-size", "4")
    a = ckpt.load(out / "last").model.flat_parameters
    b = ckpt.load(ref / "last").model.flat_parameters
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    assert np.abs(a - at10).max() > 100 * np.abs(a - b).max()   # two steps are far from it


def test_sigterm_to_mpirun_stops_every_rank_after_the_same_step(tmp_path):
    needs_mpi()
    import signal
    import time
    out = tmp_path / "run"
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
               OMP_NUM_THREADS="1")
    cmd = mpirun_cmd() + [sys.executable, "-m", "transformer_c", "train", "--preset", "tiny",
                          "--max-iters", "100000", "--eval-every", "0", "--log-every", "1",
                          "--sample-tokens", "0", "--threads", "1", "--out", str(out)]
    p = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        log = out / "log.jsonl"
        deadline = time.monotonic() + 240
        while not (log.exists() and log.read_text().count('"train"') >= 3):
            assert p.poll() is None and time.monotonic() < deadline, p.communicate()
            time.sleep(0.2)
        p.send_signal(signal.SIGTERM)
        stdout, stderr = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert records[-1]["type"] == "interrupted"
    step = records[-1]["step"]
    assert stderr.count(f"SIGTERM at step {step}: saved a resumable checkpoint") == 1
    assert json.loads((out / "last" / "checkpoint.json").read_text())["step"] == step


if __name__ == "__main__" and sys.argv[1:2] == ["worker"]:
    worker(sys.argv[2])
