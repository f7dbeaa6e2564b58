"""``python -m bench curvature``: inverse roots, optimisers on digits, M-FAC speed.

Three parts, each printed as a table and written to ``--out``:

1. ``curvature_roots``: :func:`curvature.inverse_root` (p = 4, float64) by
   method (eigh, newton, auto) x size x condition number on matrices
   ``A = Q diag(lambda) Q'`` with a random orthogonal ``Q`` and eigenvalues
   log-spaced from 1 down to ``1/cond``; the reference is
   ``Q diag(lambda^{-1/4}) Q'`` from that known eigendecomposition. Columns:
   relative Frobenius error against the reference, the root's own residual
   (:class:`curvature.RootInfo`), Newton iterations, converged, time (best
   of a few runs). Followed by the batched-root speed rows of
   :func:`bench.roots_speed.run` (64 blocks of 256 against bare
   ``numpy.linalg.eigh``; target ratio <= 1.1).
2. ``curvature_optimizers``: the MLP of :mod:`bench.optimizers` (64-32-10,
   tanh, softmax cross-entropy, hand-written backprop) on scikit-learn's
   digits, mini-batches of 32, the same initial weights and batch order
   for every method. The learning rate of each method is chosen from a
   short grid (:data:`bench.optimizers.LR_GRIDS`) by the full training
   loss after one epoch (a separate run from the same start); then the
   method trains ``--epochs`` epochs from scratch with that rate. The
   full training loss is recorded after every step (outside the timer);
   times are those of the training steps (forward, backward, optimiser).
   A PNG shows training loss against step and against time. The column
   ``epochs_to_sgd_loss`` is the first epoch (fractional, per step) at
   which a method's training loss reaches SGD's final loss.
2b. ``curvature_optim``: the same MLP, the same batches, through the
   optimizer interface :mod:`curvature.optim` on NumPy and on JAX float64
   arrays, and as :mod:`curvature.torch` optimizers in a PyTorch loop, beside
   the per-object NumPy run (:mod:`bench.optim_interface`; JAX and torch
   rows where installed): final training loss, its difference from the
   per-object run, time per step (the first step, where JAX compiles, on its
   own), for ``--optim-steps`` steps (one epoch, 12 with ``--quick``) at the
   rates the optimiser table chose.
2c. ``curvature_torch`` (torch installed): time per step of each
   :mod:`curvature.torch` optimizer against the NumPy interface and against
   ``torch.optim.Adam`` on the same loop, interleaved, best of
   ``--torch-repeats`` (:func:`bench.optim_interface.compare_step_times`).
   ``--only-optim`` runs 2b and 2c alone, at
   :data:`bench.optim_interface.DEFAULT_LRS`.
3. ``curvature_mfac_speed``: :func:`bench.mfac_speed.run` rows
   (d = 1e5 with ``--quick``, 1e6 otherwise).
4. ``curvature_newton``: the cost tables of :mod:`bench.newton` (damped,
   lazy and gradient-normalized Newton, gradient descent and
   scipy.optimize on logistic regression, log-sum-exp, Rosenbrock and
   polytope feasibility).

BLAS runs on one thread (as in the rest of ``python -m bench``: on the
2-core shared machine, threaded BLAS on small matrices spent most of its
time waiting; Shampoo's 64 x 64 roots ran 30x slower), and the optimiser
tables also run Numba and torch on one thread (M-FAC's kernels on a 2410-long
gradient, same reason). Ctrl-C keeps the finished rows, writes them and
exits with status 130.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
import time

import numpy as np

from ._threads import blas_one_thread
from .optim_interface import COLUMNS as INTERFACE_COLUMNS, SPEED_COLUMNS as TORCH_COLUMNS

__all__ = ["ROOT_COLUMNS", "OPTIMIZER_COLUMNS", "curvature_parser", "run_curvature_command",
           "run_roots", "run_optimizers", "plot_training"]

ROOT_COLUMNS = ("method", "n", "cond", "p", "relative_error", "residual", "iterations",
                "converged", "info_method", "time_s")
ROOT_SPEED_COLUMNS = ("method", "blocks", "size", "time", "ratio")
OPTIMIZER_COLUMNS = ("method", "lr", "epochs", "steps", "initial_train_loss", "train_loss",
                     "test_accuracy", "time_s", "time_per_step_ms", "epochs_to_sgd_loss")
DEFAULT_MFAC_COLUMNS = ("operation", "d", "m", "dtype", "seconds", "baseline",
                        "baseline_seconds", "ratio", "target")

ROOT_METHODS = ("eigh", "newton", "auto")
CONDITIONS = (1e2, 1e6, 1e10)


def curvature_parser(prog: str) -> argparse.ArgumentParser:
    """Options of ``python -m bench curvature``."""
    parser = argparse.ArgumentParser(
        prog=prog, description="Inverse roots, optimisers on an MLP (digits), M-FAC speed.")
    parser.add_argument("--quick", action="store_true",
                        help="small, fast run (sizes 32/64, 3 epochs, small speed problems)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="training epochs per optimiser (default 20, 3 with --quick)")
    parser.add_argument("--batch-size", type=int, default=32, help="mini-batch size (default 32)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the split, initial weights, batches and test matrices")
    parser.add_argument("--mfac-d", type=int, default=None,
                        help="gradient length of the M-FAC speed rows (default 1e6, 1e5 with "
                             "--quick; 0 skips them)")
    parser.add_argument("--optim-steps", type=int, default=None,
                        help="steps of the curvature.optim runs on NumPy and JAX (default one "
                             "epoch, 12 with --quick; 0 skips them)")
    parser.add_argument("--torch-repeats", type=int, default=None,
                        help="repeats of the interleaved torch timing (curvature.torch against "
                             "the NumPy interface and torch.optim.Adam; default 5, 1 with "
                             "--quick; 0 skips it; needs torch)")
    parser.add_argument("--only-optim", action="store_true",
                        help="run only the optimizer-interface rows and the torch timing "
                             "(parts 2b and 2c), at the default rates")
    parser.add_argument("--out", default="results", help="output folder (default results/)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


# ---------------------------------------------------------------- roots ----

def _test_matrix(n: int, cond: float, p: int, rng):
    """``A = Q diag(lam) Q'`` and the exact ``Q diag(lam^{-1/p}) Q'``."""
    Q, R = np.linalg.qr(rng.standard_normal((n, n)))
    Q *= np.sign(np.diag(R))
    lam = np.logspace(0.0, -np.log10(cond), n)
    A = (Q * lam) @ Q.T
    A = (A + A.T) / 2
    reference = (Q * lam ** (-1.0 / p)) @ Q.T
    return A, reference


def run_roots(sizes=(32, 128, 256), conditions=CONDITIONS, methods=ROOT_METHODS, p: int = 4,
              repeats: int = 3, seed: int = 0, progress=None) -> tuple[list[dict], bool]:
    """Accuracy and time of ``inverse_root`` on matrices of known spectrum.

    Returns ``(rows, interrupted)``; rows have :data:`ROOT_COLUMNS`.
    """
    from ._progress import progress_bar

    from curvature import inverse_root

    rows: list[dict] = []
    jobs = [(n, cond, method) for n in sizes for cond in conditions for method in methods]
    rng = np.random.default_rng(seed)
    matrices = {(n, cond): _test_matrix(n, cond, p, rng) for n in sizes for cond in conditions}
    try:
        with progress_bar(jobs, desc="roots", disable=_disabled(progress)) as bar:
            for n, cond, method in bar:
                A, reference = matrices[(n, cond)]
                best = np.inf
                for _ in range(repeats):
                    start = time.perf_counter()
                    X, info = inverse_root(A, p, method=method, return_info=True)
                    best = min(best, time.perf_counter() - start)
                error = np.linalg.norm(X - reference) / np.linalg.norm(reference)
                rows.append({"method": method, "n": n, "cond": cond, "p": p,
                             "relative_error": float(error), "residual": float(info.residual),
                             "iterations": int(info.iterations),
                             "converged": bool(info.converged), "info_method": info.method,
                             "time_s": best})
    except KeyboardInterrupt:
        return rows, True
    return rows, False


# ----------------------------------------------------------- optimisers ----

def _train(name: str, lr: float, data, epochs: int, batch_size: int, seed: int,
           record: bool = True, bar=None):
    """Train from the seeded start; returns a dict with the history and the final state."""
    from .optimizers import accuracy, init_params, loss_and_grad, make_optimizer

    params = init_params((data.X_train.shape[1], 32, 10), seed=seed)
    optimizer = make_optimizer(name, params)
    order = np.random.default_rng(seed + 1)
    n = data.X_train.shape[0]
    initial = loss_and_grad(params, data.X_train, data.y_train, need_grad=False)
    losses, times = [initial], [0.0]
    elapsed = 0.0
    steps = 0
    diverged = False
    for _ in range(epochs):
        perm = order.permutation(n)
        for start in range(0, n - batch_size + 1, batch_size):
            batch = perm[start:start + batch_size]
            tick = time.perf_counter()
            if getattr(optimizer, "needs_layers", False):   # K-FAC, MKOR: per-layer a and g
                _, grads, layers = loss_and_grad(params, data.X_train[batch],
                                                 data.y_train[batch], return_layers=True)
                optimizer.step(params, grads, lr, layers)
            else:
                _, grads = loss_and_grad(params, data.X_train[batch], data.y_train[batch])
                optimizer.step(params, grads, lr)
            elapsed += time.perf_counter() - tick
            steps += 1
            if bar is not None:
                bar.update(1)
            if record:
                loss = loss_and_grad(params, data.X_train, data.y_train, need_grad=False)
                losses.append(loss)
                times.append(elapsed)
                if not np.isfinite(loss):
                    diverged = True
                    break
        if diverged:
            break
    final = loss_and_grad(params, data.X_train, data.y_train, need_grad=False)
    return {"params": params, "initial": initial, "final": final, "losses": losses,
            "times": times, "elapsed": elapsed, "steps": steps,
            "test_accuracy": accuracy(params, data.X_test, data.y_test)}


def run_optimizers(methods=None, epochs: int = 20, batch_size: int = 32, seed: int = 0,
                   progress=None):
    """Learning-rate grid (one epoch) then a full run per method.

    Returns ``(rows, histories, interrupted)``: rows with
    :data:`OPTIMIZER_COLUMNS` (plus ``lr_grid``, the one-epoch training
    loss per tried rate), histories with ``method, loss, time_s``.
    """
    from ._progress import progress_bar

    from .optimizers import LR_GRIDS, OPTIMIZERS, load_digits_split

    methods = tuple(methods or OPTIMIZERS)
    data = load_digits_split(seed)
    steps_per_epoch = data.X_train.shape[0] // batch_size
    total = sum(len(LR_GRIDS[m]) + epochs for m in methods) * steps_per_epoch
    rows: list[dict] = []
    histories: list[dict] = []
    try:
        with progress_bar(total=total, desc="optimisers", disable=_disabled(progress)) as bar:
            for name in methods:
                bar.set_postfix_str(f"{name} lr grid")
                grid = {}
                for lr in LR_GRIDS[name]:
                    with np.errstate(all="ignore"):
                        trial = _train(name, lr, data, 1, batch_size, seed, record=False, bar=bar)
                    grid[lr] = trial["final"] if np.isfinite(trial["final"]) else np.inf
                lr = min(grid, key=grid.get)
                bar.set_postfix_str(f"{name} lr={lr:g}")
                run = _train(name, lr, data, epochs, batch_size, seed, bar=bar)
                rows.append({"method": name, "lr": lr, "epochs": epochs, "steps": run["steps"],
                             "initial_train_loss": run["initial"], "train_loss": run["final"],
                             "test_accuracy": run["test_accuracy"], "time_s": run["elapsed"],
                             "time_per_step_ms": 1e3 * run["elapsed"] / max(run["steps"], 1),
                             "lr_grid": {f"{k:g}": v for k, v in grid.items()}})
                histories.append({"method": name, "lr": lr, "loss": run["losses"],
                                  "time_s": run["times"]})
    except KeyboardInterrupt:
        _epochs_to_sgd_loss(rows, histories, steps_per_epoch)
        return rows, histories, True
    _epochs_to_sgd_loss(rows, histories, steps_per_epoch)
    return rows, histories, False


def _epochs_to_sgd_loss(rows, histories, steps_per_epoch) -> None:
    """Add ``epochs_to_sgd_loss``: the first point (in epochs, per step) at which a
    method's full training loss is at or below SGD's final loss; NaN if never
    (or no SGD row). K-FAC's claim: at most half of SGD's epochs."""
    target = next((row["train_loss"] for row in rows if row["method"] == "sgd"), None)
    for row, history in zip(rows, histories):
        reached = float("nan")
        if target is not None and np.isfinite(target):
            hits = [k for k, loss in enumerate(history["loss"]) if loss <= target]
            if hits:
                reached = hits[0] / steps_per_epoch
        row["epochs_to_sgd_loss"] = reached


def plot_training(histories, path) -> None:
    """Two panels: full training loss against step and against training time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (by_step, by_time) = plt.subplots(1, 2, figsize=(12, 4.5))
    for history in histories:
        label = f"{history['method']} (lr {history['lr']:g})"
        (line,) = by_step.semilogy(range(len(history["loss"])), history["loss"], label=label)
        by_time.semilogy(history["time_s"], history["loss"], color=line.get_color(), label=label)
    for axes, xlabel in ((by_step, "step"), (by_time, "training time [s]")):
        axes.set_xlabel(xlabel)
        axes.set_ylabel("training loss (full set)")
        axes.grid(True, which="major", alpha=0.3)
    by_step.legend(fontsize="small")
    fig.suptitle("MLP 64-32-10 (tanh) on digits, mini-batch 32")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# -------------------------------------------------------------- command ----

