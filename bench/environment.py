"""What a speed number depends on besides the code: threads, thread pools, load, cores.

A CG iteration's time on a 2-core shared machine moves by factors with the
Numba thread count, its threading layer (``omp`` spins waiting for work
unless ``OMP_WAIT_POLICY=passive``; ``workqueue`` does not), the BLAS
thread count and the other tenants' load. Each speed result records them
beside the rows, so two tables can be told apart afterwards.
"""

from __future__ import annotations

import os

ENVIRONMENT_VARIABLES = ("NUMBA_NUM_THREADS", "NUMBA_THREADING_LAYER", "OMP_NUM_THREADS",
                         "OMP_WAIT_POLICY")
"""Environment variables recorded (``None`` when unset)."""


def loadavg() -> list[float] | None:
    """``os.getloadavg()`` as a list (1, 5, 15 minutes), or None where the OS has none.

    Examples
    --------
    >>> load = loadavg()
    >>> load is None or (len(load) == 3 and min(load) >= 0)
    True
    """
    try:
        return [float(value) for value in os.getloadavg()]
    except OSError:  # not available on this platform
        return None


def _plain(value):
    return value if value is None or isinstance(value, (str, int, float)) else str(value)


def _threading_layer() -> str | None:
    import numba

    try:
        return numba.threading_layer()
    except ValueError:  # no parallel kernel has run in this process yet
        return None


def environment(contention: int = 0, loadavg_start: list[float] | None = None,
                loadavg_end: list[float] | None = None) -> dict:
    """The run's environment as a JSON-ready dict.

    Call it after the measurements, inside the thread limits they ran
    under: Numba reports its threading layer only once a parallel kernel has
    run, and threadpoolctl reports the BLAS thread counts in force now.

    Parameters
    ----------
    contention : int
        Busy processes running beside the measurement.
    loadavg_start, loadavg_end : list of float, optional
        :func:`loadavg` before the first and after the last timing.

    Returns
    -------
    dict
        ``numba_num_threads``, ``numba_max_threads``, ``numba_threading_layer``
        (None if no parallel kernel ran), ``env`` (the
        :data:`ENVIRONMENT_VARIABLES`), ``contention``, ``loadavg_start``,
        ``loadavg_end``, ``threadpools`` (one dict per library from
        ``threadpoolctl.threadpool_info()``: ``user_api``, ``internal_api``,
        ``prefix``, ``version``, ``num_threads``, ``architecture``),
        ``cpu_count`` and ``cpus_available`` (this process's affinity).

    Examples
    --------
    >>> env = environment(contention=1)
    >>> env["contention"], env["cpu_count"] == os.cpu_count()
    (1, True)
    >>> "OMP_WAIT_POLICY" in env["env"], env["numba_num_threads"] >= 1
    (True, True)
    """
    import numba
    from threadpoolctl import threadpool_info

    # some controllers report odd values (a function as "version" was seen):
    # anything but plain scalars is recorded as its string
    pools = [{key: _plain(pool.get(key)) for key in ("user_api", "internal_api", "prefix",
                                                     "version", "num_threads", "architecture")}
             for pool in threadpool_info()]
    affinity = getattr(os, "sched_getaffinity", None)
    from cext import threads

    return {
        "numba_num_threads": int(numba.get_num_threads()),
        # the kernels' thread policy (cext.threads): ceiling, and the cores
        # other processes were seen using, which it subtracts
        "kernel_thread_ceiling": threads.get_num_threads(),
        "busy_cores_seen": round(threads.busy_cores(), 2),
        "numba_max_threads": int(numba.config.NUMBA_NUM_THREADS),
        "numba_threading_layer": _threading_layer(),
        "env": {name: os.environ.get(name) for name in ENVIRONMENT_VARIABLES},
        "contention": int(contention),
        "loadavg_start": loadavg_start,
        "loadavg_end": loadavg_end,
        "threadpools": pools,
        "cpu_count": os.cpu_count(),
        "cpus_available": len(affinity(0)) if affinity else os.cpu_count(),
    }


def environment_line(env: dict) -> str:
    """One line summing up :func:`environment` for printing under a table.

    Examples
    --------
    >>> line = environment_line({"numba_num_threads": 2, "numba_threading_layer": "omp",
    ...     "env": {"OMP_WAIT_POLICY": "passive"}, "contention": 1, "cpu_count": 2,
    ...     "cpus_available": 2, "loadavg_start": [0.5, 0, 0], "loadavg_end": [1.25, 0, 0],
    ...     "threadpools": [{"user_api": "blas", "internal_api": "openblas",
    ...                      "num_threads": 1, "architecture": "Haswell"}]})
    >>> print(line)  # doctest: +NORMALIZE_WHITESPACE
    environment: 2/2 CPUs, numba 2 threads (omp), NUMBA_NUM_THREADS=unset,
    OMP_WAIT_POLICY=passive, 1 busy process, load 0.50 -> 1.25,
    blas: openblas 1 thread (Haswell)
    """
    variables = env.get("env", {})
    load = [env.get("loadavg_start"), env.get("loadavg_end")]
    load_text = " -> ".join("?" if value is None else f"{value[0]:.2f}" for value in load)
    pools = ", ".join(
        f"{pool.get('internal_api')} {pool.get('num_threads')} "
        f"thread{'' if pool.get('num_threads') == 1 else 's'} ({pool.get('architecture')})"
        for pool in env.get("threadpools", []) if pool.get("user_api") == "blas") or "none loaded"
    busy = env.get("contention", 0)
    policy = (f"kernel threads <= {env['kernel_thread_ceiling']} less busy cores "
              f"(seen {env.get('busy_cores_seen')}), " if "kernel_thread_ceiling" in env else "")
    return (f"environment: {env.get('cpus_available')}/{env.get('cpu_count')} CPUs, "
            f"numba {env.get('numba_num_threads')} threads "
            f"({env.get('numba_threading_layer') or 'layer not chosen yet'}), {policy}"
            f"NUMBA_NUM_THREADS={variables.get('NUMBA_NUM_THREADS') or 'unset'}, "
            f"OMP_WAIT_POLICY={variables.get('OMP_WAIT_POLICY') or 'unset'}, "
            f"{busy} busy process{'' if busy == 1 else 'es'}, load {load_text}, blas: {pools}")
