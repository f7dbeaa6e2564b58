"""Command line: ``python -m bench [linear|speed] ...``.

``python -m bench`` with no sub-command is the main job: 2-D Poisson
(N = 256, n = 65536), every method, rtol 1e-8, a convergence table printed
and written to ``results/`` as CSV, JSON and PNG. It takes the options of
``linear``.

``python -m bench linear [--problem NAME | --matrix FILE.mtx] [--size N |
--sizes N,N,...] [--rhs K] [--methods a,b,c] [--rtol RTOL] [--out DIR]``
does the same on a gallery problem (:mod:`bench.problems`) or a Matrix
Market file. ``--sizes`` sweeps the size and shows each method's iteration
counts side by side (``--problem stokes`` alone sweeps mesh levels 3, 4, 5
with the block-diagonal MINRES: mesh independence); ``--rhs K`` solves K
right-hand sides, batched and block CG against K separate calls
(:mod:`bench.many_rhs`). Time to solution (set-up plus solve) is the
table's headline column.

``python -m bench speed [--rows kernels,family,rhs,solution] [--size 1000]
[--repeat 7] [--iterations 100] [--matrices poisson2d,p1tri,p1tet,p2tet,elasticity3d]
[--refine NAME=LEVEL,...] [--contention K]`` times SpMV, CG iterations and
SOR sweeps against scipy and pyamg on 2-D Poisson and finite-element
matrices (``kernels``), MINRES, BiCGStab and GMRES against scipy
(``family``), k right-hand sides (``rhs``) and time to solution with the
set-up (``solution``), each row a ratio beside its target, optionally
beside K busy processes (:mod:`bench.speed`).

``python -m bench omega [--experiment shifted|heat|all] [--steps T]
[--variance high|low]`` runs the Learning-to-Relax sequences
(:mod:`bench.omega`); ``--experiment wall [--size N]`` times learned-omega SOR
against pyamg's ``sor`` at the best fixed omega over a sequence.

``python -m bench curvature [--quick]`` tabulates inverse roots, trains a
small MLP on scikit-learn's digits with SGD, Adam, Shampoo, SOAP and M-FAC,
and times M-FAC against bare BLAS passes (:mod:`bench.curvature_bench`).

``python -m bench sketch`` solves the Hock-Schittkowski equality problems
and friends by sketched Newton against scipy.optimize (:mod:`bench.sketch`).

``python -m bench scaling [--ranks 1,2,4] [--modes strong,weak]`` times
distributed CG on 1, 2 and 4 ranks: weak and strong scaling and an estimate
for many nodes (:mod:`bench.scaling`).

``python -m bench --help`` lists the commands; ``python -m bench COMMAND
--help`` shows a command's options.

Errors in the input (unknown problem or method, unreadable or non-square
matrix file, one whose header declares more than ``--max-nnz`` entries,
``--rtol`` not finite and positive, negative ``--maxiter``, an ``--out``
folder that cannot be written) print one line starting ``error:`` and exit
with status 2, before anything is computed;
a missing optional package (tqdm, matplotlib, scikit-learn, scikit-fem)
is such an error too, naming the extra to install. Ctrl-C or SIGTERM writes
the rows finished so far and exits with status 130. Progress goes to stderr:
a bar on a terminal, a plain line every few seconds otherwise
(:mod:`bench._progress`).
"""

from __future__ import annotations

import argparse
import math
import os
import re
import sys

from ._progress import MissingExtra, require, sigterm_as_interrupt
from ._threads import blas_one_thread
from .methods import METHODS, parse_methods
from .problems import PROBLEMS

