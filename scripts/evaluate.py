"""Evaluate a run: `python scripts/evaluate.py RUN_DIR [options]` (same as `ssmrl evaluate`)."""

import sys

from ssmrl.cli import main

if __name__ == "__main__":
    sys.exit(main(["evaluate", *sys.argv[1:]]))
