"""Equality-constrained Hock-Schittkowski problems (and BT1), written from the collection.

W. Hock and K. Schittkowski, *Test Examples for Nonlinear Programming
Codes*, Lecture Notes in Economics and Mathematical Systems 187 (1981).
Every objective, constraint, start point and optimal value below was
checked against two independent transcriptions of the book (the
``OptimizationProblems.jl`` collection of JuliaSmoothOptimizers and a
SymPy transcription with published optima; HS56's optimum also against
TOMLAB's table). Where ``OptimizationProblems.jl`` scales a least-squares
objective by 1/2 (HS6, HS28, HS42, HS48, HS51, HS52) the book's unscaled
form is used, to which the published ``f*`` belongs.

BT1 (Byrd and Tapia's set as in CUTEst): ``100 x1^2 + 100 x2^2 - x1 - 100``
on the unit circle; on the circle the objective is ``-x1``, so ``f* = -1``
at ``(1, 0)`` (derived, not looked up). The rest of the BT set was not
verified and is left out.

The functions use only NumPy operations that accept complex input, so
:func:`linsolve.sketch.constrained.constrained_problem` differentiates them by the
complex step.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from linsolve.sketch.constrained import CallableProblem, constrained_problem

S2, S3 = np.sqrt(2.0), np.sqrt(3.0)


@dataclass(frozen=True)
class ConstrainedBenchProblem:
    """One problem of the sketch table.

    Attributes
    ----------
    name : str
    problem : CallableProblem
    x0 : numpy.ndarray
        The collection's start point.
    f_star : float or None
        The literature optimum (None where there is none to compare with).
    note : str
    """

    name: str
    problem: CallableProblem
    x0: np.ndarray
    f_star: float | None
    note: str = ""

    @property
    def n(self) -> int:
        return int(self.x0.shape[0])

    @property
    def m(self) -> int:
        return int(self.problem.cons(self.x0).shape[0])


def _hs(name, f, c, x0, f_star, note=""):
    return ConstrainedBenchProblem(name, constrained_problem(f, c, name=name),
                                   np.asarray(x0, dtype=float), f_star, note)


def _hs56():
    a = np.arcsin(np.sqrt(1 / 4.2))
    b = np.arcsin(np.sqrt(5 / 7.2))
    return _hs("HS56", lambda x: -x[0] * x[1] * x[2],
               lambda x: [x[0] - 4.2 * np.sin(x[3]) ** 2, x[1] - 4.2 * np.sin(x[4]) ** 2,
                          x[2] - 4.2 * np.sin(x[5]) ** 2,
                          x[0] + 2 * x[1] + 2 * x[2] - 7.2 * np.sin(x[6]) ** 2],
               [1, 1, 1, a, a, a, b], -3.456)


def hock_schittkowski_problems() -> list[ConstrainedBenchProblem]:
    """The equality-constrained problems of the set, in the collection's order.

    Examples
    --------
    >>> problems = hock_schittkowski_problems()
    >>> [p.name for p in problems][:4], len(problems)
    (['HS6', 'HS7', 'HS8', 'HS9'], 23)
    >>> hs28 = problems[6]
    >>> hs28.name, hs28.problem.fun(np.array([0.5, -0.5, 0.5])), hs28.f_star
    ('HS28', 0.0, 0.0)
    """
    return [
        _hs("HS6", lambda x: (1 - x[0]) ** 2, lambda x: [10 * (x[1] - x[0] ** 2)],
            [-1.2, 1], 0.0),
        _hs("HS7", lambda x: np.log(1 + x[0] ** 2) - x[1],
            lambda x: [(1 + x[0] ** 2) ** 2 + x[1] ** 2 - 4], [2, 2], -S3),
        _hs("HS8", lambda x: -1.0 + 0 * x[0],
            lambda x: [x[0] ** 2 + x[1] ** 2 - 25, x[0] * x[1] - 9], [2, 1], -1.0,
            "constant objective: a feasibility problem"),
        _hs("HS9", lambda x: np.sin(np.pi * x[0] / 12) * np.cos(np.pi * x[1] / 16),
            lambda x: [4 * x[0] - 3 * x[1]], [0, 0], -0.5,
            "infinitely many minimizers (12k - 3, 16k - 4)"),
        _hs("HS26", lambda x: (x[0] - x[1]) ** 2 + (x[1] - x[2]) ** 4,
            lambda x: [(1 + x[1] ** 2) * x[0] + x[2] ** 4 - 3], [-2.6, 2, 2], 0.0),
        _hs("HS27", lambda x: 0.01 * (x[0] - 1) ** 2 + (x[1] - x[0] ** 2) ** 2,
            lambda x: [x[0] + x[2] ** 2 + 1], [2, 2, 2], 0.04),
        _hs("HS28", lambda x: (x[0] + x[1]) ** 2 + (x[1] + x[2]) ** 2,
            lambda x: [x[0] + 2 * x[1] + 3 * x[2] - 1], [-4, 1, 1], 0.0),
        _hs("HS39", lambda x: -x[0],
            lambda x: [x[1] - x[0] ** 3 - x[2] ** 2, x[0] ** 2 - x[1] - x[3] ** 2],
            [2, 2, 2, 2], -1.0),
        _hs("HS40", lambda x: -x[0] * x[1] * x[2] * x[3],
            lambda x: [x[0] ** 3 + x[1] ** 2 - 1, x[0] ** 2 * x[3] - x[2], x[3] ** 2 - x[1]],
            [0.8, 0.8, 0.8, 0.8], -0.25),
        _hs("HS42", lambda x: (x[0] - 1) ** 2 + (x[1] - 2) ** 2 + (x[2] - 3) ** 2
            + (x[3] - 4) ** 2, lambda x: [x[0] - 2, x[2] ** 2 + x[3] ** 2 - 2],
            [1, 1, 1, 1], 28 - 10 * S2),
        _hs("HS46", lambda x: (x[0] - x[1]) ** 2 + (x[2] - 1) ** 2 + (x[3] - 1) ** 4
            + (x[4] - 1) ** 6,
            lambda x: [x[0] ** 2 * x[3] + np.sin(x[3] - x[4]) - 1,
                       x[1] + x[2] ** 4 * x[3] ** 2 - 2],
            [S2 / 2, 1.75, 0.5, 2, 2], 0.0),
        _hs("HS47", lambda x: (x[0] - x[1]) ** 2 + (x[1] - x[2]) ** 3 + (x[2] - x[3]) ** 4
            + (x[3] - x[4]) ** 4,
            lambda x: [x[0] + x[1] ** 2 + x[2] ** 3 - 3, x[1] - x[2] ** 2 + x[3] - 1,
                       x[0] * x[4] - 1],
            [2, S2, -1, 2 - S2, 0.5], 0.0),
        _hs("HS48", lambda x: (x[0] - 1) ** 2 + (x[1] - x[2]) ** 2 + (x[3] - x[4]) ** 2,
            lambda x: [x[0] + x[1] + x[2] + x[3] + x[4] - 5, x[2] - 2 * (x[3] + x[4]) + 3],
            [3, 5, -3, 2, -2], 0.0),
        _hs("HS49", lambda x: (x[0] - x[1]) ** 2 + (x[2] - 1) ** 2 + (x[3] - 1) ** 4
            + (x[4] - 1) ** 6,
            lambda x: [x[0] + x[1] + x[2] + 4 * x[3] - 7, x[2] + 5 * x[4] - 6],
            [10, 7, 2, -3, 0.8], 0.0),
        _hs("HS50", lambda x: (x[0] - x[1]) ** 2 + (x[1] - x[2]) ** 2 + (x[2] - x[3]) ** 4
            + (x[3] - x[4]) ** 2,
            lambda x: [x[0] + 2 * x[1] + 3 * x[2] - 6, x[1] + 2 * x[2] + 3 * x[3] - 6,
                       x[2] + 2 * x[3] + 3 * x[4] - 6],
            [35, -31, 11, 5, -5], 0.0),
        _hs("HS51", lambda x: (x[0] - x[1]) ** 2 + (x[1] + x[2] - 2) ** 2 + (x[3] - 1) ** 2
            + (x[4] - 1) ** 2,
            lambda x: [x[0] + 3 * x[1] - 4, x[2] + x[3] - 2 * x[4], x[1] - x[4]],
            [2.5, 0.5, 2, -1, 0.5], 0.0),
        _hs("HS52", lambda x: (4 * x[0] - x[1]) ** 2 + (x[1] + x[2] - 2) ** 2
            + (x[3] - 1) ** 2 + (x[4] - 1) ** 2,
            lambda x: [x[0] + 3 * x[1], x[2] + x[3] - 2 * x[4], x[1] - x[4]],
            [2, 2, 2, 2, 2], 1859 / 349),
        _hs56(),
        _hs("HS61", lambda x: 4 * x[0] ** 2 + 2 * x[1] ** 2 + 2 * x[2] ** 2 - 33 * x[0]
            + 16 * x[1] - 24 * x[2],
            lambda x: [3 * x[0] - 2 * x[1] ** 2 - 7, 4 * x[0] - x[2] ** 2 - 11],
            [0, 0, 0], -143.6461422, "the Jacobian at x0 has rank 1 (singular KKT matrix)"),
        _hs("HS77", lambda x: (x[0] - 1) ** 2 + (x[0] - x[1]) ** 2 + (x[2] - 1) ** 2
            + (x[3] - 1) ** 4 + (x[4] - 1) ** 6,
            lambda x: [x[0] ** 2 * x[3] + np.sin(x[3] - x[4]) - 2 * S2,
                       x[1] + x[2] ** 4 * x[3] ** 2 - 8 - S2],
            [2, 2, 2, 2, 2], 0.24150513),
        _hs("HS78", lambda x: x[0] * x[1] * x[2] * x[3] * x[4],
            lambda x: [x[0] ** 2 + x[1] ** 2 + x[2] ** 2 + x[3] ** 2 + x[4] ** 2 - 10,
                       x[1] * x[2] - 5 * x[3] * x[4], x[0] ** 3 + x[1] ** 3 + 1],
            [-2, 1.5, 2, -1, -1], -2.91970041),
        _hs("HS79", lambda x: (x[0] - 1) ** 2 + (x[0] - x[1]) ** 2 + (x[1] - x[2]) ** 2
            + (x[2] - x[3]) ** 4 + (x[3] - x[4]) ** 4,
            lambda x: [x[0] + x[1] ** 2 + x[2] ** 3 - 2 - 3 * S2,
                       x[1] - x[2] ** 2 + x[3] + 2 - 2 * S2, x[0] * x[4] - 2],
            [2, 2, 2, 2, 2], 0.0787768209),
        _hs("BT1", lambda x: 100 * x[0] ** 2 + 100 * x[1] ** 2 - x[0] - 100,
            lambda x: [x[0] ** 2 + x[1] ** 2 - 1], [0.08, 0.06], -1.0,
            "f* derived: on the circle f = -x1"),
    ]
