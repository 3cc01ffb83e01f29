"""Why one calibration set beats another at 4 bits: activation ranges per layer, against real images, and what they score.

    python -m benchmarks.activation_ranges [--teachers resnet20,resnet56,mobilenet_v1_050_64,vit] [--samples 256] [--seeds 0,1,2]
                                           [--calibrators MinMax,Percentile,Entropy,Distribution]

For each teacher and seed, four calibration sets of ``--samples`` images: real ``train_10k``
images (a subset of its own per seed, the same whichever other seeds run; resized to the teacher's input), N(0, 1) noise, and
``fastdfkd`` from cold with the ``batchnorm`` prior (what ``prior="auto"`` picks for BatchNorm teachers; no such
row for a BN-free one such as the ViT) and with ``prior="auto-calibration"`` (the quantize commands' default:
``generic`` for a BatchNorm CNN, ``transformer`` for the ViT). Per set:

* every activation tensor's ONNX Runtime MinMax range (what a MinMax calibrator would use),
  as a ratio to the real set's of the same seed, summarised per stage (geometric mean): a
  CIFAR ResNet's stem, layer1–3 and head, else fifths of the graph's depth;
* ORT QDQ accuracy at W4A4 per-channel under all four calibrators (MinMax, Percentile,
  Entropy, Distribution), W4A8 per-channel and W8A8 per-tensor (MinMax, Percentile), on
  2,000 held-out ``train_10k`` images (the split settings are chosen on) and on ``test_a``.
  ``--calibrators`` keeps the columns of the calibrators named (Entropy equals MinMax and
  Distribution gives chance at int4, see docs/calibration_results.md, so a long run may leave them out).

Then the real set's MinMax ranges are shrunk by a factor (1.0 to 0.6) and W4A4 scored again
on the held-out images: whether ranges tighter than real ones help a 4-bit activation grid,
which is what tells a good calibration set from a faithful one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnxruntime.quantization import CalibrationMethod, QuantType
from onnxruntime.quantization.calibrate import TensorsData, create_calibrator, save_tensors_data

from fastdfkd_plugin.adapters.onnx_export import onnx_accuracy
from fastdfkd_plugin.adapters.onnxruntime import calibration_reader, quiet_root_logger

from .common.cli import benchmark_parser, choice_list, float_list, int_list
from .common.ort import quantized_model, split_scores, teacher_under_test
from .common.plots import pyplot
from .common.report import environment, heading, mean_spread, publish, teacher_heading
from .common.sources import cold_source, timed_set

# row label: (source name, its options); None for the real images
SOURCES = {"real": None, "gaussian": ("gaussian", {"clip": False}), "fastdfkd, batchnorm prior": ("fastdfkd", {"prior": "batchnorm"}),
           "fastdfkd, auto-calibration prior": ("fastdfkd", {"prior": "auto-calibration"})}
CALIBRATORS = ("MinMax", "Percentile", "Entropy", "Distribution")
# column name: a Column of benchmarks.common.ort
COLUMNS = {f"W4A4 {method}": (QuantType.QInt4, QuantType.QUInt4, method, True) for method in CALIBRATORS}
COLUMNS |= {f"W4A8 {method}": (QuantType.QInt4, QuantType.QUInt8, method, True) for method in ("MinMax", "Percentile")}
COLUMNS |= {f"W8A8 per-tensor {method}": (QuantType.QInt8, QuantType.QUInt8, method, False) for method in ("MinMax", "Percentile")}
RESNET_LAYERS = ("layer1", "layer2", "layer3")
DEPTH_FIFTHS = ("depth 0–20 %", "20–40 %", "40–60 %", "60–80 %", "80–100 %")


def resnet_stage(tensor: str) -> str:
    """The stage of a CIFAR ResNet an activation tensor belongs to."""
    for name in RESNET_LAYERS:
        if f"/{name}/" in tensor:
            return name
    return "stem" if tensor.startswith(("/conv1", "/Relu_output", "/bn1")) else "head"


def graph_order(model_path: Path) -> list[str]:
    """Every node output of the ONNX graph, in the graph's (topological) order."""
    return [name for node in onnx.load(str(model_path)).graph.node for name in node.output]


