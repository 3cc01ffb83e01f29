"""How well ``fidelity`` estimates, without any data, the accuracy a compressed model keeps (issue 42).

    python -m benchmarks.label_free [--teachers resnet20,resnet56] [--seeds 0,1,2] [--eval test_a|heldout] [--samples 512]
    python -m benchmarks.label_free --rescore docs/benchmarks/label_free_resnet20.json

Per teacher, a fixed set of compressed variants spanning the accuracy range: ONNX Runtime QDQ
models (W8A8, W4A8, W4A4 × MinMax / Percentile × per-channel / per-tensor weights, int4
weights on ``quantize-onnx``'s [-7, 7] grid) calibrated on ``--samples`` images of three kinds
(the set ``quantize-onnx`` synthesises for the activation width, N(0, 1) noise, real
``train_10k`` images), and two Torch-Pruning students (1.5× and 2× fewer MACs, BatchNorm
re-estimated on synthetic images, no KD recovery), loaded back by ``load_compressed`` as a user
would (the ONNX files run by ONNX Runtime, the pruned weights through the model SPEC). Built
variants are cached in ``$FASTDFKD_BENCHMARK_CACHE/label_free/`` so a rerun only evaluates.

Each variant's real top-1 accuracy is measured on ``--eval``: ``test_a`` (default) or ``heldout``,
the ``train_10k`` images not used for real calibration (the dev split the estimator's constants
were fitted on, for ResNet-20). For each seed, the product's held-out synthetic set
(``held_out_set(teacher, 256, seed)``, from cold) is made once and every variant is judged on it
with ``fidelity(teacher, model, held_out=...)``; that ``fidelity(teacher, model, seed=seed)``
gives the same estimate is checked once per teacher. Reported per teacher and seed: Spearman ρ
between estimated and real accuracy, the mean and 90th-percentile absolute error (points) of
the estimate (estimated relative accuracy × the teacher's real accuracy), the share of variants
whose real relative accuracy lies inside the 95 % interval, and what an estimate costs.
``--rescore FILE.json`` makes every estimate and interval of an earlier run again from its measured agreement with
today's ``relative_accuracy`` (for top-1 agreement the per-input shares are that many 1s and 0s, so this is exact), and
rewrites that run's report: for a change to the map from agreement, not to what is measured.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from onnxruntime.quantization import CalibrationMethod, QuantType

from fastdfkd_plugin import (
    DistillConfig,
    __version__,
    atomic_path,
    fidelity,
    get_source,
    held_out_set,
    load_compressed,
    relative_accuracy,
    resolve_device,
    synthetic_set,
)
from fastdfkd_plugin.adapters.onnxruntime import with_symmetric_int4_weights
from fastdfkd_plugin.adapters.torch_pruning import prune_datafree, save_pruned

from .common.cli import benchmark_parser, choice_list, int_list
from .common.data import accuracy, load_images
from .common.ort import prepared_onnx, quantized_model
from .common.plots import pyplot
from .common.report import environment, heading, publish
from .common.sources import cold_source
from .common.teachers import PRETRAINED, build_teacher
from .common.training import cache_path

HELD_OUT_SAMPLES = 256  # fidelity's default, which the commands use
# configuration: (weight type, activation type)
CONFIGS = {"W8A8": (QuantType.QInt8, QuantType.QUInt8), "W4A8": (QuantType.QInt4, QuantType.QUInt8),
           "W4A4": (QuantType.QInt4, QuantType.QUInt4)}
FAMILIES = ("W8A8", "W4A8", "W4A4", "pruned")
CALIBRATIONS = ("fastdfkd", "gaussian", "real")


@dataclass(frozen=True)
class Variant:
    """One compressed model: a QDQ configuration and its calibration set, or a pruning speed-up."""

    family: str  # W8A8 / W4A8 / W4A4 / pruned
    calibration: str  # the calibration set (quantized), or the BN re-estimation set (pruned): fastdfkd / gaussian / real
    method: str = ""  # MinMax / Percentile
    per_channel: bool = True
    speed_up: float = 0.0

    @property
    def name(self) -> str:
        if self.family == "pruned":
            return f"pruned {self.speed_up:g}×, BN re-estimated on {self.calibration}"
        return f"{self.family} {self.method} {'per-channel' if self.per_channel else 'per-tensor'}, {self.calibration}"

    @property
    def slug(self) -> str:
        return re.sub(r"[^a-z0-9.]+", "-", self.name.lower()).strip("-")


def quantized(family: str, calibration: str, method: str, per_channel: bool = True) -> Variant:
    return Variant(family, calibration, method, per_channel)


# Every configuration from the set quantize-onnx would synthesise; a spread of the rest from noise and real images;
# two pruning ratios. About 2/3 of them land between 40 % and 100 % of the teacher's accuracy on ResNet-20.
VARIANTS = ([quantized(family, "fastdfkd", method, per_channel) for family in CONFIGS for method in ("MinMax", "Percentile")
             for per_channel in (True, False)]
            + [quantized("W8A8", "gaussian", "MinMax", False), quantized("W4A8", "gaussian", "MinMax"),
               quantized("W4A8", "gaussian", "Percentile", False), quantized("W4A4", "gaussian", "MinMax"),
               quantized("W4A4", "gaussian", "Percentile")]
            + [quantized("W8A8", "real", "Percentile"), quantized("W4A8", "real", "MinMax", False),
               quantized("W4A4", "real", "MinMax"), quantized("W4A4", "real", "Percentile", False)]
            + [Variant("pruned", "fastdfkd", speed_up=speed_up) for speed_up in (1.5, 2.0)])
VARIANT_NAMES = [variant.slug for variant in VARIANTS]


# -- building the variants (cached) ------------------------------------------------------------


def variant_folder(teacher: str, samples: int, seed: int) -> Path:
    """Where a teacher's variants are cached: a folder per calibration size, real-image permutation and package version."""
    return cache_path("label_free", 0).parent / "label_free" / f"{teacher}-{samples}img-seed{seed}-v{__version__}"


