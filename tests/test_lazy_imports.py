"""Importing the packages and solving on NumPy never imports the optional heavy libraries.

Run in a fresh interpreter: the test process itself may already hold them.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

OPTIONAL = ("cupy", "cupyx", "mpi4py", "pyamg", "sklearn", "torch")

_SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    import cext, cext.cupy, linsolve, curvature
    import scipy.sparse as sp

    n = 30
    A = sp.diags([-1.0, 2.0, -1.0], [-1, 0, 1], shape=(n, n), format="csr")
    b = np.ones(n)
    result = linsolve.pcg(A, b, rtol=1e-10)
    dense = linsolve.pcg(A.toarray(), b, rtol=1e-10)
    assert result.converged and dense.converged, (result, dense)
    loaded = sorted(name for name in sys.modules
                    if name.split(".")[0] in {optional})
    print(json.dumps(loaded))
""").replace("{optional}", repr(set(OPTIONAL)))


def test_no_optional_backend_imported_by_import_or_numpy_solve():
    completed = subprocess.run([sys.executable, "-c", _SCRIPT], capture_output=True, text=True,
                               timeout=300)
    assert completed.returncode == 0, completed.stderr
    loaded = json.loads(completed.stdout.strip().splitlines()[-1])
    assert loaded == [], f"imported eagerly: {loaded}"


def test_cupy_kernel_sources_readable_without_cupy():
    script = ("import sys; from cext.cupy import spmv, dia, blas1; "
              "assert all(isinstance(m.SOURCE, str) for m in (spmv, dia, blas1)); "
              "assert 'cupy' not in sys.modules; print('ok')")
    completed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                               timeout=120)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "ok"
