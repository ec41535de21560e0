"""Latent world models, each trainer beside its model: S4WM (`s4wm`, `train_s4wm`) and Drama (`drama`,
`imagination`, `actor_critic`, `replay`, `train_drama`, `drama_eval`)."""
