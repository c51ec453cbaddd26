"""Test support: the vectors and harnesses the tests, ``bench/`` and the Kotlin core share.

- :mod:`.specs`: one example spec per shape, known-bad specs with the field their error
  names, and seeded random valid specs and plans.
- :mod:`.golden`: the golden file the Kotlin core is checked against
  (``mobile-lr schedule golden --out FILE``), with the planner and manager cases of
  :mod:`.golden_cases`.
- :mod:`.killtest`: the SIGKILL harness for checkpoints
  (``python -m mobile_lr.testing.killtest BUNDLE --kills 500 --json``).

The product never imports this package (an import-linter contract says so); only the
CLI's ``schedule golden`` command does, to write the golden file.
"""
