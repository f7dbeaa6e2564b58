# The scripts here run under mpiexec (tests/linsolve/test_mpi.py launches them); importing
# one in the pytest process (--doctest-modules) would run it there.
collect_ignore_glob = ["*.py"]