DEFAULT_PROBLEM = "poisson2d"
DEFAULT_SIZE = 256
STOKES_LEVELS = (3, 4, 5)
"""Mesh levels of ``linear --problem stokes`` without a size (n = 2 210 to 36 482)."""
STOKES_SWEEP_METHODS = "minres+blockdiag,scipy-minres+blockdiag"
"""Its methods when none are named: the preconditioned MINRES whose counts are
mesh independent, ours and scipy's (the unpreconditioned methods need
thousands of iterations at level 5)."""
DEFAULT_RTOL = 1e-8
# ~1.2 GB as float64 CSR: a typo'd or hostile header must not make us read more
DEFAULT_MAX_NNZ = 50_000_000
# One line each for ``python -m bench --help``; the full parsers are built
# only for the command that runs (their modules import heavy packages).
COMMAND_HELP = {
    "linear": "Krylov methods and their peers on one problem: table, plot (default)",
    "speed": "SpMV, CG, SOR, Krylov family, many RHS, set-up: ratios vs scipy, pyamg",
    "omega": "SOR's omega learned online over sequences of systems",
    "curvature": "inverse roots, MLP optimisers, M-FAC speed, Newton",
    "sketch": "sketched Newton on Hock-Schittkowski vs scipy.optimize",
    "scaling": "distributed CG on 1, 2, 4 MPI ranks (strong, weak)",
    "gpu": "CuPy SpMV, pcg, roots, M-FAC, SOR vs cupyx (needs a CUDA device)",
    "family": "MINRES, GMRES, BiCGStab and batched CG per iteration vs scipy",
}
SUBCOMMANDS = tuple(COMMAND_HELP)
# Optional packages (the [bench] extra) each command imports; checked before
# it starts so a missing one is one error line, not a traceback minutes in.
# skfem is checked by `speed` itself (only its finite-element matrices need it),
# mpi4py/mpiexec by `scaling`; pyamg is optional everywhere (its rows say SKIPPED).
REQUIRED = {
    "linear": ("tqdm", "matplotlib"),
    "speed": ("tqdm",),
    "omega": ("tqdm", "matplotlib"),
    "curvature": ("tqdm", "matplotlib", "sklearn"),
    "sketch": ("tqdm", "sklearn"),
    "scaling": ("tqdm",),  # its progress bar on a terminal
    "gpu": (),  # CuPy and the device: checked by the command itself
    "family": (),  # skfem for the batched rows, checked where they build their matrices
}

# Sub-commands living in their own module: (module, parser factory, runner),
# imported only when asked for (sklearn, mpi4py and friends load lazily).
_LAZY_COMMANDS = {
    "curvature": ("curvature_bench", "curvature_parser", "run_curvature_command"),
    "sketch": ("sketch", "sketch_parser", "run_sketch_command"),
    "scaling": ("scaling", "scaling_parser", "run_scaling_command"),
    "gpu": ("gpu", "gpu_parser", "run_gpu_command"),
    "family": ("family_speed", "family_parser", "run_family_command"),
}


class InputError(ValueError):
    """Bad command-line input; reported as ``error: ...`` with exit status 2."""


