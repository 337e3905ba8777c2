"""A trained model outside eager PyTorch: graph runtimes (ONNX Runtime, OpenVINO), export to files, a run's model in the runtime a deployment chose."""
