"""An error on one rank ends every rank: no rank is left waiting in a collective.

``python -m mpi4py script.py`` already calls ``MPI_Abort`` on an unhandled
exception (the recommended way to run, as mpi4py's docs say). For scripts
started as ``python script.py`` under ``mpiexec``, wrap the body in
:func:`abort_on_error`.
"""

from __future__ import annotations

import contextlib
import sys
import time
import traceback

from .comm import as_comm

__all__ = ["abort_on_error"]


@contextlib.contextmanager
def abort_on_error(comm=None, code: int = 1):
    """Print the traceback with the rank and call ``MPI_Abort`` if the body raises.

    With the serial communicator the exception simply propagates.

    Examples
    --------
    >>> from linsolve.mpi import SerialComm, abort_on_error
    >>> with abort_on_error(SerialComm()):
    ...     pass
    """
    comm = as_comm(comm)
    try:
        yield comm
    except BaseException as error:
        if comm.size == 1 or isinstance(error, (SystemExit, KeyboardInterrupt)) and comm.size == 1:
            raise
        message = "".join(traceback.format_exception(type(error), error, error.__traceback__))
        sys.stderr.write(f"[rank {comm.rank}/{comm.size}] aborting the job: "
                         f"{type(error).__name__}: {error}\n{message}")
        sys.stderr.flush()
        # MPICH's launcher forwards output asynchronously and stops forwarding
        # when MPI_Abort kills the job: without a pause the message was lost
        # (seen under load on 2 cores). Half a second lets it through.
        time.sleep(0.5)
        comm.abort(code)