def stages(tensors: list[str]) -> dict[str, str]:
    """Activation tensor (in graph order) → its stage: a CIFAR ResNet's named stage, else its fifth of the graph's depth."""
    if any(resnet_stage(tensor) in RESNET_LAYERS for tensor in tensors):
        return {tensor: resnet_stage(tensor) for tensor in tensors}
    return {tensor: DEPTH_FIFTHS[index * len(DEPTH_FIFTHS) // len(tensors)] for index, tensor in enumerate(tensors)}


def minmax_ranges(pre: Path, inputs: np.ndarray, workdir: Path) -> TensorsData:
    """ONNX Runtime's MinMax calibration data (per activation tensor: lowest, highest) for ``inputs``."""
    with quiet_root_logger():
        calibrator = create_calibrator(pre, augmented_model_path=str(workdir / "augmented.onnx"),
                                       calibrate_method=CalibrationMethod.MinMax)
        calibrator.collect_data(calibration_reader(pre, inputs, 64))
        return calibrator.compute_data()


def widths(ranges: TensorsData) -> dict[str, float]:
    """Tensor → width of its range (highest − min(lowest, 0): what a uint grid with a zero point must span)."""
    return {name: float(np.max(data.range_value[1]) - min(float(np.min(data.range_value[0])), 0.0))
            for name, data in ranges.data.items()}


def stage_ratios(ranges: dict[str, float], real: dict[str, float], stage_of: dict[str, str]) -> dict[str, float]:
    """Stage → geometric mean over its tensors of this set's range width over the real set's, stages in graph order."""
    logs: dict[str, list[float]] = {}
    for name, stage in stage_of.items():
        if real[name] > 0 and ranges[name] > 0:
            logs.setdefault(stage, []).append(float(np.log(ranges[name] / real[name])))
    return {stage: round(float(np.exp(np.mean(values))), 3) for stage, values in logs.items()}


def tensor_ratios(ranges: dict[str, float], real: dict[str, float], stage_of: dict[str, str]) -> dict[str, float]:
    """Tensor (in graph order) → this set's range width over the real set's (tensors the real set leaves at zero width are skipped)."""
    return {name: round(ranges[name] / real[name], 3) for name in stage_of if real[name] > 0}


def shrunk_real_scores(pre: Path, real_set: np.ndarray, ranges: TensorsData, factors: list[float],
                       heldout: tuple[np.ndarray, np.ndarray], workdir: Path) -> dict[str, float]:
    """Factor → held-out W4A4 MinMax accuracy with every activation range of the real set scaled by it (the input's kept)."""
    results = {}
    for factor in factors:
        scaled = TensorsData(CalibrationMethod.MinMax, {
            name: data.range_value if name == "input" else tuple(np.asarray(value) * factor for value in data.range_value)
            for name, data in ranges.data.items()})
        cache = workdir / f"ranges_x{factor}.json"
        save_tensors_data(scaled, cache)
        model = quantized_model(pre, real_set, QuantType.QInt4, QuantType.QUInt4, CalibrationMethod.MinMax, workdir,
                                calibration_cache_path=str(cache))
        results[str(factor)] = round(onnx_accuracy(model, *heldout), 2)
    return results


def run_teacher(name: str, args) -> dict[str, Any]:
    columns = {column: made for column, made in COLUMNS.items() if made[2] in args.calibrators}
    rows = []
    with teacher_under_test(name, args.samples, args.seeds, args.data_dir, args.seed) as under_test:
        teacher, pre, workdir, splits = under_test.teacher, under_test.pre, under_test.workdir, under_test.splits
        order = graph_order(pre)
        for seed in args.seeds:
            real_set = under_test.real[seed]
            real_ranges = minmax_ranges(pre, real_set, workdir)
            real_widths = widths(real_ranges)
            stage_of = stages([tensor for tensor in order if tensor in real_widths])
            for source, made in SOURCES.items():
                if made and made[1].get("prior") == "batchnorm" and not teacher.info.num_batchnorm:
                    continue  # a BN-free teacher (the ViT) has no batchnorm prior
                if made is None:
                    inputs, seconds, set_widths = real_set, 0.0, real_widths
                else:
                    synthetic, seconds = timed_set(cold_source(made[0], teacher, seed=seed, **made[1]), args.samples)
                    inputs = synthetic.inputs.numpy()
                    set_widths = widths(minmax_ranges(pre, inputs, workdir))
                row = {"source": source, "seed": seed, "set_seconds": round(seconds, 1),
                       "range_ratio": stage_ratios(set_widths, real_widths, stage_of),
                       "tensor_ratio": tensor_ratios(set_widths, real_widths, stage_of),
                       "accuracy": split_scores(pre, inputs, splits, workdir, columns)}
                if made is None:
                    row["shrunk_real_w4a4_minmax_heldout"] = shrunk_real_scores(pre, real_set, real_ranges, args.factors, splits["heldout"], workdir)
                rows.append(row)
                print(f"  {source} seed {seed}: ranges {row['range_ratio']}, heldout {row['accuracy']['heldout']}, "
                      f"test_a {row['accuracy']['test_a']}", flush=True)
    return {"teacher": name, "fp32": under_test.fp32, "stages": list(dict.fromkeys(stage_of.values())), "rows": rows}


def sources_run(teacher: dict) -> list[str]:
    """The SOURCES rows a teacher's results hold, in SOURCES order."""
    return [source for source in SOURCES if any(row["source"] == source for row in teacher["rows"])]


def markdown(results: dict) -> str:
    lines = heading("Activation ranges of calibration sets, and what they score at 4 bits", results,
                    "{samples} images per set; ONNX Runtime QDQ; mean ± standard deviation over seeds {seeds}; {threads} threads. "
                    "Settings are chosen on the held-out train_10k images; test_a is the report. The JSON keeps each set's "
                    "synthesis seconds, but this benchmark is not a timing run (other jobs may share the machine).")
    for teacher in results["teachers"]:
        lines += [teacher_heading(teacher), "",
                  "MinMax range width per stage against the real set of the same seed (geometric mean over the stage's tensors):", "",
                  "| source | " + " | ".join(teacher["stages"]) + " |", "| --- |" + " --- |" * len(teacher["stages"])]
        for source in sources_run(teacher):
            rows = [row for row in teacher["rows"] if row["source"] == source]
            lines.append(f"| {source} | " + " | ".join(mean_spread([row["range_ratio"].get(s, float("nan")) for row in rows])
                                                       for s in teacher["stages"]) + " |")
        columns = list(teacher["rows"][0]["accuracy"]["heldout"])
        for split in ("heldout", "test_a"):
            lines += ["", f"Accuracy (%) on {split}:", "", "| source | " + " | ".join(columns) + " |", "| --- |" + " --- |" * len(columns)]
            for source in sources_run(teacher):
                rows = [row for row in teacher["rows"] if row["source"] == source]
                lines.append(f"| {source} | " + " | ".join(mean_spread([row["accuracy"][split][c] for row in rows]) for c in columns) + " |")
        shrunk = [row["shrunk_real_w4a4_minmax_heldout"] for row in teacher["rows"] if row["source"] == "real"]
        lines += ["", "Real set's MinMax ranges scaled by a factor, W4A4 MinMax on held-out images:", "",
                  "| factor | " + " | ".join(shrunk[0]) + " |", "| --- |" + " --- |" * len(shrunk[0]),
                  "| accuracy | " + " | ".join(mean_spread([seed[f] for seed in shrunk]) for f in shrunk[0]) + " |", ""]
    return "\n".join(lines)


def plot(results: dict, path: Path) -> None:
    """Per tensor (in graph order), each source's MinMax range width over the real set's; mean over seeds."""
    plt = pyplot()
    figure, axes = plt.subplots(1, len(results["teachers"]), figsize=(7 * len(results["teachers"]), 4.5), squeeze=False)
    for axis, teacher in zip(axes[0], results["teachers"]):
        for source in sources_run(teacher):
            rows = [row["tensor_ratio"] for row in teacher["rows"] if row["source"] == source]
            order = list(dict.fromkeys(tensor for row in rows for tensor in row))
            axis.plot(range(len(order)), [np.mean([r[t] for r in rows if t in r]) for t in order], marker=".", label=source)
        axis.axhline(1.0, color="grey", linestyle="--")
        axis.set(title=teacher["teacher"], xlabel=f"activation tensor, input to output\n({' → '.join(teacher['stages'])})",
                 ylabel="MinMax range / real set's", yscale="log")
        axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


DEFAULT_SEEDS = [0, 1, 2]


def main(argv: list[str] | None = None) -> None:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--teachers", default="resnet20,resnet56",
                        help="CIFAR-10 teachers of benchmarks.common.teachers; the results go to activation_ranges_<teachers>.*")
    parser.add_argument("--samples", type=int, default=256)
    parser.add_argument("--seeds", type=int_list, default=DEFAULT_SEEDS,
                        help="calibration seeds; other than 0,1,2 the file names end in _seeds<list>")
    parser.add_argument("--factors", type=float_list, default=[1.0, 0.9, 0.8, 0.7, 0.6])
    parser.add_argument("--calibrators", type=choice_list(CALIBRATORS), default=list(CALIBRATORS))
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks"))
    args = parser.parse_args(argv)
    results = {"samples": args.samples, "seeds": args.seeds, "environment": environment(),
               "teachers": [run_teacher(name, args) for name in args.teachers.split(",")]}
    seeds = "" if args.seeds == DEFAULT_SEEDS else "_seeds" + "-".join(map(str, args.seeds))  # more seeds extend, not overwrite
    stem = args.out / f"activation_ranges_{'_'.join(args.teachers.split(','))}{seeds}"
    publish(stem, results, markdown(results))
    plot(results, stem.with_suffix(".png"))


if __name__ == "__main__":
    main()
