"""PaddleOCR's three graphs (rapidocr-onnxruntime) quantized W8A8 from the ``.onnx`` alone, beside rendered text and noise (issue 44).

    python -m benchmarks.ocr [--parts rec,nodes,cls,det,pipeline] [--samples 64] [--held-out 32] [--words 300] [--pages 24]
                             [--det-pages 32] [--work DIR]

Nobody here trained these models and nobody has their data, so the text is rendered: words (English
words, digits and mixes, all in the recognizer's dictionary) in DejaVu fonts (Debian's
``fonts-dejavu``), dark on light, preprocessed as rapidocr does (resize to height 48 keeping the
aspect, pad to the graph's width, ``(x/255 − 0.5)/0.5``). Each graph is quantized W8A8 QDQ with
per-channel weights (MinMax) three ways, only the calibration data changing:

- ``fastdfkd``: ``fastdfkd synthesize`` from the graph alone, then ``fastdfkd quantize-onnx --calibration``
  (what ``quantize-onnx`` without ``--calibration`` does in one command, split so the set is made once);
- ``rendered``: the same quantization (``quantize_datafree`` with ``calibration=``) on rendered crops or pages;
- ``noise``: the same on N(0, 1) inputs.

For the recognizer, where the loss is: the synthetic set's calibration applied to its Conv nodes alone and
to its MatMul nodes alone, and (``--parts nodes``) every Conv/MatMul node quantized alone, scored on a
validation word set of its own (never the scored words) beside label-free measures on held-out synthetic
inputs. (The float fallback, ``--accuracy-target``, needs an accuracy estimate, which is fitted for
classifiers only, so ``quantize-onnx`` refuses it for this sequence output.) Scores against FP32: the recognizer's exact word accuracy (greedy CTC
with rapidocr's dictionary), the classifier's agreement on upright and upside-down crops, the detector's
pixel F1 of its map thresholded at 0.3 (DB's threshold) against FP32's; then the whole ``RapidOCR``
pipeline with the W8A8 ``fastdfkd`` graphs swapped in, on rendered pages (word accuracy). Every command
runs as a child process, its wall time and peak resident memory (``wait4``) recorded, killed above
``--memory-limit`` GiB. Steps whose output already exists in ``--work`` are reused with their recorded cost.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import shutil
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import torch
from PIL import Image, ImageDraw, ImageFont

from fastdfkd_plugin import Sequence, __version__, calibration_source_options

from .common.cli import choice_list
from .common.paddleocr import GRAPHS, MEAN_STD, graph_path
from .common.processes import run_measured
from .common.report import environment, heading, publish
from .common.teachers import build_teacher

FONTS = Path("/usr/share/fonts/truetype/dejavu")
FONT_FILES = ["DejaVuSans.ttf", "DejaVuSerif.ttf", "DejaVuSansMono.ttf", "DejaVuSans-Bold.ttf", "DejaVuSerif-Italic.ttf",
              "DejaVuSansCondensed.ttf"]
VOCABULARY = ("invoice", "total", "amount", "date", "order", "number", "street", "river", "garden", "window", "paper",
              "market", "station", "summer", "winter", "yellow", "purple", "orange", "silver", "coffee", "bread",
              "letter", "office", "school", "doctor", "engine", "planet", "forest", "island", "mountain", "bridge",
              "castle", "rocket", "travel", "ticket", "budget", "report", "account", "balance", "receipt", "customer",
              "service", "delivery", "payment", "address", "phone", "email", "network", "server", "update", "system",
              "version", "license", "model", "table")
NORMALISATION = ["--mean", ",".join(map(str, MEAN_STD)), "--std", ",".join(map(str, MEAN_STD))]
W8A8 = ["--weight-type", "int8", "--activation-type", "int8", "--per-channel"]
DB_THRESHOLD = 0.3


def words(count: int, rng: np.random.Generator) -> list[str]:
    """Words as documents hold them: lower, Capitalised and UPPER words, numbers, and words with numbers."""
    out = []
    for _ in range(count):
        word, kind = str(rng.choice(VOCABULARY)), rng.integers(6)
        number = str(rng.integers(0, 10 ** int(rng.integers(1, 6))))
        out.append([word, word.capitalize(), word.upper(), number, f"{word}{number[:2]}", f"{word.capitalize()}-{number[:3]}"][kind])
    return out


def render_line(text: str, rng: np.random.Generator) -> np.ndarray:
    """``text`` in a random DejaVu font and size, dark on a light background with a margin: an RGB uint8 crop."""
    font = ImageFont.truetype(str(FONTS / FONT_FILES[rng.integers(len(FONT_FILES))]), int(rng.integers(24, 40)))
    left, top, right, bottom = font.getbbox(text)
    margin = int(rng.integers(3, 10))
    background = int(rng.integers(200, 256))
    image = Image.new("L", (right - left + 2 * margin, bottom - top + 2 * margin), background)
    ImageDraw.Draw(image).text((margin - left, margin - top), text, fill=int(rng.integers(0, 70)), font=font)
    return np.repeat(np.asarray(image)[..., None], 3, axis=2)


def line_input(crop: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """rapidocr's recognizer and classifier preprocessing: height fixed, aspect kept (capped at the width), zero-padded."""
    _, height, width = shape
    resized_w = min(width, math.ceil(height * crop.shape[1] / crop.shape[0]))
    resized = cv2.resize(crop, (resized_w, height)).astype(np.float32)
    out = np.zeros(shape, dtype=np.float32)
    out[:, :, :resized_w] = (resized.transpose(2, 0, 1) / 255 - 0.5) / 0.5
    return out


