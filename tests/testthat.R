# Runs the sclibra test suite (testthat). The Python core is found through SCLIBRA_PYTHON
# (the Makefile points it at the project's virtualenv); with CI=true a missing core fails the
# tests instead of skipping them.
library(testthat)
library(sclibra)

test_check("sclibra")
