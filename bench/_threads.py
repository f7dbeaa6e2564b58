"""One BLAS thread while benchmarking: the shared context of ``python -m bench``.

On the 2-core shared machine, threaded OpenBLAS on small problems spent
most of its time waiting: scipy's cg (BLAS dot products) ran 15-50x slower
with one core busy elsewhere, Shampoo's 64 x 64 roots 30x slower, a
200 x 200 ``eigh`` in lazy Newton 25x slower. threadpoolctl limits only
the libraries already loaded, and scipy wheels bring their own OpenBLAS,
loaded on the first import of ``scipy.linalg``: so that import (and any
other named in ``preload``) happens before the limit is set.
"""

from __future__ import annotations

import importlib


def blas_one_thread(*preload: str):
    """Context manager holding every loaded BLAS to one thread.

    ``preload``: modules to import first so that their BLAS is covered
    (``scipy.linalg`` always is).

    Examples
    --------
    >>> import numpy as np
    >>> with blas_one_thread():
    ...     float(np.ones(3) @ np.ones(3))
    3.0
    """
    from threadpoolctl import threadpool_limits

    for name in ("scipy.linalg", *preload):
        importlib.import_module(name)
    return threadpool_limits(limits=1, user_api="blas")