def render_page(texts: list[str], size: int, rng: np.random.Generator) -> tuple[np.ndarray, list[str]]:
    """Lines of ``texts`` (a few words each) on a light ``size``×``size`` page: an RGB uint8 image, and the words it shows."""
    page = Image.new("L", (size, size), int(rng.integers(215, 256)))
    draw, y, index = ImageDraw.Draw(page), 10, 0
    while index < len(texts):
        font = ImageFont.truetype(str(FONTS / FONT_FILES[rng.integers(len(FONT_FILES))]), int(rng.integers(18, 28)))
        chunk = texts[index : index + int(rng.integers(1, 4))]
        line = "    ".join(chunk)  # gaps wide enough that words read apart, as on a form
        left, top, right, bottom = font.getbbox(line)
        if y + bottom - top + 10 > size:
            break
        if right - left < size - 20:
            draw.text((10 - left, y - top), line, fill=int(rng.integers(0, 60)), font=font)
            index += len(chunk)
        y += bottom - top + int(rng.integers(12, 24))
    return np.repeat(np.asarray(page)[..., None], 3, axis=2), texts[:index]


def page_input(page: np.ndarray) -> np.ndarray:
    """The detector's input for a page: ``(x/255 − 0.5)/0.5``, channels first."""
    return ((page.astype(np.float32) / 255 - 0.5) / 0.5).transpose(2, 0, 1)


class Runner:
    """Runs commands as child processes, recording wall time and peak resident memory; reuses finished steps."""

    def __init__(self, work: Path, limit_gib: float) -> None:
        self.work, self.limit = work, limit_gib * 2**30
        self.costs: dict[str, dict[str, Any]] = {}

    def run(self, name: str, command: list[str], output: Path) -> Path:
        record = output.with_name(output.name + ".cost.json")
        if output.exists() and record.exists():
            self.costs[name] = json.loads(record.read_text())
            return output
        print(f"[{name}] {shlex.join(command)}", flush=True)
        run = run_measured(command, self.limit, env={**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)})
        if run.killed:
            raise SystemExit(f"[{name}] killed above {self.limit / 2**30:g} GiB resident")
        if run.returncode != 0:
            raise SystemExit(f"[{name}] failed ({run.returncode})")
        cost = {"command": shlex.join(command), "seconds": round(run.seconds, 1), "peak_gib": round(run.peak_bytes / 2**30, 2)}
        record.write_text(json.dumps(cost))
        self.costs[name] = cost
        return output


def quantize_on(graph: str, calibration: Path, out: Path, op_types: list[str] | None = None) -> None:
    """A child process's work: ``graph`` quantized W8A8 per-channel by ``quantize_datafree`` calibrated on ``calibration``
    (inputs in a ``.npy``, or a ``fastdfkd synthesize`` set), ``op_types`` alone where given."""
    from fastdfkd_plugin.adapters.onnxruntime import quantize_datafree

    inputs = np.load(calibration) if calibration.suffix == ".npy" else str(calibration)
    quantize_datafree(graph_path(graph), out, input_shape=GRAPHS[graph][1], mean=MEAN_STD, std=MEAN_STD, calibration=inputs,
                      weight_type="int8", activation_type="int8", per_channel=True, evaluate=False,
                      **({"op_types_to_quantize": op_types} if op_types else {}))


