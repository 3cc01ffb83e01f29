"""ONNX export and its verification: a torch model to an ``.onnx`` file that is checked against torch.

:func:`export_and_verify` exports a torch model and runs the file in ONNX Runtime beside
torch on synthetic batches, which look like real data and so catch divergences (traced
control flow, range-dependent ops) that noise inputs hide; ``fastdfkd export-onnx`` does
it from the command line and can write the batches as ONNX test-data folders.
:func:`onnx_accuracy` and :func:`onnx_scores` score an ONNX file, for the quantization
adapters too (reading a file's input: :mod:`fastdfkd_plugin.teacher.onnx.graph`). onnx and
onnxruntime (or onnxruntime-gpu) are imported only when used.
"""

from __future__ import annotations

import argparse
import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from ..cli.options import add_model_arguments, add_source_arguments, load_teacher, source_from_args
from ..errors import FastDFKDError, reason
from ..evaluation.metrics import eval_chunk
from ..hooks.hookspecs import hookimpl
from ..runtime.io import atomic_path, check_output_folder, staged_folder
from ..teacher.onnx.graph import is_onnx_file, ort_runtime, session
from ..teacher.onnx.operators import onnx_package
from ..teacher.tasks import DEFAULT_IGNORE_INDEX, PredictionTask, make_task, map_outputs, output_leaves
from ..teacher.teacher import Teacher, unflatten_like
from .generic import rebatch

VERIFY_WARMUP_TASKS = 3  # export-onnx's default warm-up: verification needs realistic inputs, not the best ones
TEST_DATA_ENTRIES = "test_data_set_*"  # what export-onnx --test-data writes into its folder


# -- ONNX test data ---------------------------------------------------------------------------------

def save_onnx_test_data(folder: str | Path, batches: Sequence[dict[str, np.ndarray]],
                        outputs: Sequence[dict[str, np.ndarray]] | None = None, overwrite: bool = False) -> None:
    """The ONNX backend-test layout: ``folder/test_data_set_N/input_M.pb`` (and ``output_M.pb``).

    Written into a staging folder and moved into place. A non-empty ``folder`` is refused
    unless ``overwrite``; then only its ``test_data_set_*`` folders are replaced.
    """
    onnx = onnx_package()
    with staged_folder(folder, overwrite, replaces=TEST_DATA_ENTRIES) as staging:
        for index, batch in enumerate(batches):
            case = staging / f"test_data_set_{index}"
            case.mkdir()
            for kind, tensors in (("input", batch), ("output", outputs[index] if outputs else {})):
                for position, (name, array) in enumerate(tensors.items()):
                    proto = onnx.numpy_helper.from_array(np.ascontiguousarray(array), name=name)
                    (case / f"{kind}_{position}.pb").write_bytes(proto.SerializeToString())


def load_onnx_test_data(folder: str | Path, kind: str = "input") -> list[dict[str, np.ndarray]]:
    onnx = onnx_package()
    cases = sorted(Path(folder).glob("test_data_set_*"), key=lambda p: int(p.name.rsplit("_", 1)[1]))
    if not cases:
        raise FastDFKDError(f"{folder} holds no test_data_set_N folders")
    loaded = []
    for case in cases:
        tensors = {}
        for file in sorted(case.glob(f"{kind}_*.pb"), key=lambda p: int(p.stem.rsplit("_", 1)[1])):
            proto = onnx.TensorProto()
            proto.ParseFromString(file.read_bytes())
            tensors[proto.name] = onnx.numpy_helper.to_array(proto)
        loaded.append(tensors)
    return loaded


# -- export and verification ------------------------------------------------------------------------

@dataclass
class Verification:
    """How closely an ONNX model reproduces the torch model on a set of inputs."""

    batches: int
    samples: int
    max_abs_error: float
    max_rel_error: float  # max |onnx − torch| / max |torch|
    top1_agreement: float | None  # percent of inputs (pixels, for class maps) with the same top-1; None without class scores

    def failures(self, atol: float, rtol: float, min_agreement: float) -> list[str]:
        problems = []
        if self.max_abs_error > atol and self.max_rel_error > rtol:
            problems.append(f"max error {self.max_abs_error:.3g} (relative {self.max_rel_error:.3g}) exceeds atol {atol:g} / rtol {rtol:g}")
        if self.top1_agreement is not None and self.top1_agreement < min_agreement:
            problems.append(f"top-1 agreement {self.top1_agreement:.1f} % is below {min_agreement:g} %")
        return problems

    def summary(self) -> str:
        """What the comparison measured: the top-1 agreement for class scores, the largest relative error otherwise."""
        if self.top1_agreement is not None:
            return f"top-1 agreement {self.top1_agreement:.1f} %"
        return f"max relative error {self.max_rel_error:.2g}"


