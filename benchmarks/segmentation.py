"""A CamVid segmenter as the teacher (180×240, 11 classes): calibration, distillation, pruning and synthesis cost.

    python -m benchmarks.segmentation --part quantize [--split val] [--seeds 0,1,2]
    python -m benchmarks.segmentation --part distill [--budget 480]
    python -m benchmarks.segmentation --part prune [--budget 240]
    python -m benchmarks.segmentation --part cost

The teacher and the student are the DeepLabV3+-like BatchNorm segmenters that
:mod:`benchmarks.camvid_teacher` trains on ``camvid/train`` (selected on ``val``). Every score
is mean IoU over the 11 classes (pixels labelled 11 left out) and pixel accuracy, on
``test_a`` unless ``--split val`` (where settings are tuned; ``test_a`` reports them).

- ``quantize``: ONNX Runtime QDQ, W8A8 per-channel and per-tensor (MinMax), W4A8 per-channel
  (MinMax and Percentile), calibrated on 256 images of each source: ``fastdfkd`` (the
  defaults, from cold, one set per seed), ``deepinversion`` with as many steps as fit
  ``fastdfkd``'s time, N(0, 1) ``gaussian`` noise, and 256 real training images.
  ``--oh-weights 0,0.5`` adds fastdfkd sets with the class-presence target term (tuning on val).
- ``distill``: the student from random init, the same wall-clock for each source (synthesis
  and warm-up counted): ``fastdfkd``, ``gaussian``, and KD on the 367 real training images.
- ``prune``: the teacher pruned to about 2× fewer MACs (magnitude importance, the classifier
  kept whole), then BN re-estimation and KD recovery from ``fastdfkd`` (the source already
  warmed up while pruning, as the cached warm state would be in a user's second command)
  or the real images, the same wall-clock each.
- ``cost``: seconds per synthetic image at k = 5 (warm) as a multiple of one teacher
  forward+backward per image, the measure of :mod:`benchmarks.resolution`.
"""

from __future__ import annotations

import copy
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import torch
from onnxruntime.quantization import CalibrationMethod, QuantType

from fastdfkd_plugin import DistillConfig, Distiller, LossWeights, SyntheticSet, Teacher, image_grid, write_png
from fastdfkd_plugin.adapters.onnx_export import onnx_scores
from fastdfkd_plugin.adapters.torch_pruning import prune_datafree, recover

from .common.camvid import IGNORE_INDEX, INPUT_SHAPE, MEAN, STD, evaluate, load_split
from .common.cli import benchmark_parser, float_list, int_list
from .common.data import endless
from .common.ort import prepared_onnx, quantized_model
from .common.plots import Panel, accuracy_over_time
from .common.report import environment, mean_spread, publish
from .common.seg_training import load_segmenter
from .common.sources import cold_source, deepinversion_seconds_per_step, timed_set
from .common.timing import floor_seconds_per_image, seconds_per_call

TEACHER_EPOCHS = 30
CALIBRATION_IMAGES = 256
QUANTIZATION = {  # column: (weights, activations, per-channel, method)
    "W8A8 per-channel": (QuantType.QInt8, QuantType.QUInt8, True, CalibrationMethod.MinMax),
    "W8A8 per-tensor": (QuantType.QInt8, QuantType.QUInt8, False, CalibrationMethod.MinMax),
    "W4A8 MinMax": (QuantType.QInt4, QuantType.QUInt8, True, CalibrationMethod.MinMax),
    "W4A8 Percentile": (QuantType.QInt4, QuantType.QUInt8, True, CalibrationMethod.Percentile),
}  # no W4A4: ONNX Runtime 1.32 writes a graph it cannot load (uint4 into MaxPool) for this network
# A new batch of 16 every 20 KD steps: at 5 (tried first) synthesis took 83 % of an 8-minute budget and KD only 155 steps.
KD = dict(batch_size=16, synthesis_batch_size=16, steps_per_batch=20, bank_size=4096, lr=0.05, temperature=4.0)


def build_teacher(args) -> Teacher:
    model = load_segmenter("camvid_teacher", TEACHER_EPOCHS, args.data_dir)
    return Teacher(model, INPUT_SHAPE, mean=MEAN, std=STD, device="cpu")


def scorer(split: str, data_dir: Path) -> Callable[[torch.nn.Module], dict[str, float]]:
    """model → {"miou", "pixel_accuracy"} on ``split``."""
    x, y = load_split(split, data_dir)
    return lambda model: evaluate(model, x, y)


