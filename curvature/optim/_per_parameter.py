"""One curvature object per parameter (or per tile of one): Shampoo's and SOAP's layout.

Each array of the tree gets its own preconditioner of its shape -- or, with
``block_size``, one per tile of at most ``block_size`` along every axis
(Distributed Shampoo's blocking, :func:`curvature.shampoo.distributed.split_blocks`),
which bounds the factor sizes. A 0-d parameter is treated as shape ``(1,)``.
The state is ``{"blocks": [[state_dict of each tile] for each parameter]}``,
parameters in the tree's flattening order, tiles in C order.
"""

from __future__ import annotations

import math
from typing import Any, Callable

from .._state import Where, check_state
from ..shampoo.distributed import split_blocks
from ._call import prepare_call, prepare_init, rename_errors, restore
from ._transforms import GradientTransformation

__all__ = ["make_tiles", "per_parameter", "tile_shapes", "tiled_direction"]


def _block_shape(shape) -> tuple:
    return tuple(shape) if len(shape) else (1,)


def _tiles(shape, block_size):
    return split_blocks(_block_shape(shape), block_size)


def _assemble(xp, pieces: list, counts: tuple):
    """The array tiled by ``pieces`` (C order, ``counts[i]`` tiles along axis ``i``)."""
    for axis in reversed(range(len(counts))):
        k = counts[axis]
        if k > 1:
            pieces = [xp.concat(pieces[i:i + k], axis=axis) for i in range(0, len(pieces), k)]
    return pieces[0]


def tile_shapes(shape, block_size) -> list[tuple]:
    """The shape of every tile of a parameter of ``shape`` (C order; 0-d as ``(1,)``)."""
    return [tuple(s.stop - s.start for s in tile) for tile in _tiles(shape, block_size)]


def make_tiles(make: Callable[[tuple], Any], shape, block_size) -> list:
    """A fresh object ``make(tile_shape)`` for every tile of a parameter of ``shape``."""
    return [make(tile_shape) for tile_shape in tile_shapes(shape, block_size)]


def tiled_direction(xp, objects: list, grad, block_size, where: str):
    """The direction of one parameter: ``objects[j].update(tile j of grad)``, reassembled.

    The step both :func:`per_parameter` (objects rebuilt from the state) and
    ``curvature.torch`` (objects kept alive between steps) take, so the two
    interfaces share their arithmetic. Errors name ``where`` (and the tile).
    """
    shape = _block_shape(grad.shape)
    tiles = _tiles(grad.shape, block_size)
    block_grad = grad if shape == tuple(grad.shape) else xp.reshape(grad, shape)
    pieces = []
    for j, (tile, block) in enumerate(zip(tiles, objects)):
        piece = block_grad if len(tiles) == 1 else block_grad[tile]
        with rename_errors(where + (f", tile {j} of {len(tiles)}" if len(tiles) > 1 else "")):
            pieces.append(block.update(piece))
    counts = tuple(math.ceil(n / (block_size or n)) for n in shape)
    direction = _assemble(xp, pieces, counts)
    return (direction if direction.shape == tuple(grad.shape)
            else xp.reshape(direction, tuple(grad.shape)))


def per_parameter(owner: str, make: Callable[[tuple], Any],
                  block_size: int | None = None) -> GradientTransformation:
    """A transformation that runs ``make(shape).update(grad)`` on every parameter (tile).

    ``make`` builds a fresh object with ``update(grad) -> direction``,
    ``state_dict()`` and ``load_state_dict(state)``; it is called once here
    so that a bad configuration fails at construction.
    """
    split_blocks((1,), block_size)     # checks block_size
    make((1,))

    def init(params):
        _, leaves, _, _ = prepare_init(owner, params)
        return {"blocks": [[block.state_dict() for block in make_tiles(make, p.shape, block_size)]
                           for p in leaves]}

    def update(grads, state, params=None):
        check_state(state, {"blocks": Where(lambda v: isinstance(v, list),
                                            "a list (one entry per parameter)")}, owner)
        call = prepare_call(owner, grads, state, params)
        xp, blocks = call.xp, state["blocks"]
        if len(blocks) != len(call.grads):
            raise ValueError(f"{owner}: state['blocks'] holds {len(blocks)} parameters, grads "
                             f"{len(call.grads)}: the state belongs to another model")
        directions, new_blocks = [], []
        for i, (g, path, tile_states) in enumerate(zip(call.grads, call.paths, blocks)):
            shapes = tile_shapes(g.shape, block_size)
            if not isinstance(tile_states, list) or len(tile_states) != len(shapes):
                raise ValueError(f"{owner}: state['blocks'][{i}] (for {path}) must be a list "
                                 f"of {len(shapes)} block states, got {tile_states!r:.80}")
            objects = [restore(make(tile_shape), tile_state,
                               f"{owner}: state['blocks'][{i}][{j}] (for {path})")
                       for j, (tile_shape, tile_state) in enumerate(zip(shapes, tile_states))]
            directions.append(tiled_direction(xp, objects, g, block_size, f"{owner}: {path}"))
            new_blocks.append([block.state_dict() for block in objects])
        return call.tree(directions), {"blocks": new_blocks}

    return GradientTransformation(init, update)
