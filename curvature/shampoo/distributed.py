"""Shampoo over several processes: blocks assigned to ranks, one AllGather of the directions.

Distributed Shampoo (Shi et al., "A Distributed Data-Parallel PyTorch
Implementation of the Distributed Shampoo Optimizer", 2023)
gives each rank a share of the preconditioner blocks: every rank sees the
same (already averaged) gradients, but a block's factors, roots and
direction are computed on its owner only, and one AllGather hands every rank
all directions. Here a block is one parameter tensor, or with ``block_size``
one tile of it (the paper's blocking), with its own :class:`curvature.Shampoo`.
Blocks are assigned by estimated cost, largest first, each to the least
loaded rank (LPT scheduling). A block's direction is computed by the
same code on one rank as on a single process, and the AllGather only copies
it, so directions are bit-identical to the single-process ones.

The communicator is that of :mod:`linsolve.mpi` (``SerialComm`` runs
everything in one process; mpi4py is imported only for the world).
"""

from __future__ import annotations

import itertools
import math
from typing import Any, Sequence

import numpy as np

from .._state import Equal, Table, check_state
from .roots import inverse_root
from .shampoo import Shampoo

__all__ = ["DistributedShampoo", "assign_blocks", "distributed_inverse_roots", "shampoo_cost",
           "split_blocks"]


def shampoo_cost(shape: Sequence[int], max_dim: int = 2048) -> float:
    """Estimated flops of one Shampoo step on a tensor: roots plus preconditioning.

    Each full mode of length ``n`` costs an eigendecomposition (about
    ``10 n^3``) and a product with the ``n x n`` root over the tensor
    (``2 n * size``); a diagonal mode (``n > max_dim``) costs ``size``.

    Examples
    --------
    >>> shampoo_cost((4, 2)) > shampoo_cost((2, 2))
    True
    """
    size = math.prod(shape)
    cost = float(size)
    for n in shape:
        cost += float(size) if n > max_dim else 10.0 * n**3 + 2.0 * n * size
    return cost


def assign_blocks(costs: Sequence[float], n_ranks: int) -> list[int]:
    """Owner rank of each block: largest cost first, to the least loaded rank (ties: lowest rank).

    Deterministic, so every rank computes the same assignment.

    Examples
    --------
    >>> assign_blocks([1.0, 5.0, 3.0, 3.0], 2)
    [0, 0, 1, 1]
    """
    if n_ranks < 1:
        raise ValueError(f"n_ranks must be >= 1, got {n_ranks}")
    costs = [float(c) for c in costs]
    if any(not math.isfinite(c) or c < 0 for c in costs):
        raise ValueError(f"costs must be finite and >= 0, got {costs}")
    loads = [0.0] * n_ranks
    owners = [0] * len(costs)
    # stable sort: equal costs keep their block order
    for block in sorted(range(len(costs)), key=lambda i: -costs[i]):
        rank = min(range(n_ranks), key=lambda r: (loads[r], r))
        owners[block] = rank
        loads[rank] += costs[block]
    return owners


def _comm(comm):
    from linsolve.mpi.comm import as_comm

    return as_comm(comm)


def _gather_blocks(comm, owners, local_arrays: dict, shapes, dtype):
    """Every block's array on every rank: one Allgatherv of the owners' flattened arrays."""
    sizes = [math.prod(s) for s in shapes]
    counts = [0] * comm.size
    for block, owner in enumerate(owners):
        counts[owner] += sizes[block]
    mine = [b for b in range(len(shapes)) if owners[b] == comm.rank]
    send = (np.concatenate([np.asarray(local_arrays[b], dtype=np.float64).reshape(-1) for b in mine])
            if mine else np.zeros(0))
    flat = comm.allgatherv(send, counts)
    starts = np.concatenate([[0], np.cumsum(counts)])
    cursor = [int(v) for v in starts[:-1]]
    out = [None] * len(shapes)
    for block, owner in enumerate(owners):  # ranks' pieces hold their blocks in block order
        piece = flat[cursor[owner]:cursor[owner] + sizes[block]]
        cursor[owner] += sizes[block]
        out[block] = piece.reshape(shapes[block]).astype(dtype[block] if isinstance(dtype, list)
                                                         else dtype)
    return out


