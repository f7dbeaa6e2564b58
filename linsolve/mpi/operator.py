"""A :class:`DistCSR` as the solver core's operator, so the serial recurrences run distributed.

The core's methods take an operator and a reduction: here the operator is
this rank's rows of ``A`` (the product exchanges the halo first) and the
reduction sums over the ranks, so a method written once over
:class:`~linsolve.core.setup.KrylovSystem` runs on ``A.comm`` unchanged.
"""

from __future__ import annotations

import numpy as np
from array_api_compat import array_namespace

from ..core.operators import Operator
from .matrix import DistCSR


class DistOperator(Operator):
    """This rank's rows of a :class:`DistCSR` acting on local vectors.

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> from linsolve.mpi import DistCSR, SerialComm
    >>> A = sp.diags([-1.0, 2.0, -1.0], [-1, 0, 1], shape=(4, 4), format="csr")
    >>> DistOperator(DistCSR.from_global(A, comm=SerialComm())).matvec(np.ones(4)).tolist()
    [1.0, 0.0, 0.0, 1.0]
    """

    def __init__(self, A: DistCSR):
        super().__init__((A.n_local, A.n_local), A.dtype, array_namespace(np.empty(0)))
        self.dist = A

    def matvec(self, v):
        return self.dist.matvec(np.ascontiguousarray(v))

    def reduce(self, values: np.ndarray) -> np.ndarray:
        """The sums over every rank of this rank's float64 ``values``."""
        return self.dist.comm.allreduce_sum(np.asarray(values, dtype=np.float64))