def node_damage(synthetic: Path, held_out: np.ndarray, reference: np.ndarray, inputs: np.ndarray, texts: list[str],
                work: Path) -> list[dict[str, Any]]:
    """Each Conv/MatMul node of the recognizer quantized alone (ranges from ``synthetic``, calibrated once): word accuracy
    on ``inputs`` and, label-free, agreement with FP32's outputs ``reference`` on ``held_out`` synthetic inputs (positions,
    mean KL). Also writes
    ``rec.worst-node.onnx``: everything quantized but the node that cost the most words (the fallback real words would drive).
    Reused from ``work`` where both are there."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType

    from fastdfkd_plugin.adapters.equalization import equalize_depthwise_inputs
    from fastdfkd_plugin.adapters.onnxruntime import (
        Requantizer,
        calibration_reader,
        fallback_candidates,
        preprocessed,
        upgrade_opset,
    )

    record, worst_node = work / "rec.nodes.json", work / "rec.worst-node.onnx"
    if record.exists() and worst_node.exists():
        return json.loads(record.read_text())
    fp32, folder = graph_path("rec"), work / "nodes"
    folder.mkdir(exist_ok=True)
    converted = folder / "model.onnx"
    shutil.copyfile(fp32, converted)
    upgrade_opset(converted, fp32)  # per-channel QDQ needs opset 13, as quantize-onnx does it
    calibration = np.load(synthetic)["inputs"]
    model_in, _ = equalize_depthwise_inputs(preprocessed(converted, folder), folder, calibration, 8)  # as quantize-onnx does
    requantizer = Requantizer(model_in, folder / "ranges.json", {
        "quant_format": QuantFormat.QDQ, "per_channel": True, "weight_type": QuantType.QInt8, "activation_type": QuantType.QInt8,
        "calibrate_method": CalibrationMethod.MinMax})
    requantizer.calibrate(folder / "all.onnx", calibration_reader(model_in, calibration, 8))
    characters = dictionary(fp32)
    rows = []
    for name, op_type in fallback_candidates(model_in, requantizer.options):
        path = requantizer.write(folder / "one.onnx", only=[name])
        agreement = held_out_agreement(reference, outputs(path, held_out))
        rows.append({"node": name, "op_type": op_type, "word_accuracy": word_accuracy(path, inputs, texts, characters),
                     "held_out_positions": agreement["positions"], "held_out_kl": agreement["kl"]})
        print(f"  {name} ({op_type}) alone: {rows[-1]['word_accuracy']:.1f} % words", flush=True)
    requantizer.write(worst_node, in_float=[min(rows, key=lambda row: row["word_accuracy"])["node"]])
    record.write_text(json.dumps(rows))
    return rows


def held_out_inputs(count: int, out: Path) -> None:
    """A child process's work: the recognizer's held-out synthetic set (what ``fidelity`` judges on), saved as inputs."""
    from fastdfkd_plugin import held_out_set

    teacher = build_teacher("ppocr_rec", "cpu")
    np.save(out, held_out_set(teacher, count, **calibration_source_options("fastdfkd", 8, teacher)).inputs.numpy())


def held_out_agreement(reference: np.ndarray, other: np.ndarray) -> dict[str, float]:
    """Label-free agreement with FP32's outputs ``reference`` on held-out synthetic inputs: the sequence task's exact
    sequences (%), positions reading the same class (%), and the mean per-position KL."""
    reference_scores, other_scores = torch.from_numpy(reference), torch.from_numpy(other)
    task = Sequence(reference_scores)
    return {"exact_sequence": 100 * float(task.sample_agreement(reference_scores, other_scores).mean()),
            "positions": 100 * float((reference.argmax(-1) == other.argmax(-1)).mean()),
            "kl": float(task.kd_loss(other_scores, reference_scores, 1.0))}


def session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def outputs(path: Path, inputs: np.ndarray, batch: int = 16) -> np.ndarray:
    runner = session(path)
    name = runner.get_inputs()[0].name
    return np.concatenate([runner.run(None, {name: inputs[i : i + batch]})[0] for i in range(0, len(inputs), batch)])


def dictionary(path: Path) -> list[str]:
    """rapidocr's CTC classes: blank, the model's ``character`` metadata (ppocr_keys), then space."""
    return ["blank", *onnx.load(str(path), load_external_data=False).metadata_props[0].value.splitlines(), " "]


def read_words(path: Path, inputs: np.ndarray, characters: list[str]) -> list[str]:
    """Greedy CTC: top class per position, repeats collapsed, blanks dropped."""
    labels = outputs(path, inputs).argmax(-1)
    texts = []
    for row in labels:
        kept = np.r_[True, row[1:] != row[:-1]] & (row != 0)
        texts.append("".join(characters[i] for i in row[kept]))
    return texts


def word_accuracy(path: Path, inputs: np.ndarray, texts: list[str], characters: list[str]) -> float:
    """Share (%) of ``texts`` the recognizer at ``path`` reads exactly from ``inputs``."""
    return 100 * float(np.mean([read.strip() == text for read, text in zip(read_words(path, inputs, characters), texts)]))


def map_f1(reference: np.ndarray, other: np.ndarray) -> float:
    """Pixel F1 (%) of ``other``'s map thresholded at DB's 0.3 against ``reference``'s."""
    truth, found = reference > DB_THRESHOLD, other > DB_THRESHOLD
    hits = float((truth & found).sum())
    return 100 * 2 * hits / max(float(truth.sum() + found.sum()), 1.0)


