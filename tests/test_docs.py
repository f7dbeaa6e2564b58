"""Every ```python block in docs/*.md runs, in order, one namespace per page."""

from __future__ import annotations

import pathlib
import re

import pytest

DOCS = pathlib.Path(__file__).resolve().parent.parent / "docs"
PAGES = sorted(DOCS.glob("*.md"))
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def test_docs_exist():
    names = {page.name for page in PAGES}
    assert {"getting-started.md", "pcg.md"} <= names


# pages that hold measured tables and no code to run
TABLE_PAGES = {"omega.md"}


# pages whose examples train a model for seconds (the digits MLP under JAX): make test-slow
SLOW_PAGES = {"optimizers.md"}


@pytest.mark.parametrize("page", [pytest.param(p, id=p.name, marks=[pytest.mark.slow]
                                               if p.name in SLOW_PAGES else [])
                                  for p in PAGES if p.name not in TABLE_PAGES])
def test_code_blocks_run(page, tmp_path, monkeypatch):
    blocks = BLOCK.findall(page.read_text())
    assert blocks, f"{page.name} has no python code block"
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__docs__"}
    for number, code in enumerate(blocks, 1):
        exec(compile(code, f"{page.name}[block {number}]", "exec"), namespace)
