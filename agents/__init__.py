"""Model-free and offline agents, each trainer beside its model: recurrent PPO (`ppo`, its env stack
`env_stack`, evaluation `evaluate`), multi-agent PPO (`mappo`), and the offline sequence policies (Decision
Transformer, Decision Mamba, Decision-S5: `offline_data`, `offline_train`)."""
