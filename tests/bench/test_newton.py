"""``bench.newton``: the quick cost table runs, has its columns, and its numbers add up."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest

from bench import newton_problems as problems
from bench.newton import COLUMNS, gradient_descent, run_newton


@pytest.fixture(scope="module")
def quick_rows(tmp_path_factory):
    out = tmp_path_factory.mktemp("newton")
    return out, run_newton(out, quick=True, progress=False)


def test_quick_table_files_and_columns(quick_rows):
    out, rows = quick_rows
    with open(out / "curvature_newton.csv", newline="") as handle:
        reader = csv.DictReader(handle)
        assert reader.fieldnames == list(COLUMNS)
        assert len(list(reader)) == len(rows)
    assert (out / "curvature_newton.json").stat().st_size > 0
    methods = {row["method"] for row in rows}
    for name in ("newton", "damped_aicn", "damped_root", "damped_universal", "damped_greedy",
                 "gradnorm_exact", "gradnorm_gauss_newton", "gradient_descent",
                 "scipy_newton_cg", "scipy_trust_ncg"):
        assert name in methods
    assert any(m.startswith("lazy_period_") for m in methods)


def test_quick_table_numbers(quick_rows):
    _, rows = quick_rows
    far = {row["method"]: row for row in rows if row["problem"] == "breast_cancer_far"}
    assert not far["newton"]["converged"]
    for name in ("damped_aicn", "damped_root"):
        assert far[name]["converged"] and far[name]["iterations"] <= 20
    d = far["newton"]["d"]
    for row in rows:
        if not row["method"].startswith("scipy"):
            assert row["cost"] == row["n_grad"] + row["d"] * row["n_hess"]
        if row["converged"]:
            assert row["grad_norm"] <= 1e-8 and abs(row["f_gap"]) <= 1e-10
    lazy = sorted((r for r in rows if r["problem"] == "breast_cancer_far"
                   and r["method"].startswith("lazy_period_")),
                  key=lambda r: int(r["method"].rsplit("_", 1)[1]))
    assert lazy[-1]["method"] == f"lazy_period_{d}" and lazy[-1]["cost"] < lazy[0]["cost"]


def test_problem_derivatives_match_finite_differences():
    rng = np.random.default_rng(0)
    for p in (problems.synthetic_ill_conditioned(m=30, d=5), problems.log_sum_exp(m=20, d=5),
              problems.rosenbrock(), problems.polytope_feasibility(m=20, d=5)):
        x = p.x0 * 0.1 + rng.standard_normal(p.dim) * 0.3
        v = rng.standard_normal(p.dim)
        eps = 1e-6
        fd_grad = (p.fun(x + eps * v) - p.fun(x - eps * v)) / (2 * eps)
        assert fd_grad == pytest.approx(p.grad(x) @ v, rel=1e-5, abs=1e-7)
        fd_hess = (p.grad(x + eps * v) - p.grad(x - eps * v)) / (2 * eps)
        np.testing.assert_allclose(p.hess(x) @ v, fd_hess, rtol=1e-5, atol=1e-6)
        if p.hvp is not None:
            np.testing.assert_allclose(p.hvp(x, v), p.hess(x) @ v, rtol=1e-12, atol=1e-12)


def test_gradient_descent_converges_on_log_sum_exp():
    p = problems.log_sum_exp(m=50, d=10)
    r = gradient_descent(p.fun, p.grad, p.x0, gtol=1e-6)
    assert r.converged and math.isfinite(r.fun)
