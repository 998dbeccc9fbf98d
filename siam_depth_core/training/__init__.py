"""Training on a workstation: the trainer (`train`: loop, step, checkpoints/resume, logging, distributed set-up),
losses (`losses`, `temporal_loss`), the temporal warp, EMA of the weights, the validation stream and the
config. May import everything else in siam_depth_core; nothing outside training/ imports it."""