def real_subset(count: int, seed: int, data_dir: Path) -> torch.Tensor:
    x, _ = load_split("train", data_dir)
    return x[torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))[:count]]


# -- quantization --------------------------------------------------------------------------------

def calibration_sets(teacher: Teacher, args) -> list[dict[str, Any]]:
    """Every calibration set: (label, seed, inputs, seconds), fastdfkd first so DeepInversion can match its time."""
    sets = []
    for weight in args.oh_weights:
        for seed in args.seeds:
            label = "fastdfkd" if weight == 0 else f"fastdfkd oh={weight:g}"
            data, seconds = timed_set(cold_source("fastdfkd", teacher, seed=seed, progress=True,
                                                  loss_weights=LossWeights(oh=weight)), CALIBRATION_IMAGES)
            sets.append({"source": label, "seed": seed, "inputs": data.inputs, "seconds": round(seconds, 1)})
            print(f"  {label} seed {seed}: {CALIBRATION_IMAGES} images in {seconds:.0f} s", flush=True)
            if len(sets) == 1:
                write_preview(teacher, data, args.out / f"segmentation_preview{'' if weight == 0 else '_oh'}.png")
    if not args.skip_deepinversion:
        budget = min(entry["seconds"] for entry in sets if entry["source"] == "fastdfkd")  # the least disturbed timing
        steps = max(1, int(budget / (CALIBRATION_IMAGES // 64) / deepinversion_seconds_per_step(teacher, 64)))
        data, seconds = timed_set(cold_source("deepinversion", teacher, steps=steps, seed=args.seeds[0]), CALIBRATION_IMAGES)
        sets.append({"source": f"deepinversion ({steps} steps)", "seed": args.seeds[0], "inputs": data.inputs,
                     "seconds": round(seconds, 1)})
    for seed in args.seeds:
        data, seconds = timed_set(cold_source("gaussian", teacher, seed=seed), CALIBRATION_IMAGES)
        sets.append({"source": "gaussian", "seed": seed, "inputs": data.inputs, "seconds": round(seconds, 1)})
    sets.append({"source": "real (train)", "seed": args.seed, "inputs": real_subset(CALIBRATION_IMAGES, args.seed, args.data_dir),
                 "seconds": None})
    return sets


def write_preview(teacher: Teacher, data: SyntheticSet, path: Path) -> None:
    """The first 16 images of a set, each beside the teacher's label map on it."""
    pictures = teacher.task.preview(teacher.space.denormalize(data.inputs[:16]), data.logits[:16])
    write_png(path, image_grid(pictures, columns=8))


def run_quantize(teacher: Teacher, args) -> None:
    x, y = load_split(args.split, args.data_dir)
    eval_x, eval_y = x.numpy(), y.numpy()
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        workdir = Path(folder)
        fp32, pre = prepared_onnx(teacher.model, workdir, "camvid_teacher", INPUT_SHAPE)
        reference = onnx_scores(fp32, eval_x, eval_y, teacher.task, ignore_index=IGNORE_INDEX)
        print(f"float teacher (ONNX): mIoU {reference['miou']:.2f} on {args.split}", flush=True)
        for entry in calibration_sets(teacher, args):
            inputs = entry.pop("inputs").numpy()
            for column, (weights, activations, per_channel, method) in QUANTIZATION.items():
                path = quantized_model(pre, inputs, weights, activations, method, workdir, batch_size=16, per_channel=per_channel)
                entry[column] = onnx_scores(path, eval_x, eval_y, teacher.task, ignore_index=IGNORE_INDEX)
            rows.append(entry)
            print(f"  {entry['source']} seed {entry['seed']}: " + ", ".join(f"{c} {entry[c]['miou']:.2f}" for c in QUANTIZATION), flush=True)
    results = {"split": args.split, "float": reference, "calibration_images": CALIBRATION_IMAGES, "columns": list(QUANTIZATION),
               "rows": rows, "environment": environment()}
    publish(args.out / f"segmentation_quantization{'' if args.split == 'test_a' else '_' + args.split}", results,
            quantize_markdown(results))


def quantize_markdown(results: dict) -> str:
    columns = results["columns"]
    lines = [f"# CamVid segmenter: ONNX Runtime calibration, mIoU on {results['split']} (%)", "",
             f"Command: `{results['environment']['command']}`", "",
             f"Float teacher (ONNX): mIoU {results['float']['miou']:.2f}, pixel accuracy {results['float']['pixel_accuracy']:.2f}. "
             f"{results['calibration_images']} calibration images per set; QDQ, MinMax unless the column says Percentile; "
             "mean ± standard deviation over the seeds of each source's sets.", "",
             "| source | sets | set seconds | " + " | ".join(columns) + " |", "| --- | --- | --- |" + " --- |" * len(columns)]
    for source in dict.fromkeys(row["source"] for row in results["rows"]):
        rows = [row for row in results["rows"] if row["source"] == source]
        seconds = [row["seconds"] for row in rows if row["seconds"] is not None]
        cells = [mean_spread([row[column]["miou"] for row in rows]) for column in columns]
        lines.append(f"| {source} | {len(rows)} | {mean_spread(seconds) if seconds else '–'} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# -- distillation ----------------------------------------------------------------------------------

def run_distill(teacher: Teacher, args) -> None:
    score = scorer(args.split, args.data_dir)
    real_x, _ = load_split("train", args.data_dir)
    results = {"split": args.split, "teacher": score(teacher.model), "budget_seconds": args.budget, "recipe": KD,
               "environment": environment(), "runs": []}
    print(f"teacher: mIoU {results['teacher']['miou']:.2f} on {args.split}", flush=True)
    for label in args.sources.split(","):
        batches = endless(real_x, KD["synthesis_batch_size"], args.seed) if label == "real" else cold_source(
            label, teacher, seed=args.seed)
        torch.manual_seed(args.seed)
        student = fresh_student()  # random init, the same for every source
        config = DistillConfig(steps=10**9, seconds=args.budget, seed=args.seed, **KD)
        distiller = Distiller(teacher, student, batches, config)
        log = distiller.run(evaluate=score, eval_every_seconds=args.budget / 6, progress=True, desc=label)
        final = log.evaluations[-1]
        results["runs"].append({"source": label, "kd_steps": distiller.step, "synthesis_seconds": round(log.synthesis_seconds, 1),
                                "kd_seconds": round(log.kd_seconds, 1), "curve": log.evaluations, "final": final})
        print(f"  {label}: mIoU {final['miou']:.2f} after {distiller.step} KD steps (synthesis {log.synthesis_seconds:.0f} s)", flush=True)
    publish(args.out / "segmentation_distillation", results, run_markdown(results, "Data-free distillation: CamVid "
                                                                            "teacher → student (random init), equal wall-clock"))
    accuracy_over_time([Panel("CamVid teacher → student, equal wall-clock", results["runs"], results["teacher"]["miou"], "teacher")],
                       args.out / "segmentation_distillation.png", xlabel="training time (min, 2 CPU cores)",
                       ylabel=f"student mIoU on {args.split} (%)", metric="miou")


def fresh_student() -> torch.nn.Module:
    from .common.seg_models import SEGMENTERS

    return SEGMENTERS["camvid_student"]()


def run_markdown(results: dict, title: str) -> str:
    reference = results["runs"][[run["source"] for run in results["runs"]].index("real")]["final"]["miou"] \
        if any(run["source"] == "real" for run in results["runs"]) else None
    lines = [f"# {title}", "", f"Command: `{results['environment']['command']}`", "",
             f"Teacher mIoU {results['teacher']['miou']:.2f} on {results['split']}; budget {results['budget_seconds']:.0f} s of "
             "training time per source (synthesis and warm-up included; evaluation not counted). One seed: a single run, "
             "not a mean.", "",
             "| source | final mIoU | pixel accuracy | of real-data run | KD steps | synthesis s |", "| --- | --- | --- | --- | --- | --- |"]
    for run in results["runs"]:
        share = f"{100 * run['final']['miou'] / reference:.1f} %" if reference else "–"
        lines.append(f"| {run['source']} | {run['final']['miou']:.2f} | {run['final']['pixel_accuracy']:.2f} | {share} | "
                     f"{run['kd_steps']} | {run['synthesis_seconds']:.0f} |")
    return "\n".join(lines) + "\n"


# -- pruning --------------------------------------------------------------------------------------

def run_prune(teacher: Teacher, args) -> None:
    score = scorer(args.split, args.data_dir)
    real_x, _ = load_split("train", args.data_dir)
    synthetic = cold_source("fastdfkd", teacher, seed=args.seed)  # warmed up while pruning, then reused for recovery
    pruned, report = prune_datafree(teacher, synthetic, args.speed_up, "magnitude", bn_samples=0)
    results = {"split": args.split, "teacher": score(teacher.model), "budget_seconds": args.budget, "recipe": KD,
               "speed_up": round(report.speed_up, 3), "macs_before": report.macs_before, "macs_after": report.macs_after,
               "pruned": score(copy.deepcopy(pruned)), "environment": environment(), "runs": []}
    print(f"pruned {report.speed_up:.2f}×: mIoU {results['pruned']['miou']:.2f} before recovery", flush=True)
    for label in args.sources.split(","):
        if label == "gaussian":
            continue
        batches = endless(real_x, KD["synthesis_batch_size"], args.seed) if label == "real" else synthetic
        config = DistillConfig(steps=10**9, seconds=args.budget, seed=args.seed, **KD)
        distiller = recover(teacher, copy.deepcopy(pruned), batches, config, bn_samples=64, evaluate=score,
                            eval_every_seconds=args.budget / 4)
        log = distiller.log
        results["runs"].append({"source": label, "kd_steps": distiller.step, "synthesis_seconds": round(log.synthesis_seconds, 1),
                                "kd_seconds": round(log.kd_seconds, 1), "curve": log.evaluations, "final": log.evaluations[-1]})
        print(f"  recovery from {label}: mIoU {log.evaluations[-1]['miou']:.2f}", flush=True)
    title = (f"Pruning the CamVid teacher {results['speed_up']:.2f}× (mIoU {results['pruned']['miou']:.2f} right after), "
             "recovery at equal wall-clock")
    publish(args.out / "segmentation_pruning", results, run_markdown(results, title))


# -- synthesis cost ------------------------------------------------------------------------------

def run_cost(teacher: Teacher, args) -> None:
    batch = 16
    floor = floor_seconds_per_image(teacher, batch)
    source = cold_source("fastdfkd", teacher, seed=args.seed, steps=5)
    started = time.perf_counter()
    source.next_batch(batch)  # warm-up and a first batch
    first = time.perf_counter() - started
    per_image = seconds_per_call(lambda: source.next_batch(batch), teacher.device, repeats=3, warm=False) / batch
    results = {"batch_size": batch, "floor_seconds_per_image": floor, "seconds_per_image": per_image,
               "multiple_of_floor": per_image / floor, "first_batch_seconds": first,
               "teacher_macs_per_image": teacher.macs_per_image, "environment": environment()}
    print(f"fastdfkd k=5: {per_image:.3f} s/image = {per_image / floor:.2f}× one teacher forward+backward ({floor:.4f} s)", flush=True)
    markdown = (f"# Synthesis cost for the CamVid segmenter (180×240)\n\nCommand: `{results['environment']['command']}`\n\n"
                f"| batch | teacher fwd+bwd s/image | fastdfkd k=5 s/image (warm) | multiple | first batch s (warm-up) | teacher GMACs |\n"
                f"| --- | --- | --- | --- | --- | --- |\n| {batch} | {floor:.4f} | {per_image:.4f} | {per_image / floor:.2f}× | "
                f"{first:.0f} | {teacher.macs_per_image / 1e9:.2f} |\n")
    publish(args.out / "segmentation_cost", results, markdown)


PARTS = {"quantize": run_quantize, "distill": run_distill, "prune": run_prune, "cost": run_cost}


def main(argv: list[str] | None = None) -> None:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--part", choices=sorted(PARTS), required=True)
    parser.add_argument("--split", choices=("val", "test_a"), default="test_a", help="tune on val, report on test_a")
    parser.add_argument("--seeds", type=int_list, default=[0, 1, 2], help="synthetic calibration sets per source (quantize)")
    parser.add_argument("--oh-weights", type=float_list, default=[0.0], help="fastdfkd target-term weights to compare (quantize)")
    parser.add_argument("--skip-deepinversion", action="store_true")
    parser.add_argument("--budget", type=float, default=480.0, help="training seconds per source (distill, prune)")
    parser.add_argument("--sources", default="fastdfkd,gaussian,real", help="distill/prune sources: fastdfkd, gaussian, real")
    parser.add_argument("--speed-up", type=float, default=2.0, help="MACs before / after pruning (prune)")
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks"))
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    PARTS[args.part](build_teacher(args), args)


if __name__ == "__main__":
    main()
