"""The solvers' bits are pinned: iterates, counts and histories equal the recorded digests.

``solver_digests.json`` was recorded on the commit before the solver core and
the layout by method family landed (``python -m tests.linsolve.solver_digests
record``, kernel threads pinned to one); any change to a recurrence, a
stopping test or a kernel's summation order shows here as the names of the
cases whose digests moved. Re-record only for a change that is meant to move
bits, and say so in the commit.
"""

from __future__ import annotations

import json

from tests.linsolve import solver_digests
from tests.mpi_support import launch


def _moved(expected: dict, actual: dict) -> list[str]:
    return sorted(name for name in expected.keys() | actual.keys()
                  if expected.get(name) != actual.get(name))


def test_serial_and_serialcomm_solvers_keep_their_bits():
    expected = json.loads(solver_digests.DIGESTS.read_text())
    actual = solver_digests.compute_serial()
    for group in expected:
        assert not _moved(expected[group], actual[group]), (group, _moved(expected[group],
                                                                          actual[group]))


def test_two_rank_solvers_keep_their_bits(mpi):
    expected = json.loads(solver_digests.MPI_DIGESTS.read_text())
    run = launch(2, "-m", "mpi4py", "-m", "tests.linsolve.solver_digests", "print-mpi")
    assert run.returncode == 0, run.stderr[-2000:]
    actual = json.loads(run.stdout.strip().splitlines()[-1])
    moved = _moved(expected["ranks=2"], actual["ranks=2"])
    assert not moved, moved