def _disabled(progress):
    return True if progress is False else None


@contextlib.contextmanager
def _numba_one_thread():
    """Numba, and torch where it is loaded, on one thread (as BLAS: see the module notes)."""
    try:
        import numba
    except ImportError:
        numba = None
    torch = sys.modules.get("torch")
    previous = numba.get_num_threads() if numba is not None else None
    previous_torch = torch.get_num_threads() if torch is not None else None
    if numba is not None:
        numba.set_num_threads(1)
    if torch is not None:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if numba is not None:
            numba.set_num_threads(previous)
        if torch is not None:
            torch.set_num_threads(previous_torch)


def _columns(rows, preferred):
    columns = [c for c in preferred if any(c in row for row in rows)]
    for row in rows:
        columns += [key for key in row if key not in columns]
    return columns


def run_curvature_command(args: argparse.Namespace) -> int:
    """The ``curvature`` command; returns the exit status (130 after Ctrl-C)."""
    from .table import format_table, write_csv, write_json

    if args.epochs is not None and args.epochs < 1:
        print(f"error: --epochs must be at least 1, got {args.epochs}", file=sys.stderr)
        return 2
    if args.batch_size < 1:
        print(f"error: --batch-size must be at least 1, got {args.batch_size}", file=sys.stderr)
        return 2
    if args.optim_steps is not None and args.optim_steps < 0:
        print(f"error: --optim-steps must be >= 0, got {args.optim_steps}", file=sys.stderr)
        return 2
    if args.torch_repeats is not None and args.torch_repeats < 0:
        print(f"error: --torch-repeats must be >= 0, got {args.torch_repeats}", file=sys.stderr)
        return 2
    try:       # loaded here so that the thread limits below cover its BLAS and its threads
        importlib.import_module("torch")
    except ImportError:
        pass
    quick = args.quick
    epochs = args.epochs or (3 if quick else 20)
    progress = False if args.no_progress else None
    mfac_d = args.mfac_d if args.mfac_d is not None else (100_000 if quick else 1_000_000)
    os.makedirs(args.out, exist_ok=True)
    stem = os.path.join(args.out, "curvature")
    written = []
    interrupted = False
    load = _load()

    with blas_one_thread("sklearn.model_selection"):
        # 1. roots
        root_rows, interrupted = ([], False) if args.only_optim else run_roots(
            sizes=(32, 64) if quick else (32, 128, 256), repeats=1 if quick else 3,
            seed=args.seed, progress=progress)
        speed_rows = []
        if not interrupted and not args.only_optim:
            from ._progress import progress_bar
            from .roots_speed import run as roots_speed
            try:
                # progress_bar here and below: a heartbeat line off a terminal
                with progress_bar(total=1, desc="roots speed", disable=_disabled(progress)):
                    speed_rows = roots_speed(sizes=(64,) if quick else (256,),
                                             blocks=16 if quick else 64,
                                             repeats=2 if quick else 5, seed=args.seed)
            except KeyboardInterrupt:
                interrupted = True
        write_csv(stem + "_roots.csv", root_rows, ROOT_COLUMNS)
        write_csv(stem + "_roots_speed.csv", speed_rows, ROOT_SPEED_COLUMNS)
        written += [stem + "_roots.csv", stem + "_roots_speed.csv"]
        if root_rows:
            print(f"inverse_root, p=4, float64, A = Q diag(lambda) Q', lambda log-spaced in "
                  f"[1/cond, 1]; error against Q diag(lambda^-1/4) Q'")
            print(format_table(root_rows, ROOT_COLUMNS))
        if speed_rows:
            print()
            print(f"batched roots: {speed_rows[0]['blocks']} blocks of {speed_rows[0]['size']} "
                  "against bare numpy.linalg.eigh (target ratio <= 1.1)")
            print(format_table(speed_rows, ROOT_SPEED_COLUMNS))

        # 2. optimisers
        opt_rows, histories = [], []
        n_train, n_test = _split_sizes(args.seed)
        if not interrupted and not args.only_optim:
            with _numba_one_thread():
                opt_rows, histories, interrupted = run_optimizers(
                    epochs=epochs, batch_size=args.batch_size, seed=args.seed,
                    progress=progress)
        write_csv(stem + "_optimizers.csv", opt_rows, OPTIMIZER_COLUMNS)
        written.append(stem + "_optimizers.csv")
        if histories:
            plot_training(histories, stem + "_optimizers.png")
            written.append(stem + "_optimizers.png")
        if opt_rows:
            print()
            print(f"MLP 64-32-10 tanh on digits (train {n_train}, test {n_test}), batch "
                  f"{args.batch_size}, {epochs} epochs; lr per method: best full training "
                  "loss after one epoch over a small grid")
            print(format_table(opt_rows, OPTIMIZER_COLUMNS))

        # 2b. the same MLP through curvature.optim, on NumPy and on JAX
        interface_rows, interface_note = [], None
        optim_steps = (args.optim_steps if args.optim_steps is not None
                       else 12 if quick else n_train // args.batch_size)
        if not interrupted and optim_steps > 0:
            from .optim_interface import run_interface
            with _numba_one_thread():
                interface_rows, interface_note, interrupted = run_interface(
                    lrs={row["method"]: row["lr"] for row in opt_rows}, steps=optim_steps,
                    batch_size=args.batch_size, seed=args.seed, progress=progress)
        write_csv(stem + "_optim.csv", interface_rows, INTERFACE_COLUMNS)
        written.append(stem + "_optim.csv")
        if interface_rows:
            print()
            print("the same MLP through curvature.optim (init/update/apply_updates) and "
                  f"curvature.torch, {optim_steps} steps: per-object NumPy, interface on NumPy, interface on JAX "
                  "float64, torch optimizers in a PyTorch loop (float64); "
                  "time per step after the first (JAX compiles in the first)")
            print(format_table(interface_rows, INTERFACE_COLUMNS))
        if interface_note:
            print(interface_note, file=sys.stderr)

        # 2c. curvature.torch against the NumPy interface and torch.optim.Adam
        torch_rows = []
        torch_repeats = (args.torch_repeats if args.torch_repeats is not None
                         else 1 if quick else 5)
        if (not interrupted and optim_steps > 0 and torch_repeats > 0
                and "torch" in sys.modules):
            from ._progress import progress_bar
            from .optim_interface import compare_step_times
            try:
                with _numba_one_thread(), progress_bar(total=1, desc="torch timing",
                                                       disable=_disabled(progress)):
                    torch_rows = compare_step_times(
                        lrs={row["method"]: row["lr"] for row in opt_rows}, steps=optim_steps,
                        repeats=torch_repeats, batch_size=args.batch_size, seed=args.seed)
            except KeyboardInterrupt:
                interrupted = True
        write_csv(stem + "_torch.csv", torch_rows, TORCH_COLUMNS)
        written.append(stem + "_torch.csv")
        if torch_rows:
            print()
            print(f"curvature.torch time per step (gradient, step) against the NumPy interface "
                  f"and torch.optim.Adam on the same MLP, CPU, {torch_rows[0]['threads']} torch "
                  f"thread(s), BLAS and Numba 1; best of {torch_repeats} interleaved runs of "
                  f"{optim_steps} steps")
            print(format_table(torch_rows, TORCH_COLUMNS))

        # 3. M-FAC speed
        mfac_rows, mfac_error = [], None
        if not interrupted and mfac_d > 0 and not args.only_optim:
            from . import mfac_speed
            from ._progress import progress_bar
            try:
                with progress_bar(total=1, desc="M-FAC speed", disable=_disabled(progress)):
                    mfac_rows = mfac_speed.run(d=mfac_d, repeat=3 if quick else 5,
                                               seed=args.seed)
            except KeyboardInterrupt:
                interrupted = True
            except Exception as error:  # the module is developed separately; keep the rest
                mfac_error = f"{type(error).__name__}: {error}"
        mfac_columns = _columns(mfac_rows, DEFAULT_MFAC_COLUMNS)
        write_csv(stem + "_mfac_speed.csv", mfac_rows, mfac_columns)
        written.append(stem + "_mfac_speed.csv")
        if mfac_rows:
            print()
            print(f"M-FAC solve/update against gemv passes, d={mfac_d}")
            print(format_table(mfac_rows, mfac_columns))
        if mfac_error:
            print(f"M-FAC speed rows failed: {mfac_error}", file=sys.stderr)

        # 4. Newton family: cost tables (bench.newton writes its own CSV/JSON)
        newton_rows = []
        if not interrupted and not args.only_optim:
            from ._progress import progress_bar
            from .newton import COLUMNS as NEWTON_COLUMNS, GTOL, run_newton
            try:
                with progress_bar(total=1, desc="Newton family", disable=_disabled(progress)):
                    newton_rows = run_newton(args.out, quick=quick, progress=progress is None)
            except KeyboardInterrupt:
                interrupted = True
            if newton_rows:
                written += [stem + "_newton.csv", stem + "_newton.json"]
                print()
                print(f"Newton family to ||grad|| <= {GTOL:g}; cost = gradients + d x Hessians")
                print(format_table(newton_rows, NEWTON_COLUMNS))

    write_json(stem + ".json", {
        "quick": quick, "seed": args.seed, "epochs": epochs, "batch_size": args.batch_size,
        "load_average": load, "interrupted": interrupted,
        "roots": {"columns": list(ROOT_COLUMNS), "rows": root_rows},
        "roots_speed": {"columns": list(ROOT_SPEED_COLUMNS), "rows": speed_rows},
        "optimizers": {"columns": list(OPTIMIZER_COLUMNS), "rows": opt_rows,
                       "histories": histories},
        "optim": {"columns": list(INTERFACE_COLUMNS), "rows": interface_rows,
                  "note": interface_note},
        "torch": {"columns": list(TORCH_COLUMNS), "rows": torch_rows},
        "mfac_speed": {"columns": mfac_columns, "rows": mfac_rows, "d": mfac_d,
                       "error": mfac_error},
        "newton_rows": len(newton_rows),
    })
    written.insert(0, stem + ".json")
    if interrupted:
        print("interrupted: the rows finished so far are written", file=sys.stderr)
    print(f"load average at start: {load}")
    print("wrote " + ", ".join(written))
    return 130 if interrupted else 0


def _split_sizes(seed):
    from .optimizers import load_digits_split

    data = load_digits_split(seed)
    return len(data.y_train), len(data.y_test)


def _load():
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None
