"""`python -m ftlab.report DIR [DIR ...]`: the comparison report of a sweep (or of several)."""

from ftlab.report import main

main()
