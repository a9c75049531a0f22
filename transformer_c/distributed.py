"""Data-parallel training across processes (MPI): the collective operations a
:class:`~transformer_c.train.Trainer` needs, behind one small :class:`Communicator` interface.

Two implementations:

- :class:`SingleProcess`: rank 0 of 1; every operation is the identity (no copy, no
  arithmetic), so a Trainer without MPI computes exactly what it always did.
- :class:`MPICommunicator`: mpi4py over ``MPI_COMM_WORLD`` (Open MPI, MPICH, ...), for
  ``mpirun -np N python -m transformer_c train ...``. mpi4py is an optional dependency:
  ``pip install "transformer_c[mpi]"``.

:func:`init` picks one: MPI when asked for, or when the process was launched by an MPI
launcher as one of several ranks (N independent copies of a single-process run would all
write the same run directory); otherwise the single process. :class:`MPIUnavailable` says
what is missing when MPI is asked for and cannot be had.

How data parallelism is laid out (transformer_c.train): every rank holds the whole model,
draws the same global window starts from the data RNG (the RNG states are identical on every
rank, so no communication is needed), takes its own rows of each global micro-batch, runs
loss_and_grads on them with the micro-batch's dropout seed and its rows' offset in it
(``row_offset``: each row draws the dropout masks it has in the global micro-batch), and the
flat gradient buffer is averaged over the ranks (one in-place all-reduce) before clipping and
AdamW, which every rank then applies identically. N ranks x batch b thus reproduce one process
with batch N * b, dropout included, to float rounding.
"""
import abc
import hashlib
import os
import shutil
import time

import numpy as np

from . import functional as F

__all__ = ["Communicator", "SingleProcess", "MPICommunicator", "MPIUnavailable", "init",
           "launched_size", "rescale_batch"]

# the world size each launcher announces to its processes: Open MPI's mpirun, MPICH /
# Intel MPI's hydra (PMI), MVAPICH
_LAUNCHER_SIZE_VARS = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "MV2_COMM_WORLD_SIZE")


class MPIUnavailable(RuntimeError):
    """MPI was asked for (or the process was launched by mpirun) but cannot be used: mpi4py
    is not installed or cannot load an MPI library. The message says what to install."""


def launched_size(environ=None):
    """The number of processes an MPI launcher (mpirun / mpiexec / hydra) started this one
    among, from its environment variables; 1 when not launched by one."""
    env = os.environ if environ is None else environ
    for name in _LAUNCHER_SIZE_VARS:
        try:
            return max(1, int(env[name]))
        except (KeyError, ValueError):
            continue
    return 1


class Communicator(abc.ABC):
    """The collectives of data-parallel training. ``rank`` in [0, ``size``); rank 0 is the
    one that writes (logs, checkpoints, samples). ``seconds``: wall time spent in
    :meth:`allreduce_mean_` so far (the gradient all-reduce), for measurements."""

    rank = 0
    size = 1
    seconds = 0.0

    @property
    def is_root(self):
        """Whether this is rank 0, the rank that writes."""
        return self.rank == 0

    @abc.abstractmethod
    def allreduce_mean_(self, buf):
        """Replace ``buf`` (a contiguous float array, any shape, the same on every rank) by its
        mean over the ranks, in place; returns ``buf``."""

    @abc.abstractmethod
    def sum(self, values):
        """The elementwise sum over the ranks of ``values`` (a short sequence of floats);
        returns a tuple of floats."""

    @abc.abstractmethod
    def max(self, value):
        """The largest of the ranks' ``value`` (an int): a decision every rank agrees on."""

    @abc.abstractmethod
    def broadcast_(self, buf):
        """Overwrite ``buf`` (a contiguous array) on every rank with rank 0's; returns it."""

    @abc.abstractmethod
    def broadcast_object(self, obj):
        """Rank 0's ``obj`` (anything picklable) on every rank."""

    @abc.abstractmethod
    def barrier(self):
        """Return when every rank has called it."""

    def assert_same(self, buf, what):
        """RuntimeError naming ``what`` unless ``buf`` holds the same bytes on every rank (a
        check that the replicas have not drifted apart)."""
        digest = hashlib.blake2b(np.ascontiguousarray(buf).view(np.uint8), digest_size=16)
        digests = self._allgather(digest.hexdigest())
        if len(set(digests)) > 1:
            differ = [r for r, d in enumerate(digests) if d != digests[0]]
            raise RuntimeError(f"{what} differ between the ranks (ranks {differ} disagree with "
                               "rank 0): the replicas have diverged")

    @abc.abstractmethod
    def _allgather(self, obj):
        """[obj of rank 0, obj of rank 1, ...] on every rank."""


class SingleProcess(Communicator):
    """One process (rank 0 of 1): every collective returns its input unchanged."""

    def allreduce_mean_(self, buf):
        return buf

    def sum(self, values):
        return tuple(float(v) for v in values)

    def max(self, value):
        return int(value)

    def broadcast_(self, buf):
        return buf

    def broadcast_object(self, obj):
        return obj

    def barrier(self):
        pass

    def _allgather(self, obj):
        return [obj]

    def __repr__(self):
        return "SingleProcess()"


