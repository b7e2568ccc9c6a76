"""ONNX Runtime sessions for the readers' models: one thread each, because the service runs one
reader per core in its own process (a session's own thread pool would only fight them)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def cpu_session(path: Path) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.log_severity_level = 4
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