def split_blocks(shape: Sequence[int], block_size: int | None) -> list[tuple[slice, ...]]:
    """Tiles of at most ``block_size`` along every axis, in C order (one tile if None).

    Examples
    --------
    >>> [tuple((s.start, s.stop) for s in tile) for tile in split_blocks((5, 2), 3)]
    [((0, 3), (0, 2)), ((3, 5), (0, 2))]
    """
    if block_size is None:
        return [tuple(slice(0, n) for n in shape)]
    if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
        raise ValueError(f"block_size must be a positive int or None, got {block_size!r}")
    cuts = [[slice(lo, min(lo + block_size, n)) for lo in range(0, n, block_size)] for n in shape]
    return list(itertools.product(*cuts))


class DistributedShampoo:
    """Shampoo for a list of parameters, each block's work done on one rank.

    Parameters
    ----------
    shapes : sequence of tuples
        The parameter shapes.
    comm : communicator, optional
        :class:`linsolve.mpi.SerialComm`, :func:`linsolve.mpi.world`, or an
        mpi4py communicator; default as :func:`linsolve.mpi.as_comm`.
    block_size : int, optional
        Split each parameter into tiles of at most this length per axis,
        each tile its own Shampoo block (Distributed Shampoo's blocking,
        which bounds the root sizes and evens out the assignment). Default:
        one block per parameter.
    **shampoo_kwargs
        Passed to every block's :class:`curvature.Shampoo` (``beta2``,
        ``eps``, ``grafting``, ``max_dim``, ...); grafting is per block.

    Attributes
    ----------
    tiles : list of (parameter index, tuple of slices)
        The blocks, in a fixed order every rank agrees on.
    owners : list of int
        Owner rank of each block (:func:`assign_blocks` on :func:`shampoo_cost`).
    blocks : dict
        ``{block index: Shampoo}`` for the blocks owned by this rank.

    Examples
    --------
    >>> import numpy as np
    >>> from linsolve.mpi import SerialComm
    >>> from curvature.shampoo.distributed import DistributedShampoo
    >>> opt = DistributedShampoo([(3, 2), (4,)], comm=SerialComm(), grafting=None)
    >>> grads = [np.arange(6.0).reshape(3, 2), np.ones(4)]
    >>> [d.shape for d in opt.update(grads)]
    [(3, 2), (4,)]
    """

    def __init__(self, shapes: Sequence[Sequence[int]], comm: Any = None, *,
                 block_size: int | None = None, **shampoo_kwargs):
        self.comm = _comm(comm)
        self.shapes = [tuple(int(n) for n in s) for s in shapes]
        if not self.shapes:
            raise ValueError("shapes must not be empty")
        self.block_size = block_size
        self.tiles = [(p, tile) for p, shape in enumerate(self.shapes)
                      for tile in split_blocks(shape, block_size)]
        self.block_shapes = [tuple(s.stop - s.start for s in tile) for _, tile in self.tiles]
        max_dim = shampoo_kwargs.get("max_dim", 2048)
        self.costs = [shampoo_cost(s, max_dim) for s in self.block_shapes]
        self.owners = assign_blocks(self.costs, self.comm.size)
        self.blocks = {b: Shampoo(s, **shampoo_kwargs) for b, s in enumerate(self.block_shapes)
                       if self.owners[b] == self.comm.rank}

    def update(self, grads: Sequence[Any]) -> list[np.ndarray]:
        """Directions of every parameter on every rank (``grads``: the same list on every rank)."""
        if not isinstance(grads, (list, tuple)):
            raise TypeError(f"DistributedShampoo: grads must be a list or tuple of arrays, one "
                            f"per parameter shape, got {type(grads).__name__}; wrap a single "
                            "gradient as [grad]")
        if len(grads) != len(self.shapes):
            raise ValueError(f"expected {len(self.shapes)} gradients, got {len(grads)}")
        grads = [np.asarray(g) for g in grads]
        for i, (g, shape) in enumerate(zip(grads, self.shapes)):
            if g.shape != shape:
                raise ValueError(f"gradient shape {g.shape} != parameter shape {shape}")
            # before any block's state changes: an integer tile would reach Shampoo's
            # refusal only on the rank that owns it, and only after other blocks updated
            if g.dtype.kind != "f":
                raise TypeError(f"DistributedShampoo: grads[{i}] has dtype {g.dtype}; each "
                                "gradient must be a real floating array (float32 or float64): "
                                f"convert it with numpy.asarray(grads[{i}], dtype=float)")
        local = {b: opt.update(np.ascontiguousarray(grads[self.tiles[b][0]][self.tiles[b][1]]))
                 for b, opt in self.blocks.items()}
        dtypes = [g.dtype if g.dtype in (np.float32, np.float64) else np.dtype(np.float64)
                  for g in grads]
        pieces = _gather_blocks(self.comm, self.owners, local, self.block_shapes,
                                [dtypes[p] for p, _ in self.tiles])
        directions = [np.empty(shape, dtype=dtype) for shape, dtype in zip(self.shapes, dtypes)]
        for (p, tile), piece in zip(self.tiles, pieces):
            directions[p][tile] = piece
        return directions

    def load(self) -> list[float]:
        """Estimated cost per rank under the assignment."""
        loads = [0.0] * self.comm.size
        for block, owner in enumerate(self.owners):
            loads[owner] += self.costs[block]
        return loads

    def state_dict(self) -> dict:
        """This rank's blocks' states (each rank checkpoints its own)."""
        return {"owners": list(self.owners),
                "blocks": {b: opt.state_dict() for b, opt in self.blocks.items()}}

    def load_state_dict(self, state: dict) -> None:
        """Restore this rank's blocks from :meth:`state_dict` (saved by the same rank).

        Raises ``ValueError`` when the assignment differs or the state holds
        other blocks than this rank owns (another rank's checkpoint), before
        any block is changed.
        """
        # Every block's state is checked before any block is loaded (one shared gate).
        check_state(state, {
            "owners": Equal(self.owners, "; the checkpoint was saved under a different "
                                         "block assignment"),
            "blocks": Table({b: opt._state_spec() for b, opt in self.blocks.items()}, "blocks",
                            f" (rank {self.comm.rank} owns these): load the checkpoint this "
                            "rank saved")}, type(self).__name__)
        for b, block_state in state["blocks"].items():
            self.blocks[int(b)].load_state_dict(block_state)


def distributed_inverse_roots(matrices: Sequence[np.ndarray], p: int, comm: Any = None,
                              **root_kwargs) -> list[np.ndarray]:
    """``inverse_root(M, p)`` of each matrix, computed on its owner rank and AllGathered.

    Every rank passes the same list; matrices are assigned by ``n^3``
    (largest first, least loaded rank).

    Examples
    --------
    >>> import numpy as np
    >>> from linsolve.mpi import SerialComm
    >>> roots = distributed_inverse_roots([np.diag([4.0, 9.0])], 2, comm=SerialComm())
    >>> np.round(roots[0].diagonal(), 12).tolist()
    [0.5, 0.333333333333]
    """
    comm = _comm(comm)
    matrices = [np.asarray(m) for m in matrices]
    owners = assign_blocks([float(m.shape[-1]) ** 3 for m in matrices], comm.size)
    local = {b: inverse_root(m, p, **root_kwargs) for b, m in enumerate(matrices)
             if owners[b] == comm.rank}
    dtypes = [m.dtype if m.dtype in (np.float32, np.float64) else np.dtype(np.float64)
              for m in matrices]
    return _gather_blocks(comm, owners, local, [m.shape for m in matrices], dtypes)