def onnx_scores(model_path: str | Path, inputs: np.ndarray, labels: np.ndarray, task: str | PredictionTask = "auto",
                batch_size: int | None = None, ignore_index: int = DEFAULT_IGNORE_INDEX) -> dict[str, float]:
    """The task's scores (%) of an ONNX model's first output on labelled inputs, e.g. your own validation data after
    quantizing: accuracy for class logits; mIoU and pixel accuracy for class maps (``ignore_index`` pixels left out).

    ``task`` (default: recognised from the outputs) may be a Teacher's own (``teacher.task``).
    """
    runner = session(model_path)
    name = runner.get_inputs()[0].name
    size = batch_size or eval_chunk(tuple(inputs.shape[1:]))
    chunks = ((torch.from_numpy(runner.run(None, {name: np.asarray(inputs[start : start + size], dtype=np.float32)})[0]),
               torch.as_tensor(labels[start : start + size])) for start in range(0, len(labels), size))
    first = next(chunks)
    return make_task(task, first[0]).scores(itertools.chain([first], chunks), ignore_index)


def onnx_accuracy(model_path: str | Path, inputs: np.ndarray, labels: np.ndarray, batch_size: int = 500) -> float:
    """Top-1 accuracy (%) of an ONNX classifier on labelled inputs (:func:`onnx_scores` for other tasks)."""
    return onnx_scores(model_path, inputs, labels, "classification", batch_size)["accuracy"]


@torch.no_grad()
def verify_onnx(teacher: Teacher, model_path: str | Path, batches: Sequence[torch.Tensor]) -> Verification:
    """Run the teacher (torch) and ``model_path`` (ONNX Runtime, CPU) on the same batches and compare their outputs.

    The ONNX model's outputs are put back in the structure of the torch output, so the
    teacher's ``output_transform`` picks the same outputs from both; every one is compared
    (largest error). Top-1 agreement is measured only where the teacher's task scores two or
    more classes (per input, per pixel for class maps): a 1-channel probability map or a
    detection head has no top-1, and the error is what tells a copy of it apart. A graph
    with a fixed batch size gets the inputs in batches of that size.
    """
    runner = session(model_path)
    name, fixed = runner.get_inputs()[0].name, runner.get_inputs()[0].shape[0]
    batches = rebatch(list(batches), fixed if isinstance(fixed, int) else None, f"ONNX model {model_path}")  # symbolic: a name
    max_abs = max_ref = 0.0
    agree = total = 0.0
    scores_classes = (teacher.task.num_classes or 0) > 1
    with teacher.frozen():
        for batch in batches:
            output = teacher.model(batch.to(teacher.device))
            reference = map_outputs(lambda leaf: leaf.float().cpu(), teacher.outputs_from(output))
            leaves = [torch.from_numpy(leaf) for leaf in run_batch(runner, name, batch, model_path)]
            onnx_out = map_outputs(torch.Tensor.float, teacher.outputs_from(unflatten_like(output, leaves)))
            for mine, theirs in zip(output_leaves(reference), output_leaves(onnx_out)):
                if mine.shape != theirs.shape:
                    raise FastDFKDError(f"the ONNX model's output has shape {tuple(theirs.shape)}, torch's {tuple(mine.shape)}; "
                                        "they are different models")
                max_abs = max(max_abs, float((theirs - mine).abs().max()))
                max_ref = max(max_ref, float(mine.abs().max()))
            if scores_classes:
                matched, count = teacher.task.agreement(reference, onnx_out)
                agree, total = agree + matched, total + count
    return Verification(len(batches), int(sum(len(batch) for batch in batches)), max_abs, max_abs / max(max_ref, 1e-12),
                        100.0 * agree / total if scores_classes else None)


def run_batch(runner: Any, input_name: str, batch: torch.Tensor, model_path: str | Path) -> list[np.ndarray]:
    """One ONNX Runtime run; its failure becomes one sentence (the usual cause: a batch size baked in at export)."""
    try:
        return runner.run(None, {input_name: batch.detach().cpu().numpy().astype(np.float32)})
    except Exception as exc:  # onnxruntime's errors derive from Exception only
        raise FastDFKDError(
            f"ONNX Runtime cannot run {model_path} on a batch of {len(batch)} ({reason(exc)}); if the model's forward "
            "turns the batch size into a Python number (len(x), int(x.shape[0])), the export fixed it: use x.shape[0]"
        ) from exc


