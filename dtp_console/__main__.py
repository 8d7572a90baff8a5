"""`python -m dtp_console` and the `dtp-console` script."""

from __future__ import annotations

import sys

from dtp_console.cli import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
