"""What the benchmark scripts share, so that each script holds only what it measures.

One module per concept: ``data`` (the CIFAR-10 images and scoring on them), ``teachers``
(every teacher by name), ``training`` (training and caching the benchmarks' own
teachers), ``edge_models`` (architectures beyond the CIFAR examples), ``sources`` (data
sources built and timed the same way everywhere), ``ort`` (ONNX Runtime quantization
and its accuracy), ``timing`` (the teacher-bound floor and friends), ``screening`` (the
``compact:SHARE`` generators), ``report`` (result files), ``plots`` and ``cli`` (the
options every script takes). The scripts in ``benchmarks/`` import from here and from
the public API only, and nothing here imports a script.
"""
