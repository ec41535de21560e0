"""Train from a YAML config: `python scripts/train.py CONFIG [key=value ...]` (same as `ssmrl train`)."""

import sys

from ssmrl.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
