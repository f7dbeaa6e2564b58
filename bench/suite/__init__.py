"""pytest-benchmark suites: ``python -m pytest bench/suite --benchmark-enable`` (``make bench``)."""
