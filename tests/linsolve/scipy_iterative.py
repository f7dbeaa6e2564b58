"""scipy's own iterative-solver tests, imported from the installed scipy at test time, never copied.

``scipy/sparse/linalg/_isolve/tests/test_iterative.py`` holds scipy's case list
and per-case checks; the test modules of our solvers run them with ours
substituted for scipy's method.
"""

from __future__ import annotations

import importlib
import warnings

import pytest

PACKAGE = "scipy.sparse.linalg._isolve.tests"


def import_scipy_tests(name: str = "test_iterative"):
    """scipy's test module ``name``; ImportError where scipy ships without its tests."""
    with warnings.catch_warnings():
        # scipy's module uses its own registered marks (fail_slow)
        warnings.simplefilter("ignore", pytest.PytestUnknownMarkWarning)
        return importlib.import_module(f"{PACKAGE}.{name}")


def scipy_tests(name: str = "test_iterative"):
    """scipy's test module ``name``, or a skip naming why it is missing."""
    try:
        return import_scipy_tests(name)
    except ImportError as exc:  # scipy installed without its tests
        pytest.skip(f"scipy's {name}.py is not installed ({exc})")
