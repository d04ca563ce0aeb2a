"""`python -m cleaner COMMAND`: the same as the `cleaner` command."""

import sys

from cleaner.cli import main

if __name__ == "__main__":
    sys.exit(main())
