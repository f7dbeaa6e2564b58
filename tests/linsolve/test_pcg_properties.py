"""Hypothesis: pcg over random sizes, dtypes and condition numbers."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from linsolve import pcg

from tests.problems import random_spd


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 30), log_cond=st.floats(0.0, 6.0), seed=st.integers(0, 2**16),
       dtype=st.sampled_from([np.float32, np.float64]), column=st.booleans())
def test_converged_means_true_residual_meets_tolerance(n, log_cond, seed, dtype, column):
    cond = 10.0 ** log_cond
    A = random_spd(n, cond=cond, seed=seed, dtype=dtype)
    b = np.random.default_rng(seed + 1).standard_normal(n).astype(dtype)
    rtol = 1e-10 if dtype == np.float64 else 1e-4
    result = pcg(A, b[:, None] if column else b, rtol=rtol)

    assert result.x.shape == (n,) and result.x.dtype == dtype
    assert len(result.residual_norms) == result.iterations + 1
    assert result.iterations <= 10 * n
    A64, b64, x64 = A.astype(np.float64), b.astype(np.float64), result.x.astype(np.float64)
    true = np.linalg.norm(b64 - A64 @ x64)
    eps = np.finfo(dtype).eps
    # the solver's own check ran in `dtype`: allow its rounding, no more
    slack = 4 * n * eps * (np.linalg.norm(b64) + np.linalg.norm(A64, 2) * np.linalg.norm(x64))
    if result.converged:
        assert true <= rtol * np.linalg.norm(b64) + slack
        x_dense = np.linalg.solve(A64, b64)
        error = np.linalg.norm(x64 - x_dense) / max(np.linalg.norm(x_dense), 1e-300)
        assert error <= 2 * cond * (rtol + 8 * n * eps)
    else:
        # only float32 may legitimately fail here, and it must say why
        assert dtype == np.float32
        assert result.reason in ("DIVERGED_BREAKDOWN", "DIVERGED_ITS"), result.reason
        assert np.all(np.isfinite(result.x))