class Builder:
    """Builds a teacher's variants into the cache on demand, each calibration set made at most once."""

    def __init__(self, name: str, teacher, samples: int, real: np.ndarray, folder: Path) -> None:
        self.name, self.teacher, self.samples, self.real, self.folder = name, teacher, samples, real, folder
        self.sets: dict[tuple[str, int], np.ndarray] = {}
        self.manifest_path = folder / "manifest.json"
        self.manifest: dict[str, Any] = json.loads(self.manifest_path.read_text()) if self.manifest_path.exists() else {}
        self.pre: Path | None = None

    def calibration(self, source: str, bits: int) -> np.ndarray:
        """The ``--samples`` calibration images of ``source`` for a grid of ``bits``-bit activations (made once)."""
        key = (source, bits if source == "fastdfkd" else 0)
        if key not in self.sets:
            if source == "real":
                self.sets[key] = self.real
            elif source == "gaussian":
                noise = cold_source("gaussian", self.teacher, seed=0, clip=False).synthetic_set(self.samples)
                self.sets[key] = noise.inputs.cpu().numpy()
            else:  # what quantize-onnx calibrates that width on (seed 0), from cold
                made = synthetic_set(self.teacher, self.samples, activation_bits=bits, seed=0, cache=False)
                self.sets[key] = made.inputs.cpu().numpy()
        return self.sets[key]

    def prepared(self) -> Path:
        if self.pre is None:
            _, self.pre = prepared_onnx(self.teacher.model.cpu(), self.folder, "fp32", self.teacher.input_shape)
            self.teacher.model.to(self.teacher.device)
        return self.pre

    def load(self, variant: Variant) -> tuple[Callable[[torch.Tensor], Any], float]:
        """The variant as the user's ``load_compressed`` gives it (built first if not cached), and its build seconds."""
        path = self.folder / (f"{variant.slug}.pt" if variant.family == "pruned" else f"{variant.slug}.onnx")
        if not path.exists() or variant.slug not in self.manifest:
            self.folder.mkdir(parents=True, exist_ok=True)
            started = time.perf_counter()
            self.build(variant, path)
            seconds = round(time.perf_counter() - started, 2)
            self.manifest[variant.slug] = {**asdict(variant), "name": variant.name, "build_seconds": seconds}
            with atomic_path(self.manifest_path) as temporary:
                temporary.write_text(json.dumps(self.manifest, indent=2))
        seconds = self.manifest[variant.slug]["build_seconds"]
        if variant.family == "pruned":
            return load_compressed(self.spec, self.teacher, weights=path), seconds
        return load_compressed(path, self.teacher), seconds

    @property
    def spec(self) -> str:
        return f"examples.cifar_resnet:{self.name}"

    def build(self, variant: Variant, path: Path) -> None:
        if variant.family == "pruned":  # what `fastdfkd prune --recovery-steps 0` does, from the default source at seed 0
            source = get_source("fastdfkd", self.teacher, seed=0, cache=False)
            student, report = prune_datafree(self.teacher, source, variant.speed_up, recovery=DistillConfig(steps=0), bn_samples=512)
            save_pruned(student, path, self.spec, report)
            print(f"  built {variant.name}: {report.summary()}", flush=True)
            return
        weights, activations = CONFIGS[variant.family]
        inputs = self.calibration(variant.calibration, 4 if activations == QuantType.QUInt4 else 8)
        pre = self.prepared()
        # quantize-onnx's grid for int4 weights, [-7, 7]
        options = with_symmetric_int4_weights(pre, {"weight_type": weights, "per_channel": variant.per_channel})
        with tempfile.TemporaryDirectory() as folder:
            made = quantized_model(pre, inputs, weights, activations, getattr(CalibrationMethod, variant.method), Path(folder),
                                   per_channel=variant.per_channel, **{k: v for k, v in options.items() if k == "extra_options"})
            with atomic_path(path) as temporary:
                shutil.copyfile(made, temporary)
        print(f"  built {variant.name}", flush=True)


