"""Learning to Relax at laptop size: omega chosen online across a sequence of systems.

Two experiments of Khodak et al. (ICLR 2024):

(a) ``shifted``: ``A_t = A + c_t I`` with A the 5-point Laplacian on a 10 x 10
    interior grid, ``c_t = -0.15 + 0.6 Beta(0.5, 1.5)`` (high variance) or
    ``Beta(2, 6)`` (low variance), ``b_t`` a radially truncated Gaussian;
    cost = SOR iterations to ``||r|| / ||r_0|| < 1e-8`` from ``x0 = 0``.
(b) ``heat``: a 2-D heat equation, Crank-Nicolson, diffusion coefficient
    ``kappa(t) = max(0.1 sin 2 pi t, -10 sin 2 pi t)``, a bump source moving in
    a circle; each step solved by SSOR-preconditioned CG warm-started from
    the previous state. Departure from the authors' script: every method is
    evaluated on one shared trajectory (advanced with a tight solve), so
    iteration counts compare the same systems.

Methods: every fixed omega of the grid, the best fixed omega in hindsight,
the instance-optimal comparator (Young's omega for SOR; the best grid omega
per system for SSOR-PCG), Tsallis-INF and the contextual learners.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from linsolve import SorMatrix, pcg, precond, sor
from linsolve import OmegaBandit, OmegaContextualBandit, young_omega

GRID = np.linspace(1.0, 1.95, 20)
SOR_RTOL = 1e-8
SOR_CAP = 10_000


@dataclass
class SequenceResult:
    """Per-step costs of every method on one sequence (rows: steps)."""

    name: str
    contexts: np.ndarray
    grid: np.ndarray
    grid_costs: np.ndarray                      # (T, len(grid))
    costs: dict = field(default_factory=dict)   # method -> (T,) iterations
    omegas: dict = field(default_factory=dict)  # method -> (T,) omega used
    interrupted: bool = False

    def method_costs(self) -> dict:
        """Every method's per-step cost, the best fixed omega in hindsight first."""
        best = int(np.argmin(self.grid_costs.mean(axis=0)))
        fixed = {f"fixed omega={w:.2f}": self.grid_costs[:, i] for i, w in enumerate(self.grid)}
        return {"best fixed (hindsight)": self.grid_costs[:, best], **self.costs, **fixed}

    def summary(self) -> list[dict]:
        """One row per method: mean iterations overall and over the last 20%."""
        T = len(self.contexts)
        tail = slice(T - max(1, T // 5), T)
        best = float(self.grid[int(np.argmin(self.grid_costs.mean(axis=0)))])
        return [{"experiment": self.name, "method": method, "steps": T,
                 "mean_iterations": float(np.mean(cost)),
                 "mean_last_20pct": float(np.mean(cost[tail])),
                 "total_iterations": int(np.sum(cost)), "best_fixed_omega": best}
                for method, cost in self.method_costs().items()]


SUMMARY_COLUMNS = ("experiment", "method", "steps", "mean_iterations", "mean_last_20pct",
                   "total_iterations", "best_fixed_omega")


def laplacian_2d(N: int) -> sp.csr_matrix:
    """Unscaled 5-point Laplacian on an N x N interior grid (MATLAB's delsq)."""
    T = sp.diags([-1.0, 2.0, -1.0], [-1, 0, 1], shape=(N, N))
    return (sp.kron(sp.eye(N), T) + sp.kron(T, sp.eye(N))).tocsr()


def truncated_normal(n: int, rng: np.random.Generator) -> np.ndarray:
    """Standard Gaussian conditioned on ``||b|| <= sqrt(n)`` (rejection sampling)."""
    while True:
        sample = rng.standard_normal(n)
        if np.linalg.norm(sample) <= math.sqrt(n):
            return sample


def shift_distribution(variance: str):
    """``c_t`` sampler of the paper's high- or low-variance sequence."""
    if variance == "high":
        return lambda rng: -0.15 + 0.6 * rng.beta(0.5, 1.5)
    if variance == "low":
        return lambda rng: -0.15 + 0.6 * rng.beta(2.0, 6.0)
    raise ValueError(f"variance must be 'high' or 'low', got {variance!r}")


def _learners(context_range, seed: int) -> dict:
    return {
        "Tsallis-INF": OmegaBandit(omegas=GRID, seed=seed + 1),
        "Tsallis-INF (context bins)": OmegaContextualBandit(context_range, omegas=GRID,
                                                            method="tsallis-bins", seed=seed + 2),
        "ChebCB": OmegaContextualBandit(context_range, omegas=GRID, method="chebcb",
                                        seed=seed + 3),
    }


def _run(name: str, T: int, step, extra_methods, learners, progress) -> SequenceResult:
    """Drive ``step(t, record)`` for ``t < T``; Ctrl-C keeps the finished steps."""
    contexts = np.empty(T)
    grid_costs = np.empty((T, GRID.size))
    costs = {method: np.empty(T) for method in [*extra_methods, *learners]}
    omegas = {method: np.empty(T) for method in learners}
    done = 0
    try:
        for t in range(T):
            contexts[t] = step(t, grid_costs[t], costs, omegas)
            done = t + 1
            if progress is not None:
                progress(t)
    except KeyboardInterrupt:
        pass
    return SequenceResult(name, contexts[:done], GRID, grid_costs[:done],
                          {k: v[:done] for k, v in costs.items()},
                          {k: v[:done] for k, v in omegas.items()}, interrupted=done < T)


def run_shifted(T: int = 5000, variance: str = "high", N: int = 10, seed: int = 0,
                progress=None) -> SequenceResult:
    """Experiment (a); ``progress(step)`` is called after every step.

    Examples
    --------
    >>> result = run_shifted(T=3, seed=1)
    >>> [row["method"] for row in result.summary()][:3]
    ['best fixed (hindsight)', 'instance-optimal (Young)', 'Tsallis-INF']
    """
    rng = np.random.default_rng(seed)
    sample_shift = shift_distribution(variance)
    A = laplacian_2d(N)
    n = A.shape[0]
    learners = _learners((-0.15, 0.45), seed)
    young = "instance-optimal (Young)"

    def step(t, grid_row, costs, omegas):
        c = sample_shift(rng)
        b = truncated_normal(n, rng)
        A_t = (A + c * sp.eye(n)).tocsr()
        prepared = SorMatrix(A_t)  # shared by the grid's solves
        for i, omega in enumerate(GRID):
            grid_row[i] = sor(prepared, b, omega, rtol=SOR_RTOL, maxiter=SOR_CAP).iterations
        costs[young][t] = sor(prepared, b, young_omega(A_t), rtol=SOR_RTOL,
                              maxiter=SOR_CAP).iterations
        for name, learner in learners.items():
            context = None if isinstance(learner, OmegaBandit) else c
            result = learner.solve(A_t, b, context=context, solver="sor", rtol=SOR_RTOL,
                                   maxiter=SOR_CAP)
            costs[name][t] = result.extra["cost"]
            omegas[name][t] = result.extra["omega"]
        return c

    return _run(f"shifted-{variance}", T, step, [young], learners, progress)


def _bump(points: np.ndarray, center, radius: float) -> np.ndarray:
    """Smooth compactly supported bump ``exp(1 - 1/(1 - |x - c|^2 / r^2))``."""
    s = np.minimum(1.0, np.sum((points - np.asarray(center)) ** 2, axis=1) / radius**2)
    with np.errstate(divide="ignore"):
        return np.exp(1.0 - 1.0 / (1.0 - s))


def diffusion_coefficient(t):
    """The authors' time-varying diffusion: slow half-periods, fast bursts."""
    return np.maximum(0.1 * np.sin(2 * np.pi * t), -10.0 * np.sin(2 * np.pi * t))


def run_heat(T: int = 1000, nx: int = 25, stoptime: float = 1.0, seed: int = 0,
             progress=None) -> SequenceResult:
    """Experiment (b): Crank-Nicolson heat steps solved by SSOR-PCG from the previous state."""
    dt = stoptime / T
    h = 1.0 / nx
    m = nx - 1
    n = m * m
    lap = laplacian_2d(m) / h**2  # minus the Laplacian: SPD
    points = np.array([(i, j) for i in range(1, nx) for j in range(1, nx)], dtype=float) * h
    state = {"u": _bump(points, (0.5, 0.5), 0.25)}
    eye = sp.eye(n, format="csr")
    learners = _learners((0.0, 10.0), seed)
    extra = ["instance-optimal (grid)", "CG (no preconditioner)"]

    def step(t, grid_row, costs, omegas):
        u = state["u"]
        halfstep = (t + 0.5) * dt
        kappa = float(diffusion_coefficient(halfstep))
        half = 0.5 * kappa * dt * lap
        A = (eye + half).tocsr()
        center = (0.5 + math.cos(16 * math.pi * halfstep) / 4,
                  0.5 + math.sin(16 * math.pi * halfstep) / 4)
        b = (eye - half) @ u + dt * 32.0 * _bump(points, center, 0.125)
        for i, omega in enumerate(GRID):
            grid_row[i] = pcg(A, b, x0=u, M=precond.ssor(A, omega), rtol=SOR_RTOL).iterations
        costs[extra[0]][t] = grid_row.min()
        costs[extra[1]][t] = pcg(A, b, x0=u, rtol=SOR_RTOL).iterations
        for name, learner in learners.items():
            context = None if isinstance(learner, OmegaBandit) else kappa
            result = learner.solve(A, b, context=context, solver="ssor-pcg", x0=u, rtol=SOR_RTOL)
            costs[name][t] = result.extra["cost"]
            omegas[name][t] = result.extra["omega"]
        state["u"] = pcg(A, b, x0=u, rtol=1e-12).x  # the shared trajectory
        return kappa

    return _run("heat", T, step, extra, learners, progress)


def plot_cumulative(results, path) -> None:
    """Cumulative iterations against step, one panel per experiment."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(6.5 * len(results), 4.5), squeeze=False)
    for ax, result in zip(axes[0], results):
        for method, cost in result.method_costs().items():
            if method.startswith("fixed"):
                ax.plot(np.cumsum(cost), color="0.8", lw=0.8)
            else:
                ax.plot(np.cumsum(cost), lw=1.6, label=method)
        ax.set_title(f"{result.name} (grey: fixed omegas)")
        ax.set_xlabel("system")
        ax.set_ylabel("cumulative iterations")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# --- (c) wall time at a size where the set-up and the sweeps matter ---------------------

WALL_OMEGAS = 2.0 - np.geomspace(0.8, 0.02, 20)
"""The grid of the wall-time sequence: 1.2 to 1.98, finer towards 2, where a
256 x 256 grid's optimal factors lie (Young's omega of ``A + c I`` runs from
1.976 at ``c = 0`` to 1.4 at ``c = 0.4``)."""

WALL_COLUMNS = ("method", "omega", "systems", "sweeps", "seconds", "vs_pyamg")


def wall_shift(rng: np.random.Generator) -> float:
    """``c_t = 0.6 Beta(0.5, 1.5)``: the high-variance sequence's shape without its
    negative offset, which on a 256 x 256 grid (smallest eigenvalue 3e-4) would make
    ``A + c I`` indefinite."""
    return 0.6 * rng.beta(0.5, 1.5)


def run_wall(T: int = 100, N: int = 256, seed: int = 0, check_every: int = 4,
             cap: int = 5000, progress=None) -> list[dict]:
    """Wall time over a sequence: learned omega (ChebCB, multicolour SOR) against pyamg.

    The systems ``A_t = A + c_t I`` (:func:`wall_shift`), A the 5-point
    Laplacian on an N x N grid, ``b_t`` a radially truncated Gaussian, are
    solved to ``||r|| / ||r_0|| < 1e-8`` from zero:

    * learned: :class:`~linsolve.OmegaContextualBandit` (ChebCB, context
      ``c_t``) choosing from :data:`WALL_OMEGAS`, each system by
      ``sor(A_t, b_t, ordering="multicolor", check_every=check_every)`` from
      the scipy matrix -- set-up included, the colouring reused through the
      plain call (one pattern) -- and the learner's own work; a solve stops
      at ``cap`` sweeps and costs the cap;
    * pyamg: ``pyamg.relaxation.relaxation.sor`` at the best fixed omega of
      the grid in hindsight, sweeping exactly as many times as its
      iteration (the natural ordering, counted by :func:`linsolve.sor`)
      needs on each system: no residual checks, the least time pyamg's
      sweep can solve the sequence in.

    The best fixed omega minimises the total natural-ordering sweeps over
    the sequence; the grid is searched from Young's omega of the median
    shift outwards, a direction given up once its total grows (the totals
    are unimodal in omega here), each total cut off where it passes the
    best so far. The two timed solves of a system run one after the other,
    so that both see the machine alike; BLAS is held at one thread.

    Returns the table rows (:data:`WALL_COLUMNS`); ``progress(step)`` is
    called after each timed system.
    """
    import time

    from pyamg.relaxation.relaxation import sor as pyamg_sor
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(seed)
    A = laplacian_2d(N)
    n = A.shape[0]
    eye = sp.eye(n, format="csr")
    shifts = np.array([wall_shift(rng) for _ in range(T)])
    rhs = [truncated_normal(n, rng) for _ in range(T)]

    def system(t):
        return (A + shifts[t] * eye).tocsr()

    # the best fixed omega in hindsight, by natural-ordering sweep counts
    counts: dict[int, np.ndarray] = {}

    def total(index: int, bound: float) -> float:
        used = np.zeros(T, dtype=np.int64)
        for t in range(T):
            budget = int(min(cap, bound - used.sum()))
            if budget < 1:
                return math.inf
            result = sor(system(t), rhs[t], float(WALL_OMEGAS[index]), rtol=SOR_RTOL,
                         maxiter=budget)
            used[t] = result.iterations if result.converged else cap
            if not result.converged and budget < cap:
                return math.inf
        counts[index] = used
        return float(used.sum())

    rho = 4 * math.cos(math.pi / (N + 1)) / (4 + float(np.median(shifts)))
    young = 2 / (1 + math.sqrt(1 - rho * rho))
    start = int(np.argmin(np.abs(WALL_OMEGAS - young)))
    best, best_total = start, total(start, math.inf)
    for step in (-1, 1):
        index = start + step
        while 0 <= index < WALL_OMEGAS.size:
            value = total(index, best_total)
            if value >= best_total:
                break
            best, best_total = index, value
            index += step
    omega_star = float(WALL_OMEGAS[best])
    sweeps_star = counts[best]

    learner = OmegaContextualBandit((0.0, 0.6), omegas=WALL_OMEGAS, method="chebcb",
                                    seed=seed + 3)
    seconds = {"learned": 0.0, "pyamg": 0.0}
    learned_sweeps = 0
    with threadpool_limits(1):
        for t in range(T):
            A_t, b = system(t), rhs[t]
            tic = time.perf_counter()
            result = learner.solve(A_t, b, context=float(shifts[t]), solver="sor",
                                   ordering="multicolor", rtol=SOR_RTOL, maxiter=cap,
                                   check_every=check_every)
            seconds["learned"] += time.perf_counter() - tic
            learned_sweeps += result.iterations
            x = np.zeros(n)
            tic = time.perf_counter()
            pyamg_sor(A_t, x, b, omega_star, iterations=int(sweeps_star[t]), sweep="forward")
            seconds["pyamg"] += time.perf_counter() - tic
            if progress is not None:
                progress(t)
    reference = seconds["pyamg"]
    return [
        {"method": "pyamg sor, best fixed omega in hindsight", "omega": omega_star,
         "systems": T, "sweeps": int(sweeps_star.sum()), "seconds": reference,
         "vs_pyamg": 1.0},
        {"method": f"ChebCB omega, sor multicolor (check_every={check_every})",
         "omega": float("nan"), "systems": T, "sweeps": learned_sweeps,
         "seconds": seconds["learned"], "vs_pyamg": seconds["learned"] / reference},
    ]
