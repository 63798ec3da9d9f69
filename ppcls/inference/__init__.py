"""Export to Paddle Inference, the deployed predictor (Paddle Inference or onnxruntime), the shared
image pre/post-processing, and dygraph prediction (tools/infer.py)."""