class MPICommunicator(Communicator):
    """The collectives over an mpi4py communicator (default ``MPI.COMM_WORLD``).

    The gradient average is one ``Allreduce(IN_PLACE, SUM)`` of the whole flat buffer followed
    by a scale by 1/size (in C). Every rank must end with the same bytes for the replicas to
    stay identical: Open MPI's and MPICH's algorithms either reduce each element once and
    distribute the result or combine the same operands pairwise on every rank (float addition
    is commutative), which gives that; the Trainer checks it with :meth:`assert_same` at
    every evaluation rather than trusting it.
    """

    def __init__(self, comm=None):
        MPI = _import_mpi()
        self.MPI = MPI
        self.comm = MPI.COMM_WORLD if comm is None else comm
        self.rank = self.comm.Get_rank()
        self.size = self.comm.Get_size()
        self.seconds = 0.0

    def allreduce_mean_(self, buf):
        if not (isinstance(buf, np.ndarray) and buf.flags.c_contiguous and
                buf.dtype in (np.float32, np.float64)):
            raise TypeError("allreduce_mean_: buf must be a C-contiguous float32 or float64 "
                            "array")
        t0 = time.perf_counter()
        if self.size > 1:
            self.comm.Allreduce(self.MPI.IN_PLACE, buf, op=self.MPI.SUM)
            flat = buf.reshape(-1)
            F.scale_(flat, 1.0 / self.size)
        self.seconds += time.perf_counter() - t0
        return buf

    def sum(self, values):
        a = np.asarray(values, dtype=np.float64).reshape(-1).copy()
        self.comm.Allreduce(self.MPI.IN_PLACE, a, op=self.MPI.SUM)
        return tuple(float(v) for v in a)

    def max(self, value):
        return int(self.comm.allreduce(int(value), op=self.MPI.MAX))

    def broadcast_(self, buf):
        if not (isinstance(buf, np.ndarray) and buf.flags.c_contiguous):
            raise TypeError("broadcast_: buf must be a C-contiguous array")
        self.comm.Bcast(buf, root=0)
        return buf

    def broadcast_object(self, obj):
        return self.comm.bcast(obj, root=0)

    def barrier(self):
        self.comm.Barrier()

    def _allgather(self, obj):
        return self.comm.allgather(obj)

    def __repr__(self):
        return f"MPICommunicator(rank={self.rank}, size={self.size})"


def _import_mpi():
    try:
        from mpi4py import MPI
    except ImportError:
        raise MPIUnavailable("MPI was asked for but mpi4py is not installed: pip install "
                             "\"transformer_c[mpi]\" (and an MPI library, e.g. apt-get install "
                             "openmpi-bin libopenmpi-dev)") from None
    except RuntimeError as e:  # mpi4py found no MPI library to load
        raise MPIUnavailable(f"MPI was asked for but mpi4py cannot load an MPI library ({e}): "
                             "install one, e.g. apt-get install openmpi-bin "
                             "libopenmpi-dev") from None
    return MPI


def init(distributed=None):
    """The communicator of this process.

    distributed: True: MPI (:class:`MPIUnavailable` when mpi4py cannot be imported; when the
    process was not started by an MPI launcher it is one rank of one). False: the single
    process. None (default): MPI when an MPI launcher started this process as one of several
    ranks (then MPIUnavailable without mpi4py, rather than N unaware copies writing the same
    files), else the single process.
    """
    if distributed is None:
        distributed = launched_size() > 1
        if distributed:
            try:
                return MPICommunicator()
            except MPIUnavailable as e:
                raise MPIUnavailable(f"launched by mpirun as one of {launched_size()} ranks, "
                                     f"but: {e}") from None
    if not distributed:
        return SingleProcess()
    return MPICommunicator()


def mpirun_missing_hint():
    """'' when ``mpirun`` is on PATH, else a sentence saying it is missing."""
    if shutil.which("mpirun") or shutil.which("mpiexec"):
        return ""
    return ("mpirun is not installed (apt-get install openmpi-bin libopenmpi-dev, or your "
            "cluster's MPI module)")


def rescale_batch(train_config, saved_world, world):
    """A checkpoint of a run on ``saved_world`` ranks continued on ``world`` ranks keeps the
    global batch (ranks x batch_size windows per micro-batch). train_config: the
    checkpoint's TrainConfig as a dict. Returns (the dict with batch_size rescaled, a note
    or None); ValueError when the global batch does not split evenly over ``world`` ranks."""
    if saved_world == world:
        return train_config, None
    b = train_config["batch_size"]
    total = b * saved_world
    if total % world:
        raise ValueError(f"the checkpoint was trained on {saved_world} ranks x {b} windows "
                         f"= {total} per micro-batch, which does not split over {world} ranks: "
                         f"resume on a number of ranks that divides {total}")
    note = (f"the run was trained on {saved_world} ranks x {b} windows; on {world} ranks each "
            f"takes {total // world}, keeping the global micro-batch of {total}")
    return dict(train_config, batch_size=total // world), note