def export_onnx(teacher: Teacher | nn.Module, example: torch.Tensor, path: str | Path, input_name: str = "input",
                opset: int = 17) -> None:
    """Export the model as it is (all its outputs) with a dynamic batch dimension (TorchScript exporter), atomically."""
    teacher = Teacher.of(teacher, example.shape[1:])
    with atomic_path(path) as tmp:
        _export_to(teacher, example, tmp, input_name, opset)


def _export_to(teacher: Teacher, example: torch.Tensor, file: Path, input_name: str, opset: int) -> None:
    with teacher.frozen():
        torch.onnx.export(
            teacher.model, (example.to(teacher.device),), str(file), input_names=[input_name], output_names=["logits"],
            opset_version=opset, dynamic_axes={input_name: {0: "batch"}, "logits": {0: "batch"}}, dynamo=False,
        )


def export_and_verify(
    teacher: Teacher | nn.Module, path: str | Path, batches: Sequence[torch.Tensor], *, atol: float = 1e-4, rtol: float = 1e-3,
    min_agreement: float = 100.0, opset: int = 17,
) -> Verification:
    """Export the teacher using the first batch as example input, verify on all batches, then write ``path``.

    The export is verified as a temporary file beside ``path`` and moved there only if
    it passes. When it strays beyond the tolerances, :class:`FastDFKDError` is raised,
    the temporary file is removed and whatever was at ``path`` before is kept:
    synthetic batches that look like real data catch divergences (traced control flow,
    range-dependent ops) that noise inputs hide.
    """
    teacher = Teacher.of(teacher, batches[0].shape[1:])
    kept = "the file already there was kept" if Path(path).exists() else "nothing was written"
    with atomic_path(path) as tmp:
        _export_to(teacher, batches[0][:1], tmp, "input", opset)
        result = verify_onnx(teacher, tmp, batches)
        problems = result.failures(atol, rtol, min_agreement)
        if problems:
            raise FastDFKDError(f"the exported ONNX model does not match torch on {result.samples} inputs: {'; '.join(problems)}; "
                                f"look for data-dependent control flow or unsupported ops ({kept} at {path})")
    return result


# -- CLI ---------------------------------------------------------------------------------------------

def cmd_export_onnx(args: argparse.Namespace) -> None:
    ort_runtime()  # before any work: verification runs the file in ONNX Runtime
    if is_onnx_file(args.model):
        raise FastDFKDError(f"{args.model} is already an ONNX model, so there is nothing to export; "
                            f"quantize it with `fastdfkd quantize-onnx --onnx {args.model}`")
    if args.test_data:
        check_output_folder(args.test_data, args.overwrite, TEST_DATA_ENTRIES)
    teacher = load_teacher(args)
    source = source_from_args(args, teacher)
    synthetic = source.synthetic_set(args.num_samples, args.batch_size)
    batches = list(synthetic.inputs.split(args.batch_size))
    result = export_and_verify(teacher, args.out, batches, atol=args.atol, rtol=args.rtol,
                               min_agreement=args.min_agreement, opset=args.opset)
    if args.test_data:
        save_onnx_test_data(args.test_data, [{"input": b.cpu().numpy()} for b in batches], overwrite=args.overwrite)
    print(f"exported {args.out} (opset {args.opset}); verified on {result.samples} {args.source} inputs: "
          f"max abs error {result.max_abs_error:.2e}, max rel error {result.max_rel_error:.2e}"
          + (f", top-1 agreement {result.top1_agreement:.1f} %" if result.top1_agreement is not None else ""))
    if args.test_data:
        print(f"ONNX test data: {args.test_data}/test_data_set_*/input_0.pb")


@hookimpl
def fastdfkd_register_commands(subparsers: argparse._SubParsersAction) -> None:
    export = subparsers.add_parser(
        "export-onnx", help="export to ONNX and verify against torch on synthetic batches",
        description=f"Verification needs realistic-looking inputs, not a fully warm generator: unless given, "
                    f"--warmup-tasks is {VERIFY_WARMUP_TASKS} here (seconds, not minutes).")
    add_model_arguments(export)
    add_source_arguments(export, default_samples=64, source_defaults={"warmup_tasks": VERIFY_WARMUP_TASKS})
    export.add_argument("--out", required=True, help="the ONNX file to write")
    export.add_argument("--opset", type=int, default=17)
    export.add_argument("--atol", type=float, default=1e-4)
    export.add_argument("--rtol", type=float, default=1e-3)
    export.add_argument("--min-agreement", type=float, default=100.0, help="minimum top-1 agreement in percent")
    export.add_argument("--test-data", help="also write the batches as ONNX test-data folders here (a new or empty folder)")
    export.add_argument("--overwrite", action="store_true", help="replace the test_data_set_* folders already in --test-data")
    export.set_defaults(run=cmd_export_onnx)
