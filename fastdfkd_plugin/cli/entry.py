"""The ``fastdfkd`` console script: Ctrl-C during start-up (importing torch takes seconds) exits quietly.

Only the standard library is imported before the guard; everything else loads inside it.
"""

from __future__ import annotations

import sys


def main() -> int:
    try:
        from .main import main as run_command
    except KeyboardInterrupt:
        print("fastdfkd: interrupted while starting; nothing was done", file=sys.stderr)
        return 130
    return run_command()