# -- scoring ---------------------------------------------------------------------------------------


@torch.no_grad()
def top1(model: Callable[[torch.Tensor], Any], x: torch.Tensor, y: torch.Tensor, batch_size: int = 500) -> float:
    """Top-1 accuracy (%) of a compressed model as ``load_compressed`` gives it (a callable on normalised batches)."""
    device = next(iter(model.state_dict().values())).device if isinstance(model, torch.nn.Module) else torch.device("cpu")
    correct = sum(int((model(x[i:i + batch_size].to(device)).argmax(1).cpu() == y[i:i + batch_size]).sum())
                  for i in range(0, len(y), batch_size))
    return 100.0 * correct / len(y)


def ranks(values: np.ndarray) -> np.ndarray:
    """Ranks from 1, ties sharing their mean rank."""
    order = np.argsort(values, kind="stable")
    ranked = np.empty(len(values))
    ranked[order] = np.arange(1, len(values) + 1)
    for value in np.unique(values):
        tied = values == value
        ranked[tied] = ranked[tied].mean()
    return ranked


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(ranks(np.asarray(a, float)), ranks(np.asarray(b, float)))[0, 1])


def seed_summary(variants: list[dict[str, Any]], seed: int, teacher_accuracy: float) -> dict[str, Any]:
    """Spearman ρ, MAE, P90 and coverage of one seed's estimates over the variants, and their cost."""
    real = np.array([v["accuracy"] for v in variants])
    estimates = [next(e for e in v["estimates"] if e["seed"] == seed) for v in variants]
    relative = np.array([e["estimated_relative_accuracy"] for e in estimates])
    error = np.abs(relative / 100 * teacher_accuracy - real)
    raw_error = np.abs(np.array([e["agreement"] for e in estimates]) / 100 * teacher_accuracy - real)
    real_relative = 100 * real / teacher_accuracy
    intervals = [e["interval"] for e in estimates]
    inside = [low <= r <= high for r, (low, high) in zip(real_relative, intervals)]
    above = sum(r > high for r, (_, high) in zip(real_relative, intervals))  # misses where the variant did better
    return {"seed": seed, "spearman": round(spearman(relative, real), 4), "mae": round(float(error.mean()), 3),
            "p90": round(float(np.quantile(error, 0.9)), 3), "max": round(float(error.max()), 3),
            "coverage": round(100 * float(np.mean(inside)), 1), "misses_above_teacher": int(above),
            "agreement_as_estimate_mae": round(float(raw_error.mean()), 3),
            "seconds_per_variant": round(float(np.mean([e["seconds"] for e in estimates])), 3)}


