"""Convergence plots: relative residual against iteration and against time (two panels)."""

from __future__ import annotations

import math
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


def curve_label(history: dict, histories: Sequence[dict]) -> str:
    """Legend text: the method, its problem where several are drawn, and its time to solution.

    Examples
    --------
    >>> runs = [{"method": "pcg", "problem": "stokes", "n": 530, "time_to_solution_s": 0.012},
    ...         {"method": "pcg", "problem": "stokes", "n": 2210}]
    >>> curve_label(runs[0], runs), curve_label(runs[1], runs)
    ('pcg [stokes n=530] 0.012 s', 'pcg [stokes n=2210]')
    """
    systems = {(item["problem"], item.get("n")) for item in histories}
    label = history["method"]
    if len(systems) > 1:
        n = history.get("n")
        label += f" [{history['problem']}" + (f" n={n}]" if n is not None else "]")
    seconds = history.get("time_to_solution_s")
    if seconds is not None and not math.isnan(seconds):
        label += f" {seconds:.3g} s"
    return label


def plot_convergence(histories: Sequence[dict], path: str | os.PathLike, *, title: str = "",
                     rtol: float | None = None) -> None:
    """Save a two-panel semilog plot of ``histories`` to ``path`` (PNG).

    Parameters
    ----------
    histories : sequence of dict
        Each with ``method``, ``problem``, ``relative_residual`` (the true
        relative residual ``||b - A x_k|| / ||b||``) and ``time_s`` (setup
        plus the time stamped after each iteration, see
        :class:`bench.methods._Trace`) lists of equal length; optionally
        ``n`` (told apart in the legend in a size sweep) and
        ``time_to_solution_s`` (set-up plus solve, the legend's headline
        figure).
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
    drawn = [history for history in histories if history["relative_residual"]]
    for index, (history, style) in enumerate(zip(drawn, curve_styles(len(drawn)))):
        residual = history["relative_residual"]
        label = curve_label(history, histories)
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
                         (by_time, "time to solution [s] (set-up + per-iteration timestamps)")):
        if rtol is not None:
            axes.axhline(rtol, color="gray", linestyle="--", linewidth=0.8, label="rtol")
        axes.set_xlabel(xlabel)
        axes.set_ylabel("true relative residual ||b - A x_k|| / ||b||")
        axes.grid(True, which="major", alpha=0.3)
    # long labels (a size sweep, times to solution) in two columns would be
    # wider than the panel and squeeze it
    labels = [curve_label(history, histories) for history in drawn]
    by_iteration.legend(fontsize="small",
                        ncol=2 if max(map(len, labels), default=0) <= 28 else 1)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
