"""What a vehicle runs: the streaming estimator (`inference.DepthEstimator`), the backends (torch, ONNX Runtime,
TensorRT), ONNX export and int8 quantisation, `siam-depth-predict` and the model arguments of the runtime CLIs.
May import network/, data/ and the shared modules; never training/ or evaluation/."""