def run_teacher(name: str, args) -> dict[str, Any]:
    device = resolve_device(args.device)
    teacher = build_teacher(name, device, args.data_dir)
    # one seeded permutation of train_10k (benchmarks.common.data.seeded_real_sets's, seed 0's slot): the first --samples
    # images calibrate the "real" variants, the rest are the held-out split
    all_x, all_y = load_images("train_10k", args.data_dir, limit=10_000, seed=args.seed)
    real = all_x[:args.samples].numpy()
    eval_x, eval_y = load_images("test_a", args.data_dir) if args.eval == "test_a" else (all_x[args.samples:], all_y[args.samples:])
    teacher_accuracy = accuracy(teacher.model, eval_x.to(device), eval_y.to(device))
    print(f"{name}: FP32 {teacher_accuracy:.2f} % on {args.eval} ({len(eval_y)} images)", flush=True)

    held_out, sets = [], {}
    for seed in args.seeds:  # each seed's held-out set made once, then every variant is judged on it
        started = time.perf_counter()
        # from cold (warm-up included): the product call pays this unless the seed's warm generator is cached
        sets[seed] = held_out_set(teacher, args.held_out_samples, seed, cache=False)
        seconds = time.perf_counter() - started
        warmup = float(sets[seed].metadata["settings"].get("warmup_seconds", 0.0))
        held_out.append({"seed": seed, "seconds": round(seconds, 2), "warmup_seconds": round(warmup, 2)})
        print(f"  held-out set, seed {seed}: {seconds:.1f} s from cold ({warmup:.1f} s of it warm-up)", flush=True)

    builder = Builder(name, teacher, args.samples, real, variant_folder(name, args.samples, args.seed))
    variants, reuse_check = [], None
    for variant in (variant for variant in VARIANTS if variant.slug in args.variants):
        model, build_seconds = builder.load(variant)  # one at a time: each ONNX Runtime session keeps its own memory
        score = top1(model, eval_x, eval_y)
        estimates = []
        for seed in args.seeds:
            judged = fidelity(teacher, model, held_out=sets[seed])
            estimates.append({"seed": seed, "agreement": round(judged.agreement, 3),
                              "estimated_relative_accuracy": round(judged.estimated_relative_accuracy, 3),
                              "interval": [round(bound, 3) for bound in judged.interval], "seconds": judged.seconds})
        variants.append({"name": variant.name, "family": variant.family, "calibration": variant.calibration,
                         "build_seconds": build_seconds, "accuracy": round(score, 2),
                         "relative_accuracy": round(100 * score / teacher_accuracy, 2), "estimates": estimates})
        print(f"  {variant.name}: {score:.2f} %; estimated " + ", ".join(
            f"{e['estimated_relative_accuracy'] * teacher_accuracy / 100:.2f}" for e in estimates), flush=True)
        if reuse_check is None:  # the set passed in is the one fidelity(seed=...) makes itself
            seed = args.seeds[0]
            own = fidelity(teacher, model, seed=seed, num_samples=args.held_out_samples, source_options={"cache": False})
            reuse_check = {"variant": variant.name, "seed": seed, "agreement_reused": estimates[0]["agreement"],
                           "agreement_own": round(own.agreement, 3), "seconds_own": own.seconds}
            print(f"  reuse check ({variant.name}, seed {seed}): agreement {reuse_check['agreement_reused']} with the reused "
                  f"set, {reuse_check['agreement_own']} from fidelity(seed={seed}) ({own.seconds:.1f} s)", flush=True)
        del model
    for seed in args.seeds:
        summary = seed_summary(variants, seed, teacher_accuracy)
        print(f"  seed {seed}: ρ {summary['spearman']:.3f}, MAE {summary['mae']:.2f}, P90 {summary['p90']:.2f}, "
              f"coverage {summary['coverage']:.0f} %", flush=True)
    return {"teacher": name, "teacher_accuracy": round(teacher_accuracy, 2), "eval_images": len(eval_y),
            "variant_cache": str(builder.folder), "held_out": held_out, "reuse_check": reuse_check, "variants": variants,
            "seeds": [seed_summary(variants, seed, teacher_accuracy) for seed in args.seeds]}


# -- report ----------------------------------------------------------------------------------------

METRICS = {"spearman": "Spearman ρ", "mae": "MAE (points)", "p90": "P90 error (points)", "max": "max error (points)",
           "coverage": "interval coverage (%)", "misses_above_teacher": "misses above",
           "agreement_as_estimate_mae": "MAE of raw agreement (points)",
           "seconds_per_variant": "s per estimate"}


def cell(values: list[float], digits: int) -> str:
    return f"{np.mean(values):.{digits}f}" if len(values) == 1 else f"{np.mean(values):.{digits}f} ± {np.std(values):.{digits}f}"


