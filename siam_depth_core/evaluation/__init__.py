"""Evaluation on a workstation: Eigen / KITTI 2015 metrics (`metrics`), control predictions (`baselines`),
tables and CSV (`report`), temporal alignment error on posed sequences (`temporal`, `temporal_streams`) and
`siam-depth-eval` (`evaluate`). May import runtime/ (it scores the deployed
path), network/, data/ and the shared modules; never training/."""
