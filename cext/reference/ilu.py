"""Array-API twin of :mod:`cext.numba.ilu`: the ILU(0) factorisation.

Plain loops, one entry at a time, in the order of the Numba kernel (so the
two agree bit for bit): Saad's Alg. 10.4 (IKJ) with a dictionary for the
current row instead of the compiled kernel's position array. Writes
``data`` in place, so it needs a namespace that can (NumPy,
``array_api_strict``, CuPy); the factorisation runs on the host.
"""

from __future__ import annotations

import math


def csr_ilu0(indptr, indices, data) -> int:
    """ILU(0) of sorted square CSR in place; ``-1`` or the failed row.

    See :func:`cext.numba.ilu.csr_ilu0`. The arithmetic stays in the dtype
    of ``data`` (0-d arrays, not Python floats), as the compiled kernel's.

    Examples
    --------
    >>> import numpy as np
    >>> data = np.array([2.0, 1.0, 4.0, 5.0])
    >>> csr_ilu0(np.array([0, 2, 4]), np.array([0, 1, 0, 1]), data), data.tolist()
    (-1, [2.0, 1.0, 2.0, 3.0])
    """
    n = indptr.shape[0] - 1
    diagonal = []  # diagonal[k]: position of (k, k) for the rows done
    for i in range(n):
        start, end = int(indptr[i]), int(indptr[i + 1])
        position = {int(indices[p]): p for p in range(start, end)}
        for p in range(start, end):
            k = int(indices[p])
            if k >= i:
                break
            multiplier = data[p] / data[diagonal[k]]
            data[p] = multiplier
            for q in range(diagonal[k] + 1, int(indptr[k + 1])):
                target = position.get(int(indices[q]))
                if target is not None:
                    data[target] = data[target] - multiplier * data[q]
        if i not in position:
            return i
        pivot = float(data[position[i]])
        if pivot == 0.0 or not math.isfinite(pivot):
            return i
        diagonal.append(position[i])
    return -1
