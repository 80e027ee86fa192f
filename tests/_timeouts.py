"""The one time limit of the test suite's subprocesses: a guard against a hang,
never a speed check. A loaded 2-core machine ran the whole suite 5x slower than a
quiet one; a subprocess that takes 20 s there must not fail at 300 s, so the
guard is far above any slow run (CI stops a job at 90 minutes anyway)."""

HANG_GUARD_S = 1800
