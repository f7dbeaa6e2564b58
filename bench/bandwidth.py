"""Measured memory bandwidth (STREAM-like copy and triad) and bytes moved by SpMV.

The SpMV and PCG figures are compared against what this machine actually
streams in the same run, not a datasheet number: the machine is shared and
noisy, and a 2-core VM's bandwidth depends on its neighbours.
"""

from __future__ import annotations

import time

import numba as nb
import numpy as np


# parallel=True: both cores together, as the parallel kernels use them.
@nb.njit(cache=True, nogil=True, parallel=True)
def _triad(a, b, c, scalar):
    for i in nb.prange(a.shape[0]):
        a[i] = b[i] + scalar * c[i]


@nb.njit(cache=True, nogil=True, parallel=True)
def _copy(a, b):
    for i in nb.prange(a.shape[0]):
        a[i] = b[i]


def stream_bandwidth(n: int = 10_000_000, repeat: int = 7) -> dict[str, float]:
    """Best-of-``repeat`` copy and triad bandwidth in GB/s (STREAM's byte counts).

    STREAM counts ``16 n`` bytes for copy and ``24 n`` for triad (float64),
    without the write-allocate read of the destination; SpMV's byte counts
    below follow the same convention. STREAM reports the best repeat: the
    rate the memory system can sustain.

    Parameters
    ----------
    n : int
        Array length; default 10^7 doubles (80 MB per array), far beyond cache.
    repeat : int
        Timed repeats after one warm-up.
    """
    a = np.zeros(n)
    b = np.ones(n)
    c = np.full(n, 2.0)
    _copy(a, b)
    _triad(a, b, c, 3.0)  # warm-up: compile, fault the pages in
    best = {"copy": np.inf, "triad": np.inf}
    for _ in range(repeat):
        start = time.perf_counter()
        _copy(a, b)
        best["copy"] = min(best["copy"], time.perf_counter() - start)
        start = time.perf_counter()
        _triad(a, b, c, 3.0)
        best["triad"] = min(best["triad"], time.perf_counter() - start)
    return {"copy_GBps": 16 * n / best["copy"] / 1e9, "triad_GBps": 24 * n / best["triad"] / 1e9}


def csr_spmv_bytes(A) -> int:
    """Bytes one CSR SpMV must move at least: data, indices, indptr, x read, y written.

    Examples
    --------
    >>> import scipy.sparse as sp
    >>> csr_spmv_bytes(sp.identity(4, format="csr"))  # 4*8 + 4*4 + 5*4 + 4*8 + 4*8
    132
    """
    n_rows, n_cols = A.shape
    return (A.data.nbytes + A.indices.nbytes + A.indptr.nbytes
            + n_cols * A.data.itemsize + n_rows * A.data.itemsize)


def dia_spmv_bytes(values: np.ndarray) -> int:
    """Bytes one row-aligned DIA SpMV moves: all stored values, x read, y written."""
    n = values.shape[1]
    return values.nbytes + 2 * n * values.itemsize
