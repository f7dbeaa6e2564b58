"""The API reference (`make docs`) builds from the docstrings and documents every public name.

pdoc imports each module and parses its numpydoc docstrings, so a module that
fails to import, or a docstring pdoc cannot render, fails here (pdoc itself
only warns and leaves the page out). About 5 s.
"""

from __future__ import annotations

import importlib
import pathlib
import types
import warnings

import pytest

pdoc = pytest.importorskip("pdoc", reason="pdoc is in the [test] extra")

# The public packages, as `make docs` lists them. linsolve.precond is reached
# through linsolve's __all__ (naming it again makes pdoc warn about a repeated
# module); linsolve.mpi is not in linsolve's __all__, so it is named.
SPECS = ("linsolve", "linsolve.mpi", "curvature", "cext")
PUBLIC = ("linsolve", "linsolve.precond", "linsolve.mpi", "curvature", "cext")


@pytest.fixture(scope="module")
def api_dir(tmp_path_factory) -> pathlib.Path:
    import pdoc.render

    out = tmp_path_factory.mktemp("api")
    pdoc.render.configure(docformat="numpy")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pdoc.pdoc(*SPECS, output_directory=out)
    from_pdoc = [str(w.message) for w in caught if "pdoc" in w.filename.replace("\\", "/")]
    assert not from_pdoc, "pdoc warned:\n" + "\n".join(from_pdoc)
    return out


def test_linsolve_mpi_imports_without_mpi4py():
    # pdoc imports linsolve.mpi; that must not need mpi4py (imported only for the world).
    import subprocess
    import sys

    script = "import sys, linsolve.mpi; print('mpi4py' in sys.modules)"
    completed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                               timeout=120)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "False"


@pytest.mark.parametrize("module_name", PUBLIC)
def test_every_public_name_documented(api_dir, module_name):
    module = importlib.import_module(module_name)
    page = api_dir.joinpath(*module_name.split(".")).with_suffix(".html")
    assert page.is_file(), f"no API page for {module_name}"
    html = page.read_text()
    missing = []
    for name in module.__all__:
        if isinstance(getattr(module, name), types.ModuleType):
            # a submodule in __all__: linked from the package page, with a page of its own
            found = (f'href="{module_name.rsplit(".", 1)[-1]}/{name}.html"' in html
                     and page.with_suffix("").joinpath(f"{name}.html").is_file())
        else:
            found = f'id="{name}"' in html
        if not found:
            missing.append(name)
    assert not missing, f"{module_name}: not in the API reference: {missing}"


def test_index_lists_the_packages(api_dir):
    index = (api_dir / "index.html").read_text()
    for name in ("linsolve", "curvature", "cext"):
        assert name in index
