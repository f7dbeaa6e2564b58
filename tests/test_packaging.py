"""Release metadata: licence, typing markers, versions, changelog."""

from __future__ import annotations

import importlib
import importlib.metadata
import pathlib
import tomllib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGES = ("linsolve", "curvature", "cext")


def _pyproject() -> dict:
    with open(ROOT / "pyproject.toml", "rb") as handle:
        return tomllib.load(handle)


def test_license_file_and_metadata():
    text = (ROOT / "LICENSE").read_text()
    assert "BSD 3-Clause License" in text
    assert "the curvature-linsolve developers" in text
    project = _pyproject()["project"]
    assert project["license"] == "BSD-3-Clause"
    assert project["license-files"] == ["LICENSE"]
    # PEP 639: an SPDX `license` string excludes the old "License ::" classifiers
    assert not [c for c in project["classifiers"] if c.startswith("License ::")]


def test_installed_metadata_declares_the_license():
    try:
        metadata = importlib.metadata.metadata("curvature-linsolve")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("curvature-linsolve is not installed (pip install -e .)")
    if metadata.get("License-Expression") is None:
        pytest.skip("installed from an older pyproject (reinstall: pip install -e .)")
    assert metadata["License-Expression"] == "BSD-3-Clause"


@pytest.mark.parametrize("package", PACKAGES)
def test_py_typed_present_and_shipped(package):
    assert (ROOT / package / "py.typed").is_file()
    package_data = _pyproject()["tool"]["setuptools"]["package-data"]
    assert "py.typed" in package_data[package]


@pytest.mark.parametrize("package", PACKAGES)
def test_version_from_installed_metadata(package):
    module = importlib.import_module(package)
    try:
        expected = importlib.metadata.version("curvature-linsolve")
    except importlib.metadata.PackageNotFoundError:
        expected = "0+unknown"
    assert module.__version__ == expected


def test_changelog_has_unreleased_and_first_release():
    text = (ROOT / "CHANGELOG.md").read_text()
    headings = [line for line in text.splitlines() if line.startswith("## ")]
    assert headings[0] == "## Unreleased"
    assert "## 0.1.0" in headings
    assert _pyproject()["project"]["version"] == "0.1.0"
