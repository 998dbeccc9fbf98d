"""The network: Table 1's Siamese ConvLSTM U-Net with explicit recurrent state (`model`), the differentiable
refinement (`refine`), the M+S pose network (`pose`) and the checkpoint file format (`checkpoint`: weights +
`ModelMeta`). Used by the vehicle and the workstation alike; may import only the shared top-level modules
(geometry, errors)."""
