"""Row-distributed CSR matrix (PETSc's MPIAIJ) with an overlapped halo exchange.

Each rank owns a contiguous block of rows ``ranges[rank]:ranges[rank+1]``
(PETSc's ownership ranges) and stores them as two CSR blocks:

* ``diag``: the columns it owns, indexed locally (``j - rstart``);
* ``off``: the other columns, *compressed*: column ``k`` of ``off`` is the
  global unknown ``garray[k]`` (the ghosts, sorted, so grouped by owner).

A product ``y = A x`` posts the ghost receives and sends, multiplies the
local block while the messages travel, waits, and adds the off-process
block's product (PETSc's ``MatMult_MPIAIJ``) over the rows that have ghost
entries only (PETSc's compressed-row form of that block). Vectors are plain 1-D NumPy
arrays holding the rank's rows.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import scipy.sparse as sp

from cext import kernels_for

from ..validation.sparse import checked_csr
from ..validation.inputs import check_real_numeric
from .comm import as_comm

__all__ = ["DistCSR", "balanced_ranges"]


def balanced_ranges(n: int, size: int) -> np.ndarray:
    """Ownership ranges splitting ``n`` rows into ``size`` blocks differing by at most one row.

    Examples
    --------
    >>> balanced_ranges(10, 3).tolist()
    [0, 4, 7, 10]
    """
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    counts = np.full(size, n // size, dtype=np.int64)
    counts[: n % size] += 1
    return np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)


def _check_ranges(ranges, n: int, size: int) -> np.ndarray:
    ranges = np.asarray(ranges, dtype=np.int64)
    if ranges.shape != (size + 1,) or ranges[0] != 0 or ranges[-1] != n or np.any(np.diff(ranges) < 0):
        raise ValueError(f"ranges must be {size + 1} nondecreasing row offsets from 0 to {n}, "
                         f"got {ranges.tolist()}")
    return ranges


def _error_marker(error: BaseException) -> tuple:
    return ("linsolve.mpi error", type(error).__name__, str(error))


def _raise_if_marker(obj, root: int, error: BaseException | None):
    """Re-raise ``root``'s validation error on every rank (it was sent instead of the data).

    ``root`` raises its own exception; the others the same class naming
    ``root``, so that no rank waits in a collective ``root`` never reaches.
    """
    if error is not None:
        raise error
    if isinstance(obj, tuple) and len(obj) == 3 and obj[0] == "linsolve.mpi error":
        cls = {"ValueError": ValueError, "TypeError": TypeError}.get(obj[1], RuntimeError)
        raise cls(f"another rank had invalid input: rank {root}: {obj[1]}: {obj[2]}")
    return obj


def _as_sparse(A, name: str):
    """Sparse ``A`` structure-checked, or dense ``A`` as real CSR (float64 unless float32)."""
    if sp.issparse(A):
        return checked_csr(A, name)
    A = np.asarray(A)
    check_real_numeric(name, A.dtype)
    # as linsolve.pcg: booleans, integers and float16 (which scipy.sparse
    # cannot hold) become float64
    return sp.csr_matrix(A if A.dtype in (np.float32, np.float64) else A.astype(np.float64))


def _csr_arrays(block: sp.csr_matrix, dtype):
    index_dtype = np.int32 if block.nnz < 2**31 - 1 else np.int64
    return (np.ascontiguousarray(block.indptr, dtype=index_dtype),
            np.ascontiguousarray(block.indices, dtype=index_dtype),
            np.ascontiguousarray(block.data, dtype=dtype))


class DistCSR:
    """A square sparse matrix distributed by rows over the ranks of a communicator.

    Build it with :meth:`from_global` (rank 0 holds the whole matrix and
    scatters it) or :meth:`from_rows` (each rank brings its own rows).

    Attributes
    ----------
    comm : communicator (see :func:`linsolve.mpi.as_comm`)
    shape : tuple of int
        Global shape ``(n, n)``.
    ranges : numpy.ndarray
        ``size + 1`` row offsets; this rank owns rows ``rstart:rend``.
    n_local : int
        Rows owned here (the length of every local vector).
    garray : numpy.ndarray
        Global indices of the ghost unknowns (columns of ``off``).
    dtype : numpy dtype

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> from linsolve.mpi import DistCSR, SerialComm
    >>> A = sp.diags([-1.0, 2.0, -1.0], [-1, 0, 1], shape=(4, 4), format="csr")
    >>> D = DistCSR.from_global(A, comm=SerialComm())
    >>> D.matvec(np.ones(4)).tolist()
    [1.0, 0.0, 0.0, 1.0]
    """

    def __init__(self, rows: sp.csr_matrix, ranges: np.ndarray, comm, dtype=None):
        """Low level: ``rows`` is this rank's row block with global column indices."""
        self.comm = comm
        n = int(ranges[-1])
        self.shape = (n, n)
        self.ranges = ranges
        self.rstart = int(ranges[comm.rank])
        self.rend = int(ranges[comm.rank + 1])
        self.n_local = self.rend - self.rstart
        if dtype is None:
            dtype = np.float32 if rows.dtype == np.float32 else np.float64
        self.dtype = np.dtype(dtype)
        rows = sp.csr_matrix(rows, copy=True)
        rows.sum_duplicates()
        rows.sort_indices()
        if rows.shape != (self.n_local, n):
            raise ValueError(f"rank {comm.rank}: row block has shape {rows.shape}, "
                             f"expected ({self.n_local}, {n})")
        # split into the owned columns and the compressed ghost columns
        coo = rows.tocoo()
        own = (coo.col >= self.rstart) & (coo.col < self.rend)
        diag = sp.csr_matrix((coo.data[own], (coo.row[own], coo.col[own] - self.rstart)),
                             shape=(self.n_local, self.n_local))
        self.garray = np.unique(coo.col[~own]).astype(np.int64)
        ghost_cols = np.searchsorted(self.garray, coo.col[~own])
        off = sp.csr_matrix((coo.data[~own], (coo.row[~own], ghost_cols)),
                            shape=(self.n_local, self.garray.size))
        diag.sort_indices()
        off.sort_indices()
        self.diag_csr = diag.astype(self.dtype)
        self.off_csr = off.astype(self.dtype)
        self._diag = _csr_arrays(self.diag_csr, self.dtype)
        # PETSc's compressed rows (MatCheckCompressedRow on MPIAIJ's B block):
        # only the rows next to another rank's block have ghost entries (one
        # grid line of a strip), so the off-process product and its add run
        # over those rows alone, not over all n_local. Each kept row's entries
        # are summed in the same order as before, so results are unchanged.
        self._off_rows = np.flatnonzero(np.diff(self.off_csr.indptr)).astype(np.int64)
        indptr, indices, data = _csr_arrays(self.off_csr, self.dtype)
        self._off = (np.ascontiguousarray(np.append(indptr[self._off_rows], indptr[-1])),
                     indices, data)
        self.nnz_local = int(rows.nnz)
        self._kernels = kernels_for(np)
        self._setup_halo()

    # -- construction ---------------------------------------------------------
    @classmethod
    def from_global(cls, A: Any, comm: Any = None, *, root: int = 0,
                    ranges: Sequence[int] | None = None, dtype=None) -> "DistCSR":
        """Scatter a global scipy matrix held on ``root`` (other ranks pass ``None``).

        ``ranges`` (default: balanced rows) is read on ``root``.
        """
        comm = as_comm(comm)
        pieces = error = None
        if comm.rank == root:
            try:
                if not sp.issparse(A):
                    A = np.asarray(A)
                    if A.ndim != 2:
                        raise ValueError(f"A must be a square matrix, got shape {A.shape}")
                if A.shape[0] != A.shape[1]:
                    raise ValueError(f"A must be square, got shape {A.shape}")
                # by dtype: a DOK matrix has no .data, a LIL one's is an object array
                if np.dtype(A.dtype).kind == "c":
                    raise TypeError("complex matrices are not supported; the solvers are real")
                csr = sp.csr_matrix(_as_sparse(A, "A"))
                n = csr.shape[0]
                cuts = (balanced_ranges(n, comm.size) if ranges is None
                        else _check_ranges(ranges, n, comm.size))
                pieces = [(csr[cuts[r]:cuts[r + 1]], cuts) for r in range(comm.size)]
            except (ValueError, TypeError) as caught:
                # sent instead of the rows: the other ranks wait in scatter
                error = caught
                pieces = [_error_marker(caught)] * comm.size
        rows, cuts = _raise_if_marker(comm.scatter(pieces, root=root), root, error)
        return cls(rows, cuts, comm, dtype=dtype)

    @classmethod
    def from_rows(cls, rows: Any, comm: Any = None, *, dtype=None) -> "DistCSR":
        """Assemble from each rank's own rows (scipy matrix ``(n_local, n)``, global columns).

        Ranks own consecutive row blocks in rank order.
        """
        comm = as_comm(comm)
        error = None
        try:
            rows = sp.csr_matrix(_as_sparse(rows, "rows"))
            if np.iscomplexobj(rows.data):
                raise TypeError("complex matrices are not supported; the solvers are real")
            shape = (rows.shape[0], rows.shape[1])
        except (ValueError, TypeError) as caught:
            # gathered instead of the shape: every rank raises below
            error, shape = caught, _error_marker(caught)
        counts = comm.allgather(shape)
        for rank, count in enumerate(counts):
            if len(count) == 3:
                _raise_if_marker(count, rank, error)
        n = counts[0][1]
        if any(c[1] != n for c in counts):
            raise ValueError(f"ranks disagree on the number of columns: {[c[1] for c in counts]}")
        ranges = np.concatenate([[0], np.cumsum([c[0] for c in counts])]).astype(np.int64)
        if ranges[-1] != n:
            raise ValueError(f"the row blocks hold {ranges[-1]} rows, the matrix has {n} columns; "
                             "A must be square")
        return cls(rows, ranges, comm, dtype=dtype)

    def _setup_halo(self):
        """Who sends which owned entries to whom (one all-to-all, at setup only)."""
        comm = self.comm
        owners = np.searchsorted(self.ranges, self.garray, side="right") - 1
        needed = [[] for _ in range(comm.size)]
        self._recvs = []  # (rank, slice of the ghost buffer)
        for rank in np.unique(owners):
            where = np.flatnonzero(owners == rank)
            needed[int(rank)] = self.garray[where]
            self._recvs.append((int(rank), slice(int(where[0]), int(where[-1]) + 1)))
        requested = comm.alltoall(needed)
        self._sends = []  # (rank, local indices to pack)
        for rank, wanted in enumerate(requested):
            if len(wanted):
                self._sends.append((rank, np.asarray(wanted, dtype=np.int64) - self.rstart))
        self.ghosts = np.zeros(self.garray.size, dtype=self.dtype)
        self._send_buffers = [np.empty(idx.size, dtype=self.dtype) for _, idx in self._sends]
        self._recv_views = [(rank, self.ghosts[s]) for rank, s in self._recvs]
        self._off_product = np.empty(self._off_rows.size, dtype=self.dtype)

    # -- halo exchange and products -------------------------------------------
    def begin_halo(self, x: np.ndarray):
        """Post the ghost exchange of the local vector ``x`` (values land in ``self.ghosts``)."""
        for (_, idx), buffer in zip(self._sends, self._send_buffers):
            np.take(x, idx, out=buffer)
        return self.comm.start_exchange(list(zip((r for r, _ in self._sends), self._send_buffers)),
                                        self._recv_views)

    def update_ghosts(self, x: np.ndarray) -> np.ndarray:
        """Blocking halo exchange; returns ``self.ghosts``."""
        self.begin_halo(x).wait()
        return self.ghosts

    def _add_off(self, out):
        """``out += off @ ghosts``, touching only the compressed rows that have ghost entries."""
        if self._off_rows.size:
            indptr, indices, data = self._off
            self._kernels.csr_spmv(indptr, indices, data, self.ghosts, self._off_product)
            out[self._off_rows] += self._off_product

    def matvec(self, x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """``A @ x`` on local vectors; the local product overlaps the ghost exchange."""
        x = self._local(x, "x")
        if out is None:
            out = np.empty(self.n_local, dtype=self.dtype)
        pending = self.begin_halo(x)
        indptr, indices, data = self._diag
        self._kernels.csr_spmv(indptr, indices, data, x, out)
        pending.wait()
        self._add_off(out)
        return out

    def matvec_dot_local(self, p: np.ndarray, q: np.ndarray) -> float:
        """``q = A @ p``; return this rank's part of ``p . q`` (not yet reduced)."""
        self.matvec(p, out=q)
        return float(self._kernels.dot(p, q))

    def off_product(self, x: np.ndarray) -> np.ndarray:
        """``off @ ghosts(x)`` after a blocking halo exchange (the coupling to other ranks)."""
        self.update_ghosts(x)
        out = np.zeros(self.n_local, dtype=self.dtype)
        self._add_off(out)
        return out

    # -- vectors ----------------------------------------------------------------
    def _local(self, v, name):
        v = np.asarray(v)
        if v.shape != (self.n_local,):
            raise ValueError(f"rank {self.comm.rank}: {name} has shape {v.shape}, expected the "
                             f"local rows ({self.n_local},)")
        return v if v.dtype == self.dtype and v.flags.c_contiguous else \
            np.ascontiguousarray(v, dtype=self.dtype)

    def dot(self, u: np.ndarray, v: np.ndarray) -> float:
        """Global ``u . v`` (one Allreduce)."""
        return float(self.comm.allreduce_sum(np.array([self._kernels.dot(u, v)]))[0])

    def norm(self, v: np.ndarray) -> float:
        """Global 2-norm of a local vector."""
        return float(np.sqrt(max(self.dot(v, v), 0.0)))

    def local_part(self, v_global: np.ndarray) -> np.ndarray:
        """This rank's rows of a vector every rank holds in full (a copy)."""
        v_global = np.asarray(v_global)
        if v_global.shape not in ((self.shape[0],), (self.shape[0], 1)):
            raise ValueError(f"expected a global vector of length {self.shape[0]}, "
                             f"got shape {v_global.shape}")
        return np.array(v_global.reshape(-1)[self.rstart:self.rend], dtype=self.dtype)

    def scatter(self, v_global: np.ndarray | None, root: int = 0) -> np.ndarray:
        """Local rows of a vector held on ``root`` (other ranks pass ``None``)."""
        pieces = error = None
        if self.comm.rank == root:
            v_global = np.asarray(v_global).reshape(-1)
            if v_global.shape != (self.shape[0],):
                error = ValueError(f"expected length {self.shape[0]}, got {v_global.shape}")
                pieces = [_error_marker(error)] * self.comm.size  # raised on every rank
            else:
                pieces = [np.array(v_global[self.ranges[r]:self.ranges[r + 1]], dtype=self.dtype)
                          for r in range(self.comm.size)]
        return _raise_if_marker(self.comm.scatter(pieces, root=root), root, error)

    def gather(self, v_local: np.ndarray, root: int = 0):
        """The global vector on ``root`` (``None`` elsewhere)."""
        return self.comm.gatherv(self._local(v_local, "v"), np.diff(self.ranges), root=root)

    def allgather(self, v_local: np.ndarray) -> np.ndarray:
        """The global vector on every rank."""
        return self.comm.allgatherv(self._local(v_local, "v"), np.diff(self.ranges))

    def diagonal(self) -> np.ndarray:
        """The local rows' diagonal entries."""
        return self.diag_csr.diagonal().astype(self.dtype)

    def __repr__(self) -> str:
        return (f"<DistCSR {self.shape[0]}x{self.shape[1]} rank {self.comm.rank}/{self.comm.size}: "
                f"rows {self.rstart}:{self.rend}, {self.garray.size} ghosts, "
                f"{len(self._sends)} neighbours>")
