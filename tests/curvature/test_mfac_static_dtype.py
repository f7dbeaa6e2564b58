"""MFACStatic.inverse_diagonal in the window's dtype, not promoted to float64."""

from __future__ import annotations

import array_api_strict
import numpy as np
import pytest
from array_api_compat import array_namespace

from curvature.mfac.static import MFACStatic
from tests.problems import to_numpy

NAMESPACES = [pytest.param(np, id="numpy"), pytest.param(array_api_strict, id="strict")]
U32 = float(np.finfo(np.float32).eps)
U64 = float(np.finfo(np.float64).eps)


@pytest.mark.parametrize("module", NAMESPACES)
@pytest.mark.parametrize("dtype_name", ["float32", "float64"])
def test_inverse_diagonal_keeps_the_window_dtype(module, dtype_name):
    xp = array_namespace(module.asarray([1.0]))
    rng = np.random.default_rng(0)
    m, d, damping = 8, 40, 1e-2
    G = rng.standard_normal((m, d)).astype(dtype_name)
    static = MFACStatic(xp.asarray(G), damping)
    diagonal = static.inverse_diagonal()
    assert diagonal.dtype == getattr(xp, dtype_name) == static.dtype
    # Reference: the float64 inverse of the same (exactly representable) data.
    G64 = G.astype(np.float64)
    F = damping * np.eye(d) + G64.T @ G64 / m
    ref = np.diag(np.linalg.inv(F))
    # one rounding to the window's dtype, on top of float64's u * cond(F)
    u = U32 if dtype_name == "float32" else U64
    bound = u * np.abs(ref) + 10 * d * U64 * np.linalg.cond(F) * np.abs(ref).max()
    assert np.all(np.abs(to_numpy(diagonal).astype(np.float64) - ref) <= bound)