def _linear_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description="Convergence table of Krylov methods (ours and scipy's, pyamg's) "
                               "on one problem: SPD, symmetric indefinite or non-symmetric.")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--problem", default=DEFAULT_PROBLEM,
                        help=f"gallery problem: {', '.join(PROBLEMS)} (default {DEFAULT_PROBLEM})")
    source.add_argument("--matrix", metavar="FILE.mtx",
                        help="Matrix Market file with a square SPD matrix")
    sizes = parser.add_mutually_exclusive_group()
    sizes.add_argument("--size", type=int, default=None,
                       help=f"grid points per dimension, the mesh refinement level for stokes "
                            f"(default {DEFAULT_SIZE}; stokes: the sweep "
                            f"{','.join(map(str, STOKES_LEVELS))})")
    sizes.add_argument("--sizes", metavar="N,N,...",
                       help="a size sweep: one table over all sizes and each method's iteration "
                            "counts side by side, judged for mesh independence (within 20%%)")
    parser.add_argument("--epsilon", type=float, default=1e-2,
                        help="anisotropy of anisotropic2d (default 1e-2)")
    parser.add_argument("--peclet", type=float, default=None,
                        help="cell Peclet number of convdiff2d (default 1)")
    parser.add_argument("--shift", type=float, default=None,
                        help="k^2 of shifted_laplacian (default 150)")
    parser.add_argument("--methods", help=f"comma-separated subset of {', '.join(METHODS)} "
                                          "(default: the methods that apply to the problem)")
    parser.add_argument("--rtol", type=float, default=DEFAULT_RTOL,
                        help=f"relative tolerance (default {DEFAULT_RTOL:g})")
    parser.add_argument("--maxiter", type=int, default=None,
                        help="iteration limit (default min(10 n, 10000))")
    parser.add_argument("--max-nnz", type=int, default=DEFAULT_MAX_NNZ,
                        help="largest --matrix file read, in entries from its header "
                             f"(default {DEFAULT_MAX_NNZ:_})")
    parser.add_argument("--rhs", type=int, default=None, metavar="K",
                        help="K right-hand sides: batched pcg and block CG against K separate "
                             "pcg and scipy cg calls, time to all K solutions")
    parser.add_argument("--seed", type=int, default=0, help="seed of the right-hand side")
    parser.add_argument("--out", default="results", help="output folder (default results/)")
    parser.add_argument("--name", help="stem of the output files (default from the problem)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def _speed_parser(prog: str) -> argparse.ArgumentParser:
    from .fem import DEFAULT_REFINE
    from .speed import MATRICES, MFAC_D, ROW_GROUPS

    parser = argparse.ArgumentParser(
        prog=prog, description="SpMV and CG time per iteration: ours against scipy; "
        "SOR sweeps against pyamg; M-FAC against BLAS; the Krylov family against scipy; "
        "k right-hand sides; time to solution with set-up. Ratios with their targets.")
    parser.add_argument("--rows", default=",".join(ROW_GROUPS), metavar="GROUP,...",
                        help="row groups, a subset of %(default)s: kernels (SpMV, CG, "
                        "preconditioned CG, SOR on --matrices; M-FAC), family (MINRES, "
                        "BiCGStab, GMRES vs scipy), rhs (batched and block CG, k=8), "
                        "solution (set-up and whole solves); the last three use their own "
                        "matrices")
    parser.add_argument("--size", type=int, default=1000, help="2-D Poisson grid N (n = N^2)")
    parser.add_argument("--matrices", default=",".join(MATRICES),
                        help="matrices of the kernels rows, a subset of %(default)s")
    parser.add_argument("--refine", default="", metavar="NAME=LEVEL,...",
                        help="refinement levels of the finite-element matrices (default "
                        + ",".join(f"{k}={v}" for k, v in DEFAULT_REFINE.items()) + ")")
    parser.add_argument("--contention", type=int, default=0, metavar="K",
                        help="busy processes running beside the measurement (default 0)")
    parser.add_argument("--repeat", type=int, default=7, help="interleaved samples per timing")
    parser.add_argument("--iterations", type=int, default=100, help="CG iterations per call")
    parser.add_argument("--stream-n", type=int, default=10_000_000,
                        help="array length of the bandwidth measurement")
    parser.add_argument("--mfac-d", type=float, default=MFAC_D,
                        help="gradient length of the M-FAC rows, a window of d x 256 float32 "
                        "(default %(default)g; 0 leaves them out)")
    parser.add_argument("--out", default="results", help="output folder (default results/)")
    parser.add_argument("--name", default="speed", help="stem of the output files")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def _parse_refine(text: str) -> dict[str, int]:
    """``p1tri=3,p1tet=2`` -> ``{"p1tri": 3, "p1tet": 2}`` (raises InputError)."""
    from .fem import FEM_MATRICES, MIN_REFINE
    from .speed import MATRIX_ALIASES

    levels = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, level = item.partition("=")
        name = MATRIX_ALIASES.get(name.strip(), name.strip())
        if (name not in FEM_MATRICES or not level.strip().isdecimal()
                or int(level) < MIN_REFINE[name]):
            raise InputError(f"--refine takes NAME=LEVEL with NAME one of "
                             f"{', '.join(FEM_MATRICES)} and LEVEL >= "
                             f"{MIN_REFINE.get(name, 1)}, got {item!r}")
        levels[name] = int(level)
    return levels


def _omega_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description="Omega learned online across a sequence of linear systems.")
    parser.add_argument("--experiment", choices=("shifted", "heat", "all", "wall"), default="all",
                        help="the Learning-to-Relax sequences (all: shifted and heat), or wall: "
                             "learned-omega SOR against pyamg's sor at the best fixed omega "
                             "in wall time")
    parser.add_argument("--steps", type=int, default=None,
                        help="systems per sequence (default 5000 shifted, 1000 heat, 100 wall)")
    parser.add_argument("--size", type=int, default=256,
                        help="grid side N of the wall experiment (default 256)")
    parser.add_argument("--variance", choices=("high", "low", "both"), default="both",
                        help="c_t distribution of the shifted sequence")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="results", help="output folder (default results/)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def run_omega_command(args: argparse.Namespace) -> int:
    """The ``omega`` command."""
    from ._progress import progress_bar
    from .omega import SUMMARY_COLUMNS, plot_cumulative, run_heat, run_shifted
    from .table import format_table, write_csv, write_json

    if args.steps is not None and args.steps < 1:
        raise InputError(f"--steps must be at least 1, got {args.steps}")
    if args.experiment == "wall":
        return _omega_wall(args)
    jobs = []
    if args.experiment in ("shifted", "all"):
        for variance in (("high", "low") if args.variance == "both" else (args.variance,)):
            jobs.append((f"shifted-{variance}", args.steps or 5000,
                         lambda T, p, v=variance: run_shifted(T, v, seed=args.seed, progress=p)))
    if args.experiment in ("heat", "all"):
        jobs.append(("heat", args.steps or 1000,
                     lambda T, p: run_heat(T, seed=args.seed, progress=p)))
    results = []
    for name, steps, job in jobs:
        with progress_bar(total=steps, desc=name, disable=args.no_progress) as bar:
            result = job(steps, lambda t: bar.update(1))
        results.append(result)
        if result.interrupted:
            break
    rows = [row for result in results for row in result.summary()]
    os.makedirs(args.out, exist_ok=True)
    stem = os.path.join(args.out, "omega")
    write_csv(stem + ".csv", rows, SUMMARY_COLUMNS)
    write_json(stem + ".json", {"columns": list(SUMMARY_COLUMNS), "rows": rows,
                                "interrupted": any(r.interrupted for r in results)})
    plot_cumulative(results, stem + ".png")
    print(format_table(rows, SUMMARY_COLUMNS))
    print(f"wrote {stem}.csv, {stem}.json, {stem}.png")
    return 130 if any(r.interrupted for r in results) else 0


