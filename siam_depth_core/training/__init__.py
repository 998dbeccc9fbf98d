"""Training on a workstation: the trainer (`train`: the CLI and entry point; `trainer`: the loop; `step`: the
model step; `dataset_setup`: data and loaders; `checkpoints`: checkpoints/resume; `summaries`: logging;
`distributed`: device and DDP set-up), losses (`losses`, `temporal_loss`), the temporal warp, EMA of the weights,
the validation stream and the config (`config`, `coerce`). May import everything else in siam_depth_core; nothing
outside training/ imports it."""
