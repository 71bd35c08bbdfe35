"""`python -m textgen` runs the command-line interface."""

from textgen.cli.main import main

if __name__ == "__main__":
    raise SystemExit(main())
