"""Policy files: checkpoints, actor files, TorchScript and ONNX exports, their CPU latency,
the MLflow policy model, and the checks each passes before it is loaded or shipped."""