def markdown(results: dict) -> str:
    lines = heading(f"Label-free fidelity estimates against real accuracy on {results['eval']}", results,
                    "Each variant judged by `fidelity(teacher, model, held_out=held_out_set(teacher, {held_out_samples}, seed))`, "
                    "seeds {seeds}; real accuracy on {eval}; variants calibrated on {samples} images; {threads} threads, "
                    "device {device}. Errors are |estimated relative accuracy × the teacher's real accuracy − real accuracy| "
                    "in accuracy points; coverage is the share of variants whose real relative accuracy lies in the 95 % "
                    "interval (misses above: variants that did better on {eval} than the whole interval); "
                    "MAE of raw agreement: the agreement itself read as the relative accuracy. "
                    "Held-out sets are made from cold (warm-up included); with the seed's warm generator cached (as after "
                    "a quantize or prune command with the same seed and source options) only the rest is paid. "
                    "Not a timing run (the machine was shared).")
    for teacher in results["teachers"]:
        seeds = teacher["seeds"]
        title = f"## {teacher['teacher']} (FP32 {teacher['teacher_accuracy']:.2f} % on {results['eval']}, {len(teacher['variants'])} variants)"
        lines += [title, "",
                  "| seed | " + " | ".join(METRICS.values()) + " | held-out set s (from cold / of it warm-up) |",
                  "| --- |" + " --- |" * (len(METRICS) + 1)]
        digits = {"spearman": 3, "coverage": 0, "misses_above_teacher": 0, "seconds_per_variant": 2}
        for row, held in zip(seeds, teacher["held_out"]):
            lines.append(f"| {row['seed']} | " + " | ".join(f"{row[key]:.{digits.get(key, 2)}f}" for key in METRICS)
                         + f" | {held['seconds']:.1f} / {held['warmup_seconds']:.1f} |")
        lines.append("| mean ± std | " + " | ".join(cell([row[key] for row in seeds], digits.get(key, 2)) for key in METRICS)
                     + f" | {cell([h['seconds'] for h in teacher['held_out']], 1)} / "
                       f"{cell([h['warmup_seconds'] for h in teacher['held_out']], 1)} |")
        check = teacher["reuse_check"]
        if check:
            lines += ["", (f"Reusing one held-out set per seed: `{check['variant']}`, seed {check['seed']}: agreement "
                           f"{check['agreement_reused']:.2f} % on the reused set, {check['agreement_own']:.2f} % from "
                           f"`fidelity(teacher, model, seed={check['seed']})` ({check['seconds_own']:.1f} s, its set made from cold).")]
        lines += ["", "Per variant (mean ± std over seeds; interval: the mean of each bound):", "",
                  "| variant | real accuracy | real relative | agreement | estimated relative | 95 % interval | estimated accuracy | error |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- |"]
        scale = teacher["teacher_accuracy"] / 100
        for variant in sorted(teacher["variants"], key=lambda v: -v["accuracy"]):
            estimates = variant["estimates"]
            relative = [e["estimated_relative_accuracy"] for e in estimates]
            low, high = (np.mean([e["interval"][i] for e in estimates]) for i in (0, 1))
            errors = [r * scale - variant["accuracy"] for r in relative]
            lines.append(f"| {variant['name']} | {variant['accuracy']:.2f} | {variant['relative_accuracy']:.1f} | "
                         f"{cell([e['agreement'] for e in estimates], 1)} | {cell(relative, 1)} | {low:.1f}–{high:.1f} | "
                         f"{cell([r * scale for r in relative], 2)} | {cell(errors, 2)} |")
        lines.append("")
    return "\n".join(lines)


MARKERS = {"fastdfkd": "o", "gaussian": "s", "real": "^"}