def _omega_wall(args: argparse.Namespace) -> int:
    """``omega --experiment wall``: the sequence's wall time against pyamg."""
    from ._progress import progress_bar
    from .omega import WALL_COLUMNS, run_wall
    from .table import format_table, write_csv, write_json

    if args.size < 3:
        raise InputError(f"--size must be at least 3, got {args.size}")
    steps = args.steps or 100
    with progress_bar(total=steps, desc="wall", disable=args.no_progress) as bar:
        rows = run_wall(steps, args.size, args.seed, progress=lambda t: bar.update(1))
    os.makedirs(args.out, exist_ok=True)
    stem = os.path.join(args.out, "omega_wall")
    write_csv(stem + ".csv", rows, WALL_COLUMNS)
    write_json(stem + ".json", {"columns": list(WALL_COLUMNS), "rows": rows, "size": args.size,
                                "steps": steps, "seed": args.seed})
    print(format_table(rows, WALL_COLUMNS))
    print(f"wrote {stem}.csv, {stem}.json")
    return 0


def _stem(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "results"


def _check_writable_folder(option: str, path: str) -> None:
    """ValueError naming ``option`` unless the folder ``path`` exists writable or can be made.

    Checked before the solves (which may take minutes), creating nothing:
    the nearest existing ancestor must be a writable folder.
    """
    existing = os.path.abspath(path)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise ValueError(f"{option} {path!r} cannot be a folder: {existing!r} is a file; pass "
                         "a writable folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"{option} {path!r} is not writable ({existing!r} is read-only); pass "
                         "a writable folder")


def _parse_sizes(args: argparse.Namespace) -> list[int]:
    """The sizes to run: ``--sizes``, ``--size``, or the default (a sweep for stokes)."""
    if args.sizes is not None:
        try:
            sizes = [int(item) for item in args.sizes.split(",") if item.strip()]
        except ValueError:
            sizes = []
        if not sizes or len(set(sizes)) != len(sizes):
            raise ValueError(f"--sizes takes distinct whole numbers separated by commas, e.g. "
                             f"3,4,5; got {args.sizes!r}")
    elif args.size is not None:
        sizes = [args.size]
    else:
        sizes = list(STOKES_LEVELS) if args.problem == "stokes" else [DEFAULT_SIZE]
    for size in sizes:
        if size < 1:
            raise ValueError(f"--size must be at least 1, got {size}")
    return sizes


def run_linear(args: argparse.Namespace) -> int:
    """The ``linear`` command (and the no-argument main job)."""
    from .convergence import print_convergence, run_convergence, save_convergence, warn_if_asymmetric
    from .problems import load_matrix, make_problem

    try:
        # the cheap checks first: nothing is read or built for a bad option
        if args.rhs is not None:
            from .many_rhs import RHS_METHODS, parse_rhs_methods, rhs_problem

            if args.rhs < 1:
                raise ValueError(f"--rhs must be at least 1, got {args.rhs}")
            methods = parse_rhs_methods(args.methods)
        else:
            methods = parse_methods(args.methods) if args.methods else None
        if not (math.isfinite(args.rtol) and args.rtol > 0):
            raise ValueError(f"--rtol must be a finite number > 0, got {args.rtol}")
        if args.maxiter is not None and args.maxiter < 0:
            raise ValueError(f"--maxiter must be >= 0, got {args.maxiter}")
        if args.max_nnz < 1:
            raise ValueError(f"--max-nnz must be >= 1, got {args.max_nnz}")
        if args.matrix is not None:
            if args.sizes is not None:
                raise ValueError("--sizes sweeps a gallery problem; a --matrix file has one size")
            problems = [load_matrix(args.matrix, seed=args.seed, max_nnz=args.max_nnz)]
        else:
            sizes = _parse_sizes(args)
            options = {name: value for name, value in (("peclet", args.peclet),
                                                       ("shift", args.shift)) if value is not None}
            problems = [make_problem(args.problem, size, seed=args.seed, epsilon=args.epsilon,
                                     **options) for size in sizes]
            if methods is None and args.problem == "stokes" and len(problems) > 1:
                methods = parse_methods(STOKES_SWEEP_METHODS)
        if methods is None:
            methods = parse_methods(None, getattr(problems[0], "kind", "spd"))
        if args.rhs is not None:
            problems = [rhs_problem(problem, args.rhs, args.seed) for problem in problems]
    except (ValueError, ImportError) as error:
        raise InputError(str(error)) from error
    problem = problems[0]
    warn_if_asymmetric(problem)
    runners = RHS_METHODS if args.rhs is not None else None
    record = run_convergence(problems, methods, args.rtol, args.maxiter,
                             progress=False if args.no_progress else None, runners=runners)
    # a file keeps its own stem; a gallery problem gets its size(s) in the name
    base = problem.name.partition(" (k=")[0]
    if args.matrix:
        default_name = base
    elif len(problems) > 1:
        default_name = f"{base}_n{'-'.join(str(p.n) for p in problems)}"
    else:
        default_name = f"{base}_n{problem.n}"
    if args.rhs is not None and not args.matrix:
        default_name += f"_rhs{args.rhs}"
    name = _stem(args.name or default_name)
    meta = {"problem": base, "source": args.matrix or "gallery"}
    if args.rhs is not None:
        meta["rhs"] = args.rhs
    paths = save_convergence(record, args.out, name, args.rtol, meta=meta)
    print_convergence(record)
    print("wrote " + ", ".join(paths[suffix] for suffix in ("csv", "json", "png")))
    return 130 if record.interrupted else 0


def run_speed_command(args: argparse.Namespace) -> int:
    """The ``speed`` command."""
    from .fem import FEM_MATRICES
    from .speed import SPEED_COLUMNS, parse_groups, parse_matrices, run_speed, summary_lines
    from .table import format_table, write_csv, write_json

    if args.size < 2 or args.repeat < 1 or args.iterations < 1 or args.stream_n < 1:
        raise InputError("--size must be >= 2 and --repeat, --iterations, --stream-n >= 1")
    if args.contention < 0:
        raise InputError(f"--contention must be >= 0, got {args.contention}")
    if not (args.mfac_d == 0 or 64 <= args.mfac_d <= 1e9) or args.mfac_d != int(args.mfac_d):
        raise InputError(f"--mfac-d must be 0 or a whole number from 64 to 1e9, "
                         f"got {args.mfac_d:g}")
    try:
        groups = parse_groups(args.rows)
        matrices = parse_matrices(args.matrices)
        refine = _parse_refine(args.refine)
        # every group beyond the kernels rows builds scikit-fem matrices
        if any(name in FEM_MATRICES for name in matrices) or set(groups) - {"kernels"}:
            import skfem  # noqa: F401  (fail here, not after minutes of measuring)
    except ImportError as error:
        raise InputError(f"skfem is not installed ({error}); pip install "
                         "'curvature-linsolve[bench]' or pass --rows kernels --matrices poisson2d"
                         ) from error
    except ValueError as error:
        raise InputError(str(error)) from error
    record = run_speed(args.size, args.repeat, args.iterations, args.stream_n,
                       progress=False if args.no_progress else None, matrices=matrices,
                       refine=refine, contention=args.contention, mfac_d=int(args.mfac_d),
                       groups=groups)
    os.makedirs(args.out, exist_ok=True)
    stem = os.path.join(args.out, _stem(args.name))
    write_csv(stem + ".csv", record.rows, SPEED_COLUMNS)
    write_json(stem + ".json", {"size": args.size, "repeat": args.repeat, "rows_groups": groups,
                                "mfac_d": int(args.mfac_d),
                                "iterations": args.iterations, "contention": args.contention,
                                "matrices": record.matrices, "bandwidth": record.bandwidth,
                                "environment": record.environment,
                                "interrupted": record.interrupted, "columns": list(SPEED_COLUMNS),
                                "rows": record.rows})
    from .fem import FEM_MATRICES as refined

    sizes = ", ".join(f"{m['name']} {'refine' if m['name'] in refined else 'N'}={m['size']} "
                      f"(n={m['n']})" for m in record.matrices)
    busy = (f"{args.contention} busy process{'' if args.contention == 1 else 'es'}"
            if args.contention else "quiet")
    print(f"{sizes}; median of {args.repeat} interleaved samples, {busy}")
    print(format_table(record.rows, SPEED_COLUMNS))
    for line in summary_lines(record):
        print(line)
    print(f"wrote {stem}.csv, {stem}.json")
    return 130 if record.interrupted else 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m bench``; returns the exit status.

    Parameters
    ----------
    argv : list of str, optional
        Arguments without the program name; default ``sys.argv[1:]``.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    with blas_one_thread():
        return _dispatch(argv)


def top_parser() -> argparse.ArgumentParser:
    """``python -m bench``: the default job's options (those of ``linear``) and the commands.

    The sub-parsers listed here only name the commands (one help line
    each); :func:`_dispatch` hands a command's arguments to its own parser,
    built when the command runs, so ``--help`` of one command does not
    import the packages of the others.
    """
    parser = _linear_parser("python -m bench")
    parser.description = ("Benchmarks of linsolve and curvature. With no COMMAND the default job "
                          "runs: the linear table on 2-D Poisson (N = 256), taking the options "
                          "below.")
    parser.epilog = "python -m bench COMMAND --help shows the options of COMMAND."
    commands = parser.add_subparsers(dest="command", title="commands", metavar="COMMAND")
    for name, line in COMMAND_HELP.items():
        commands.add_parser(name, help=line, add_help=False)
    return parser


def _command_parser(command: str) -> argparse.ArgumentParser:
    prog = f"python -m bench {command}"
    if command in _LAZY_COMMANDS:
        import importlib

        module_name, parser_name, _ = _LAZY_COMMANDS[command]
        module = importlib.import_module(f".{module_name}", __package__)
        return getattr(module, parser_name)(prog)
    return {"linear": _linear_parser, "speed": _speed_parser, "omega": _omega_parser}[command](prog)


def _runner(command: str):
    if command in _LAZY_COMMANDS:
        import importlib

        module_name, _, runner_name = _LAZY_COMMANDS[command]
        return getattr(importlib.import_module(f".{module_name}", __package__), runner_name)
    return {"linear": run_linear, "speed": run_speed_command, "omega": run_omega_command}[command]


def _dispatch(argv: list[str]) -> int:
    try:
        if argv and argv[0] in SUBCOMMANDS:
            command = argv[0]
            args = _command_parser(command).parse_args(argv[1:])
        elif argv and not argv[0].startswith("-"):
            raise InputError(f"unknown command {argv[0]!r}; use one of {', '.join(SUBCOMMANDS)} "
                             "or no command for the default Poisson table")
        else:
            command = "linear"
            args = top_parser().parse_args(argv)
            if args.command is not None:  # e.g. `--size 8 speed`: options belong after it
                raise InputError(f"put the command first: python -m bench {args.command} ...")
        if getattr(args, "out", None) is not None:
            # every command writes there: refuse before minutes of measuring
            try:
                _check_writable_folder("--out", args.out)
            except ValueError as error:
                raise InputError(str(error)) from error
        require(*REQUIRED[command])
        with sigterm_as_interrupt():
            return _runner(command)(args)
    except (InputError, MissingExtra) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        # Ctrl-C or SIGTERM outside a runner's own handling (imports, writing
        # the files): no traceback, the same status as a handled interrupt
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
