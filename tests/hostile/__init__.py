"""The hostile-input matrix: one module per command family, each case a bad input given to the
real command, asserting what docs/reliability.md promises (see `tests.hostile.check`)."""