def plot(results: dict, path: Path) -> None:
    """Estimated against real accuracy per teacher: a point per variant (mean over seeds), the mean 95 % interval as its
    error bar, a colour per family and a marker per calibration set, and the line y = x."""
    plt = pyplot()
    teachers = results["teachers"]
    figure, axes = plt.subplots(1, len(teachers), figsize=(6.5 * len(teachers), 6), squeeze=False)
    colours = dict(zip(FAMILIES, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    for axis, teacher in zip(axes[0], teachers):
        scale = teacher["teacher_accuracy"] / 100
        shown = set()
        for variant in teacher["variants"]:
            estimates = variant["estimates"]
            centre = scale * np.mean([e["estimated_relative_accuracy"] for e in estimates])
            low, high = (scale * np.mean([e["interval"][i] for e in estimates]) for i in (0, 1))
            label = (variant["family"], variant["calibration"])
            axis.errorbar(variant["accuracy"], centre, yerr=[[centre - low], [high - centre]], fmt=MARKERS[variant["calibration"]],
                          color=colours[variant["family"]], capsize=3, alpha=0.85,
                          label=None if label in shown else f"{variant['family']}, {variant['calibration']}")
            shown.add(label)
        lowest = min(min(v["accuracy"], scale * min(e["interval"][0] for e in v["estimates"])) for v in teacher["variants"])
        limits = [max(0.0, 10 * np.floor((lowest - 2) / 10)), 100.0]
        axis.plot(limits, limits, color="grey", linestyle="--", linewidth=1, label="y = x")
        axis.axvline(teacher["teacher_accuracy"], color="grey", linestyle=":", linewidth=1, label="FP32 teacher")
        mean = {key: np.mean([row[key] for row in teacher["seeds"]]) for key in ("spearman", "mae", "coverage")}
        axis.set(xlim=limits, ylim=limits, xlabel=f"real accuracy on {results['eval']} (%)", ylabel="estimated accuracy (%)",
                 title=f"{teacher['teacher']}: ρ {mean['spearman']:.3f}, MAE {mean['mae']:.1f} pt, coverage {mean['coverage']:.0f} %")
        axis.set_aspect("equal")
        axis.legend(fontsize=7, loc="upper left")
    figure.tight_layout()
    with atomic_path(path) as temporary:
        figure.savefig(temporary, dpi=120, format="png")


def rescored(results: dict[str, Any], command: str) -> dict[str, Any]:
    """``results`` with each estimate, interval and seed summary made again from the measured agreements by today's
    :func:`relative_accuracy`; ``command`` is added to the command that measured them."""
    samples = results["held_out_samples"]
    for teacher in results["teachers"]:
        for variant in teacher["variants"]:
            for estimate in variant["estimates"]:
                agreeing = round(estimate["agreement"] * samples / 100)
                relative, interval = relative_accuracy(torch.tensor([1.0] * agreeing + [0.0] * (samples - agreeing)))
                estimate["estimated_relative_accuracy"], estimate["interval"] = round(relative, 3), [round(b, 3) for b in interval]
        teacher["seeds"] = [seed_summary(teacher["variants"], row["seed"], teacher["teacher_accuracy"]) for row in teacher["seeds"]]
    results["environment"]["command"] += f"`, rescored by `{command}"
    return results


def main(argv: list[str] | None = None) -> None:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--teachers", type=choice_list(PRETRAINED), default=["resnet20"],
                        help="pretrained CIFAR-10 ResNets; the results go to label_free_<teachers>[_heldout].*")
    parser.add_argument("--seeds", type=int_list, default=[0, 1, 2], help="held-out set seeds (fidelity's seed)")
    parser.add_argument("--eval", choices=("test_a", "heldout"), default="test_a",
                        help="where real accuracy is measured: test_a, or the train_10k images not used for real calibration")
    parser.add_argument("--samples", type=int, default=512, help="calibration images per variant (quantize-onnx's default)")
    parser.add_argument("--variants", type=choice_list(VARIANT_NAMES), default=VARIANT_NAMES,
                        help="a subset of the variants, by name: " + ", ".join(VARIANT_NAMES))
    parser.add_argument("--held-out-samples", type=int, default=HELD_OUT_SAMPLES,
                        help=f"held-out synthetic inputs each estimate is made on (default {HELD_OUT_SAMPLES}, the commands')")
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks"))
    parser.add_argument("--rescore", type=Path, help="an earlier run's JSON: estimates made again from its agreements, "
                                                     "its report rewritten beside it")
    args = parser.parse_args(argv)
    if args.rescore is not None:
        results = rescored(json.loads(args.rescore.read_text()), environment()["command"])
        publish(args.rescore.with_suffix(""), results, markdown(results))
        plot(results, args.rescore.with_suffix(".png"))
        return
    results = {"eval": args.eval, "samples": args.samples, "seeds": args.seeds, "held_out_samples": args.held_out_samples,
               "device": str(resolve_device(args.device)), "environment": environment(),
               "teachers": [run_teacher(name, args) for name in args.teachers]}
    stem = args.out / ("label_free_" + "_".join(args.teachers) + ("_heldout" if args.eval == "heldout" else "")
                       + (f"_{args.held_out_samples}" if args.held_out_samples != HELD_OUT_SAMPLES else ""))
    publish(stem, results, markdown(results))
    plot(results, stem.with_suffix(".png"))


if __name__ == "__main__":
    main()
