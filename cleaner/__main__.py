"""The command line, `python -m cleaner scan DATA.npz --out REPORT.csv` (the app is `streamlit run streamlit_app.py`)."""
from __future__ import annotations

import sys
from typing import Sequence

USAGE = """usage: python -m cleaner scan DATA.npz --out REPORT.csv [options]

commands:
  scan    score every image of an NPZ and write a CSV report (python -m cleaner scan --help)
"""


def main(argv: Sequence[str] | None = None) -> int:
    """Dispatch to a subcommand; return the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "scan":
        from cleaner.cli.scan import main as scan_main  # each command imports only what it needs

        return scan_main(args[1:])
    if args and args[0] in ("-h", "--help"):
        print(USAGE, end="")
        return 0
    print(USAGE, end="", file=sys.stderr)
    print(f"error: unknown command {args[0]!r}" if args else "error: name a command", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
