"""The command line: `cleaner scan DATA.npz --out REPORT.csv`, `cleaner effect DATA.npz --decisions DECISIONS.csv`.

The app itself is `streamlit run streamlit_app.py`.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

# command -> (module with a `main(argv) -> int`, what it does); each command imports only what it needs.
COMMANDS = {
    "scan": ("cleaner.cli.scan", "score every image of an NPZ and write a CSV report"),
    "effect": ("cleaner.cli.effect", "how much bad data the review left, and a model trained before and after"),
}


def usage() -> str:
    lines = ["usage: cleaner COMMAND [options]   (or python -m cleaner COMMAND)", "", "commands:"]
    lines += [f"  {name:<8}{summary} (cleaner {name} --help)" for name, (_, summary) in COMMANDS.items()]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Dispatch to a subcommand; return the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in COMMANDS:
        module = importlib.import_module(COMMANDS[args[0]][0])
        return module.main(args[1:])
    if args and args[0] in ("-h", "--help"):
        print(usage(), end="")
        return 0
    print(usage(), end="", file=sys.stderr)
    print(f"error: unknown command {args[0]!r}" if args else "error: name a command", file=sys.stderr)
    return 2
