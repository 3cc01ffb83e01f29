"""The teacher: one object built once from a model, an ONNX file or a SPEC, its task (what its outputs mean), input space and normalisation layers."""
