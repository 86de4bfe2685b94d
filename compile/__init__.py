"""ONNX step graph -> TensorRT engine (lazy TensorRT import; the RTX builder checks graphs on a CPU)."""
