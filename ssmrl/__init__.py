"""What every ssmrl trainer shares: typed configs, the seed-parallel runner, logging, checkpoints and the CLI."""
