"""``python -m bench family``: every row on tiny inputs, the table written, bad options refused."""

from __future__ import annotations

import csv
import json

import pytest

from bench.__main__ import main
from bench.family_speed import FAMILY_COLUMNS, TARGETS


@pytest.mark.slow  # every row of bench family: compiles the whole Krylov family
def test_tiny_family_run_writes_every_row(tmp_path, capsys):
    assert main(["family", "--size", "16", "--iterations", "4", "--matrices", "", "--repeat", "1",
                 "--out", str(tmp_path)]) == 0
    with open(tmp_path / "family.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["benchmark"] for row in rows] == list(TARGETS)
    assert all(float(row["ours_ms"]) > 0 and float(row["theirs_ms"]) > 0 for row in rows)
    assert list(rows[0]) == list(FAMILY_COLUMNS)
    payload = json.loads((tmp_path / "family.json").read_text())
    assert payload["environment"] and len(payload["rows"]) == len(TARGETS)
    assert "gmres+ilu0" in capsys.readouterr().out


def test_bad_options_are_one_error_line(tmp_path, capsys):
    assert main(["family", "--size", "2", "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("error:")
    assert main(["family", "--methods", "gmres(30),cg", "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("error: --methods cg")


@pytest.mark.slow  # compiles and runs a whole bench job: make test-slow
def test_methods_picks_the_per_iteration_rows(tmp_path):
    assert main(["family", "--size", "12", "--iterations", "2", "--matrices", "", "--methods",
                 "gmres+ilu0", "--repeat", "1", "--out", str(tmp_path)]) == 0
    with open(tmp_path / "family.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["benchmark"] for row in rows] == ["gmres+ilu0"]
    assert float(rows[0]["ours_ms"]) > 0 and float(rows[0]["theirs_ms"]) > 0
