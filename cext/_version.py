"""The installed distribution's version, shared by cext, linsolve and curvature."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("curvature-linsolve")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"
