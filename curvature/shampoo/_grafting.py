"""Grafting: the diagonal methods whose step size a Shampoo direction borrows.

Grafting (Agarwal et al., "Disentangling adaptive gradient methods from
learning rates", 2020) keeps the direction of one method and the per-tensor
norm of another. Here the borrowed methods are learning-rate-free
directions: ``sgd`` is the gradient, ``adagrad`` is
``g / (sqrt(sum g^2) + eps)``, ``adam`` is Adam's second-moment scaling
``g / (sqrt(v / (1 - beta2^t)) + eps)``. Adam's first moment is left to the
caller, as in facebookresearch/optimizers' grafting, where momentum is
applied after grafting to the combined direction.
"""

from __future__ import annotations

GRAFTINGS = ("adam", "adagrad", "sgd", None)


def check_grafting(kind):
    if kind not in GRAFTINGS:
        raise ValueError(f"grafting must be one of {GRAFTINGS}, got {kind!r}")
    return kind


def graft_direction(xp, kind, state, grad, step, beta2, eps):
    """Direction of the grafted method at ``step`` (1-based) and its new state.

    ``state`` is None before the first call (sgd keeps none).
    """
    if kind == "sgd":
        return grad, None
    square = grad * grad
    if kind == "adagrad":
        acc = square if state is None else state + square
        return grad / (xp.sqrt(acc) + eps), acc
    # adam
    v = (1.0 - beta2) * square if state is None else beta2 * state + (1.0 - beta2) * square
    v_hat = v / (1.0 - beta2 ** step)
    return grad / (xp.sqrt(v_hat) + eps), v
