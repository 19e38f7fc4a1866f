"""Building and checking TensorRT engines on the device that runs them (`export trt`,
`export check`): ONNX graph checks, the fp16 graph, the optimization profiles, backend parity.

No torch here: this runs on a Jetson with TensorRT, cuda-python, onnx and onnxruntime. The
export layer (`edge_ser_export`) uses the same checks when it writes a package."""
