"""``python -m memlane``: the ``memlane`` command line."""

from memlane.cli import main

if __name__ == "__main__":
    main()
