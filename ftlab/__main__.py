"""`python -m ftlab ...` and the `ftlab` command: the run script (ftlab/run.py)."""

from ftlab.run import main

if __name__ == "__main__":
    main()