def with_metadata(quantized: Path, fp32: Path) -> Path:
    """``quantized`` with the FP32 graph's metadata (the recognizer's dictionary, which rapidocr reads from it)."""
    model = onnx.load(str(quantized))
    del model.metadata_props[:]
    model.metadata_props.extend(onnx.load(str(fp32), load_external_data=False).metadata_props)
    out = quantized.with_suffix(".meta.onnx")
    onnx.save(model, str(out))
    return out


def pipeline_accuracy(det: Path, cls: Path, rec: Path, pages: list[np.ndarray], truths: list[list[str]]) -> float:
    """Share (%) of the rendered words that ``RapidOCR`` with these graphs reads, counted per page as a multiset."""
    from rapidocr_onnxruntime import RapidOCR

    engine = RapidOCR(det_model_path=str(det), cls_model_path=str(cls), rec_model_path=str(rec))
    found = total = 0
    for page, truth in zip(pages, truths):
        result, _ = engine(page[..., ::-1].copy())  # rapidocr takes BGR arrays
        read = [word for _, text, _ in (result or []) for word in text.split()]
        for word in truth:
            if word in read:
                read.remove(word)
                found += 1
        total += len(truth)
    return 100 * found / max(total, 1)


def variants(runner: Runner, graph: str, real: np.ndarray, args: argparse.Namespace) -> dict[str, Path]:
    """The graph's W8A8 models: calibrated on the product's synthetic set, on rendered inputs, on noise."""
    shape = GRAPHS[graph][1]
    work, samples = args.work, (args.det_samples if graph == "det" else args.samples)
    spec = ["--input-shape", ",".join(map(str, shape)), *NORMALISATION]
    synthetic = runner.run(f"{graph} synthesize", [sys.executable, "-m", "fastdfkd_plugin.cli", "synthesize", "--model",
                                                    str(graph_path(graph)), *spec, "--num-samples", str(samples), "--batch-size", "8",
                                                    "--activation-bits", "8", "-q", "--out", str(work / f"{graph}.synthetic.npz")],
                           work / f"{graph}.synthetic.npz")
    made = {}
    for name, step, flags, stem in (("fastdfkd", "quantize-onnx", [], "fastdfkd"),
                                    ("fastdfkd, --no-equalize", "no-equalize", ["--no-equalize"], "no-equalize")):
        made[name] = runner.run(f"{graph} {step}", [sys.executable, "-m", "fastdfkd_plugin.cli", "quantize-onnx", "--onnx",
                                                    str(graph_path(graph)), *spec, *W8A8, *flags, "--calibration", str(synthetic),
                                                    "--no-evaluate", "-q", "--out", str(work / f"{graph}.{stem}.onnx")],
                                work / f"{graph}.{stem}.onnx")
    noise = np.random.default_rng(args.seed).standard_normal((samples, *shape)).astype(np.float32)
    for name, inputs in (("rendered", real[:samples]), ("noise", noise)):
        np.save(work / f"{graph}.{name}.npy", inputs)
        made[name] = runner.run(f"{graph} {name}", [sys.executable, "-m", "benchmarks.ocr", "--quantize", graph,
                                                    str(work / f"{graph}.{name}.npy"), str(work / f"{graph}.{name}.onnx")],
                                work / f"{graph}.{name}.onnx")
    if graph == "rec":
        for op_type in ("Conv", "MatMul"):
            made[f"fastdfkd, {op_type} nodes only"] = runner.run(
                f"rec {op_type} only", [sys.executable, "-m", "benchmarks.ocr", "--quantize", graph, str(synthetic),
                                        str(work / f"rec.{op_type}.onnx"), "--op-types", op_type], work / f"rec.{op_type}.onnx")
    return made


