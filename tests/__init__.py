"""linqwatch's tests; a package so that `tests.standins` imports from any test."""
