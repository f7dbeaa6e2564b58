"""Convergence plots: relative residual against iteration and against time (two panels)."""

from __future__ import annotations

import os
from typing import Sequence

# Okabe & Ito (2008), "Color Universal Design": colours told apart under
# the common colour-vision deficiencies. Their yellow (#F0E442) is replaced
# by grey: a thin yellow line all but vanishes on white.
OKABE_ITO = ("#E69F00", "#56B4E9", "#009E73", "#0072B2", "#D55E00", "#CC79A7", "#000000",
             "#999999")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">")
LINESTYLES = ("-", "--", "-.", ":")
MARKERS_PER_CURVE = 12


def curve_styles(count: int) -> list[dict]:
    """Matplotlib keyword sets for ``count`` curves: colour, marker and line style all differ.

    Colour cycles with period 8, marker with 10 and line style with 4, so two
    curves share all three only after 40 (never in our tables).

    Examples
    --------
    >>> styles = curve_styles(3)
    >>> len({(s["color"], s["marker"], s["linestyle"]) for s in styles})
    3
    """
    return [{"color": OKABE_ITO[i % len(OKABE_ITO)], "marker": MARKERS[i % len(MARKERS)],
             "linestyle": LINESTYLES[i % len(LINESTYLES)]} for i in range(count)]


def _markevery(length: int, index: int, count: int) -> tuple[int, int]:
    """Markers every ``step`` points, shifted per curve, so identical curves
    (pcg and scipy-cg on the same iterates) still show both markers."""
    step = max(1, length // MARKERS_PER_CURVE)
    return (index * step // max(count, 1)) % step, step


def plot_convergence(histories: Sequence[dict], path: str | os.PathLike, *, title: str = "",
                     rtol: float | None = None) -> None:
    """Save a two-panel semilog plot of ``histories`` to ``path`` (PNG).

    Parameters
    ----------
    histories : sequence of dict
        Each with ``method``, ``problem``, ``relative_residual`` (the true
        relative residual ``||b - A x_k|| / ||b||``) and ``time_s`` (setup
        plus the time stamped after each iteration, see
        :class:`bench.methods._Trace`) lists of equal length.
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

    fig, (by_iteration, by_time) = plt.subplots(1, 2, figsize=(13, 5))
    several_problems = len({history["problem"] for history in histories}) > 1
    drawn = [history for history in histories if history["relative_residual"]]
    for index, (history, style) in enumerate(zip(drawn, curve_styles(len(drawn)))):
        residual = history["relative_residual"]
        label = history["method"] + (f" [{history['problem']}]" if several_problems else "")
        # Earlier curves drawn wider, with bigger hollow markers: where two
        # curves coincide (too short to stagger the markers) the one below
        # still shows around the one on top.
        later = len(drawn) - 1 - index
        common = dict(style, label=label, linewidth=1.2 + 0.25 * later,
                      markersize=4.5 + 0.6 * later, markerfacecolor="none",
                      markevery=_markevery(len(residual), index, len(drawn)))
        by_iteration.semilogy(range(len(residual)), residual, **common)
        by_time.semilogy(history["time_s"], residual, **common)
    for axes, xlabel in ((by_iteration, "iteration k"),
                         (by_time, "time [s] (setup + per-iteration timestamps)")):
        if rtol is not None:
            axes.axhline(rtol, color="gray", linestyle="--", linewidth=0.8, label="rtol")
        axes.set_xlabel(xlabel)
        axes.set_ylabel("true relative residual ||b - A x_k|| / ||b||")
        axes.grid(True, which="major", alpha=0.3)
    by_iteration.legend(fontsize="small", ncol=2)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