def quantized_weight_share(path: Path) -> float:
    """Share (%) of Conv/MatMul/Gemm nodes whose weight goes through a DequantizeLinear."""
    graph = onnx.load(str(path)).graph
    dequantized = {node.output[0] for node in graph.node if node.op_type == "DequantizeLinear"}
    nodes = [node for node in graph.node if node.op_type in ("Conv", "MatMul", "Gemm")]
    return 100 * sum(node.input[1] in dequantized for node in nodes) / max(len(nodes), 1)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", type=choice_list(["rec", "nodes", "cls", "det", "pipeline"]),
                        default=["rec", "nodes", "cls", "det", "pipeline"], help="nodes: the recognizer's per-node damage (needs rec)")
    parser.add_argument("--samples", type=int, default=64, help="calibration inputs per source for rec and cls")
    parser.add_argument("--det-samples", type=int, default=32, help="calibration pages per source for det")
    parser.add_argument("--held-out", type=int, default=32, help="held-out synthetic inputs the label-free measures judge on")
    parser.add_argument("--words", type=int, default=300, help="rendered words scored")
    parser.add_argument("--pages", type=int, default=24, help="rendered pages the pipeline reads")
    parser.add_argument("--det-pages", type=int, default=32, help="rendered pages the detector's F1 is scored on")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--memory-limit", type=float, default=12.0,
                        help="GiB resident above which a command is killed (issue 44: every command within 12)")
    parser.add_argument("--work", type=Path, default=Path("ocr-work"), help="folder for sets and models (reused)")
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks/ocr"))
    parser.add_argument("--quantize", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--op-types", help=argparse.SUPPRESS)  # with --quantize
    parser.add_argument("--held-out-set", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.held_out_set:
        return held_out_inputs(int(args.held_out_set[0]), Path(args.held_out_set[1]))
    if args.quantize:
        return quantize_on(args.quantize[0], Path(args.quantize[1]), Path(args.quantize[2]),
                           args.op_types.split(",") if args.op_types else None)

    args.work.mkdir(parents=True, exist_ok=True)
    runner, rng = Runner(args.work, args.memory_limit), np.random.default_rng(args.seed)
    texts = words(args.words, rng)
    crops = [render_line(text, rng) for text in texts]
    results: dict[str, Any] = {"environment": environment(), "package_version": __version__, "words": args.words,
                               "samples": args.samples, "det_samples": args.det_samples, "det_pages": args.det_pages, "pages": args.pages, "held_out": args.held_out, "graphs": {}}
    calibration_words = [render_line(text, rng) for text in words(args.samples, rng)]  # never scored
    made: dict[str, dict[str, Path]] = {}
    if "rec" in args.parts:
        fp32, shape = graph_path("rec"), GRAPHS["rec"][1]
        characters = dictionary(fp32)
        assert all(char in characters for text in texts for char in text), "a rendered word leaves the dictionary"
        inputs = np.stack([line_input(crop, shape) for crop in crops])
        made["rec"] = variants(runner, "rec", np.stack([line_input(crop, shape) for crop in calibration_words]), args)
        held_out = np.load(runner.run("rec held-out set", [sys.executable, "-m", "benchmarks.ocr", "--held-out-set", str(args.held_out),
                                                           str(args.work / "rec.held_out.npy")], args.work / "rec.held_out.npy"))
        reference = outputs(fp32, held_out)
        if "nodes" in args.parts:
            validation = np.random.default_rng([args.seed, 2])  # words of its own: the nodes are never judged on the scored words
            validation_texts = words(args.words, validation)
            validation_inputs = np.stack([line_input(render_line(text, validation), shape) for text in validation_texts])
            nodes = node_damage(args.work / "rec.synthetic.npz", held_out, reference, validation_inputs, validation_texts, args.work)
            made["rec"]["fastdfkd, its most damaging node (validation words) in float"] = args.work / "rec.worst-node.onnx"
        results["graphs"]["rec"] = {
            "word_accuracy": {name: word_accuracy(path, inputs, texts, characters) for name, path in {"FP32": fp32, **made["rec"]}.items()},
            "held_out_agreement": {name: held_out_agreement(reference, outputs(path, held_out)) for name, path in made["rec"].items()},
            "quantized_weights": {name: quantized_weight_share(path) for name, path in made["rec"].items()}}
        if "nodes" in args.parts:
            results["graphs"]["rec"] |= {"nodes": nodes,
                                         "validation_fp32": word_accuracy(fp32, validation_inputs, validation_texts, characters)}
    if "cls" in args.parts:
        fp32, shape = graph_path("cls"), GRAPHS["cls"][1]
        both = [*crops, *(crop[::-1, ::-1] for crop in crops)]  # upright and upside down
        inputs = np.stack([line_input(crop, shape) for crop in both])
        made["cls"] = variants(runner, "cls", np.stack([line_input(crop, shape) for crop in calibration_words]), args)
        reference = outputs(fp32, inputs).argmax(-1)
        results["graphs"]["cls"] = {"fp32_upright_share": 100 * float(np.mean(reference[: len(crops)] == 0)), "agreement": {
            name: 100 * float(np.mean(outputs(path, inputs).argmax(-1) == reference)) for name, path in made["cls"].items()}}
    if "det" in args.parts or "pipeline" in args.parts:
        size = GRAPHS["det"][1][1]
        calibration_pages = [render_page(words(40, rng), size, rng)[0] for _ in range(args.det_samples)]
    if "det" in args.parts:
        fp32 = graph_path("det")
        scored = np.random.default_rng([args.seed, 1])  # a stream of its own: how many pages are scored changes no other set
        inputs = np.stack([page_input(render_page(words(40, scored), size, scored)[0]) for _ in range(args.det_pages)])
        made["det"] = variants(runner, "det", np.stack([page_input(page) for page in calibration_pages]), args)
        reference = outputs(fp32, inputs, batch=4)
        results["graphs"]["det"] = {"f1": {name: map_f1(reference, outputs(path, inputs, batch=4)) for name, path in made["det"].items()}}
    if "pipeline" in args.parts and all(graph in made for graph in ("rec", "cls", "det")):
        truth_pages, truths = zip(*(render_page(words(30, rng), 640, rng) for _ in range(args.pages)))
        results["graphs"]["pipeline"] = pipeline_scores(made, list(truth_pages), list(truths))
    results["costs"] = runner.costs
    publish(args.out, results, markdown(results))


def pipeline_scores(made: dict[str, dict[str, Path]], pages: list[np.ndarray], truths: list[list[str]]) -> dict[str, float]:
    """The pipeline's words with FP32 graphs, all three quantized, and each one alone quantized (where the loss is)."""
    fp32 = {graph: graph_path(graph) for graph in GRAPHS}
    quantized = {"det": made["det"]["fastdfkd"], "cls": made["cls"]["fastdfkd"], "rec": with_metadata(made["rec"]["fastdfkd"], fp32["rec"])}
    rows = {"FP32": fp32, "W8A8 fastdfkd (det, cls, rec)": quantized,
            **{f"W8A8 fastdfkd {graph} only": {**fp32, graph: quantized[graph]} for graph in ("det", "cls", "rec")}}
    return {name: pipeline_accuracy(graphs["det"], graphs["cls"], graphs["rec"], pages, truths) for name, graphs in rows.items()}


def node_lines(nodes: list[dict[str, Any]], fp32: float) -> list[str]:
    """The recognizer's most damaging nodes, and how well each label-free measure ranks the nodes by their damage."""
    def spearman(values: list[float]) -> float:
        return float(np.corrcoef(*(np.argsort(np.argsort(column)) for column in ([n["word_accuracy"] for n in nodes], values)))[0, 1])

    ranked = sorted(nodes, key=lambda node: node["word_accuracy"])
    lines = [f"### Where the loss is: each of the {len(nodes)} Conv/MatMul nodes quantized alone", "",
             (f"Validation words of their own (FP32 reads {fp32:.1f} %). Label-free measures on the held-out synthetic inputs rank "
              f"the nodes by their word damage with Spearman {spearman([n['held_out_positions'] for n in nodes]):.2f} (positions "
              f"agreeing) and {spearman([-n['held_out_kl'] for n in nodes]):.2f} (−KL). The ten most damaging:"), "",
             "| node | op | words read, quantized alone | held-out positions agreeing | held-out KL |", "| --- | --- | --- | --- | --- |"]
    lines += [f"| {n['node']} | {n['op_type']} | {n['word_accuracy']:.1f} % | {n['held_out_positions']:.1f} % | {n['held_out_kl']:.3f} |"
              for n in ranked[:10]]
    return lines + [""]


def markdown(results: dict[str, Any]) -> str:
    graphs = results["graphs"]
    lines = heading("PaddleOCR (rapidocr-onnxruntime) W8A8 from the .onnx alone", results,
                    "{words} rendered words, {det_pages} pages for the detector's F1, {pages} for the pipeline; calibration: {samples} "
                    "inputs per source ({det_samples} pages for the detector); "
                    "label-free measures on {held_out} held-out synthetic inputs; torch {torch}, {threads} threads. Synthesis "
                    "starts from the warm generator in FASTDFKD_CACHE_DIR where there is one (a first run per graph adds "
                    "its warm-up); times are wall times on whatever else the machine runs.")
    if "rec" in graphs:
        rec = graphs["rec"]
        lines += ["## Recognizer (ch_PP-OCRv4_rec_infer, 3×48×320): exact word accuracy", "",
                  ("| calibration | word accuracy | Conv/MatMul/Gemm weights quantized | held-out synthetic: exact sequences | "
                   "positions |"), "| --- | --- | --- | --- | --- |"]
        for name, score in rec["word_accuracy"].items():
            agreement = rec["held_out_agreement"].get(name, {"exact_sequence": 100.0, "positions": 100.0})
            lines.append(f"| {name} | {score:.1f} % | {rec['quantized_weights'].get(name, 0):.0f} % | "
                         f"{agreement['exact_sequence']:.1f} % | {agreement['positions']:.1f} % |")
        lines.append("")
        if "nodes" in rec:
            lines += node_lines(rec["nodes"], rec["validation_fp32"])
    if "cls" in graphs:
        lines += ["## Classifier (ch_ppocr_mobile_v2.0_cls, 3×48×192): agreement with FP32, upright and upside-down crops", "",
                  "| calibration | agreement |", "| --- | --- |"]
        lines += [f"| {name} | {value:.1f} % |" for name, value in graphs["cls"]["agreement"].items()] + [""]
    if "det" in graphs:
        lines += ["## Detector (ch_PP-OCRv4_det, 3×320×320): pixel F1 of the map > 0.3 against FP32's", "",
                  "| calibration | F1 |", "| --- | --- |"]
        lines += [f"| {name} | {value:.1f} |" for name, value in graphs["det"]["f1"].items()] + [""]
    if "pipeline" in graphs:
        lines += ["## RapidOCR pipeline on rendered pages: words read", "", "| graphs | word accuracy |", "| --- | --- |"]
        lines += [f"| {name} | {value:.1f} % |" for name, value in graphs["pipeline"].items()] + [""]
    lines += ["## Cost per command (wall time, peak resident memory of the process)", "", "| step | seconds | peak GiB |", "| --- | --- | --- |"]
    lines += [f"| {name} | {cost['seconds']:.0f} | {cost['peak_gib']:.2f} |" for name, cost in results["costs"].items()]
    lines += ["", "Commands:", ""] + [f"- {name}: `{cost['command']}`" for name, cost in results["costs"].items()]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
