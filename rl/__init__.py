"""What several algorithms share, below both `ssmrl.agents` and `ssmrl.worldmodels`: the trainer interface
(`algorithm`), returns (`returns`), action heads (`heads`), actor-critic networks (`networks`) and the
argument helpers of the evaluate commands (`evaluation`). Imports only `ssmrl.ssm` and `ssmrl.envs`."""
