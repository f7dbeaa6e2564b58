"""Convergence plots: relative residual against iteration and against time (two panels)."""

from __future__ import annotations

import os
from typing import Sequence


def plot_convergence(histories: Sequence[dict], path: str | os.PathLike, *, title: str = "",
                     rtol: float | None = None) -> None:
    """Save a two-panel semilog plot of ``histories`` to ``path`` (PNG).

    Parameters
    ----------
    histories : sequence of dict
        Each with ``method``, ``problem``, ``relative_residual`` and ``time_s``
        lists of equal length. The time axis is setup time plus ``k`` times
        the measured time per iteration: the histories of scipy's solvers
        come from a separate, untimed run, so per-iteration stamps would not
        describe the timed one.
    path : path
        Output file.
    title : str
        Figure title.
    rtol : float, optional
        Drawn as a dashed horizontal line.
    """
    import matplotlib

    # Agg: no display needed (servers, CI); set before pyplot is imported.
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (by_iteration, by_time) = plt.subplots(1, 2, figsize=(12, 4.5))
    several_problems = len({history["problem"] for history in histories}) > 1
    for history in histories:
        residual = history["relative_residual"]
        if not residual:
            continue
        label = history["method"] + (f" [{history['problem']}]" if several_problems else "")
        (line,) = by_iteration.semilogy(range(len(residual)), residual, label=label)
        by_time.semilogy(history["time_s"], residual, color=line.get_color(), label=label)
    for axes, xlabel in ((by_iteration, "iteration"), (by_time, "time [s] (setup included)")):
        if rtol is not None:
            axes.axhline(rtol, color="gray", linestyle="--", linewidth=0.8)
        axes.set_xlabel(xlabel)
        axes.set_ylabel("||r|| / ||b||")
        axes.grid(True, which="major", alpha=0.3)
    by_iteration.legend(fontsize="small")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
