"""An ONNX graph run by torch, so gradients reach the input and synthesis can invert it: the graph and its operators."""
