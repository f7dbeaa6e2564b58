"""Rank 1 raises while rank 0 waits in a collective: the job must end, not hang.

Run as ``python -m mpi4py raise_on_rank1.py`` (mpi4py aborts on the unhandled
exception) or as ``python raise_on_rank1.py --plain`` (then
:func:`linsolve.mpi.abort_on_error` does it).
"""

import contextlib
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))

import numpy as np  # noqa: E402

from linsolve.mpi import abort_on_error, world  # noqa: E402

comm = world()
guard = abort_on_error(comm) if "--plain" in sys.argv else contextlib.nullcontext()
with guard:
    if comm.rank == 1:
        raise RuntimeError("deliberate failure on rank 1")
    comm.allreduce_sum(np.ones(1))  # would wait forever for rank 1
# (seen in plain mode: MPICH may let rank 0 leave the collective as rank 1 aborts;
# the job still ends with the abort's status)
print("rank", comm.rank, "left the collective", flush=True)
