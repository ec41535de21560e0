"""Train a world model from a config: `python scripts/train_worldmodel.py configs/s4wm_four_rooms.yaml [a.b=value ...]`.

The same as `ssmrl train configs/s4wm_*.yaml`: logging, checkpoints, and S4WM's imagination evaluation at the
end (eval.json and imagination.png in the run directory).
"""

import sys

from ssmrl.cli import main

if __name__ == "__main__":
    main(["train", *sys.argv[1:]])
