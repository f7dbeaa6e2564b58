"""Distributed linear algebra over MPI (mpi4py is imported only when the world is asked for)."""

from .comm import MPIComm, SerialComm, as_comm, world
from .errors import abort_on_error
from .krylov import bicgstab, fgmres, gmres, minres
from .matrix import DistCSR, balanced_ranges
from .omega import tuned_solve
from .pcg import VARIANTS, pcg
from .sor import BlockSOR, block_sor_reference, sor

__all__ = ["BlockSOR", "DistCSR", "MPIComm", "SerialComm", "VARIANTS", "abort_on_error",
           "as_comm", "balanced_ranges", "bicgstab", "block_sor_reference", "fgmres", "gmres",
           "minres", "pcg", "sor", "tuned_solve", "world"]
