"""Small ONNX models trained by scripts/train_*.py (shipped as package data)."""
