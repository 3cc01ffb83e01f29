"""Torch-Pruning without the training data: importance, pruning and recovery from the teacher alone.

In an existing Torch-Pruning script, the data-dependent parts come from a source:

    teacher = Teacher(model, (3, 32, 32), mean=MEAN, std=STD)
    source = get_source("fastdfkd", teacher)
    pruned = copy.deepcopy(model)
    pruner = tp.pruner.BasePruner(pruned, synthetic_example(source), importance,
                                  ignored_layers=unsafe_layers(pruned, synthetic_example(source)) + [pruned.fc])
    accumulate_importance(pruned, importance, batches, teacher)         # Taylor/Hessian/OBDC/activation
    pruner.step()
    recover(teacher, pruned, source, config)                             # BN re-estimation, then KD

or everything in one call: :func:`prune_datafree` (also ``fastdfkd prune``). The
unpruned model is only read, never modified; pruning happens on a copy.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import logging
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from torch import nn
from torch.utils import _pytree as pytree

from ..cli import options
from ..errors import FastDFKDError, reason
from ..evaluation.metrics import agreement
from ..hooks import argtypes
from ..hooks.hookspecs import hookimpl
from ..runtime.checkpoint import Checkpoint
from ..runtime.io import atomic_path
from ..runtime.memory import release_freed_memory
from ..runtime.optional import require
from ..sources.base import DataSource
from ..teacher.attention import head_channels, head_count, projections, prunable_attention, set_head_count, value_channels
from ..teacher.loading import PRUNED_FORMAT, fit_layers_to_state_dict
from ..teacher.onnx.graph import OnnxModule
from ..teacher.tasks import output_leaves
from ..teacher.teacher import OutputTransform, Teacher, frozen, outputs_of
from ..training.distillation import DistillConfig, Distiller, distill_settings, resumed_checkpoint, teacher_for
from ..training.memory_plan import plan_distillation
from ..training.reestimate import reestimate_batchnorm

log = logging.getLogger(__name__)

IMPORTANCE_NAMES = ("magnitude", "lamp", "fpgm", "bn-scale", "random", "taylor", "hessian", "obdc", "activation")
# The most of a layer's channels a pruning step may remove: a layer must keep some width.
MAX_PRUNING_RATIO = 0.9


def _tp() -> Any:
    return require("torch_pruning", "torch-pruning", "Torch-Pruning")


def make_importance(name: str, num_classes: int = 10) -> Any:
    """A Torch-Pruning importance criterion by name (see ``IMPORTANCE_NAMES``)."""
    tp = _tp()
    factories: dict[str, Callable[[], Any]] = {
        "magnitude": lambda: tp.importance.GroupMagnitudeImportance(p=2),
        "lamp": lambda: tp.importance.LAMPImportance(p=2),
        "fpgm": lambda: tp.importance.FPGMImportance(),
        "bn-scale": lambda: tp.importance.BNScaleImportance(),
        "random": lambda: tp.importance.RandomImportance(),
        "taylor": lambda: tp.importance.GroupTaylorImportance(),
        "hessian": lambda: tp.importance.GroupHessianImportance(),
        "obdc": lambda: tp.importance.OBDCImportance(num_classes=num_classes),
        "activation": lambda: tp.importance.ActivationImportance(),
    }
    if name not in factories:
        raise FastDFKDError(f"unknown importance {name!r}; choose one of {', '.join(IMPORTANCE_NAMES)}")
    return factories[name]()


def synthetic_example(source: DataSource, batch_size: int = 1) -> torch.Tensor:
    """One synthetic batch to pass as Torch-Pruning's ``example_inputs`` (named apart from the scripts' own variable of that name)."""
    return source.next_batch(batch_size).inputs


# -- what the dependency graph can and cannot follow ------------------------------------------

def output_layers(model: nn.Module, example: torch.Tensor, output_transform: OutputTransform | None = None) -> list[nn.Module]:
    """Layers as wide as one of the model's outputs (dimension 1: classes, or a head's channels): the classifier
    and the output heads, whose outputs must all stay. A layer that only happens to be as wide is kept whole
    too, which costs speed-up, never correctness."""
    with torch.no_grad(), frozen(model):
        widths = {leaf.shape[1] for leaf in output_leaves(outputs_of(model(example), output_transform)) if leaf.dim() > 1}
    return [m for m in model.modules() if isinstance(m, nn.Linear) and m.out_features in widths
            or isinstance(m, nn.modules.conv._ConvNd) and m.out_channels in widths]


PRUNABLE = (nn.modules.conv._ConvNd, nn.Linear)


def trainable_copy(model: nn.Module) -> nn.Module:
    """A copy with gradients on: Torch-Pruning traces its dependency graph through autograd."""
    return copy.deepcopy(model).requires_grad_(True)


def unsafe_layers(model: nn.Module, example: torch.Tensor, ignored: list[nn.Module] | None = None) -> list[nn.Module]:
    """Layers whose channels are coupled in a way the dependency graph cannot follow.

    Each pruning group is tried on a copy: one channel from the middle removed, and
    the result compared with the unpruned model in which that channel is zeroed in
    every layer of the group (what correct pruning computes). A group whose pruning
    breaks the forward pass or changes the function (for example through a
    parameter-free "option A" shortcut that zero-pads channels, which the graph
    treats as an ordinary op) is unsafe; every layer in it is returned, to be passed
    as ``ignored_layers``. Activations should map 0 to 0 (ReLU, GELU, SiLU do);
    otherwise safe groups are reported unsafe too, which costs speed-up, never correctness.
    An attention's q/k/v group is tried by removing one whole head, against the model with
    that head's values zeroed (see :mod:`fastdfkd_plugin.teacher.attention`).
    """
    original = dict(model.named_modules())
    names = {module: name for name, module in original.items()}
    reference = trainable_copy(model).eval()
    modules = dict(reference.named_modules())
    reference_names = {module: name for name, module in modules.items()}
    attention_of = {projections(module)[0]: name for name, module in prunable_attention(reference).items()}
    graph = trace(reference, example)
    unsafe: list[str] = []
    for group in graph.get_all_groups(ignored_layers=[modules[names[m]] for m in ignored or []], root_module_types=PRUNABLE):
        attention = next((attention_of[dep.target.module] for dep, _ in group
                          if dep.target.module in attention_of and graph.is_out_channel_pruning_fn(dep.handler)), None)
        problem = _pruning_problem(reference, example, reference_names[group[0].dep.target.module], attention)
        if problem:
            members = [reference_names[dep.target.module] for dep, _ in group
                       if isinstance(dep.target.module, PRUNABLE) and graph.is_out_channel_pruning_fn(dep.handler)]
            log.info("pruning the group of %s is unsafe (%s); left unpruned: %s", members[0], problem, ", ".join(members))
            unsafe.extend(name for name in members if name not in unsafe)
    return [original[name] for name in unsafe]


def _pruning_problem(reference: nn.Module, example: torch.Tensor, root_name: str, attention: str | None = None) -> str:
    """What goes wrong when one channel (one head of ``attention``) of the group rooted at ``root_name`` is pruned ('' if nothing)."""
    tp = _tp()
    trial, masked = trainable_copy(reference), trainable_copy(reference)
    trial_modules, masked_modules = dict(trial.named_modules()), dict(masked.named_modules())
    trial_names = {module: name for name, module in trial_modules.items()}
    graph = trace(trial, example)
    if attention:
        heads = head_count(trial_modules[attention])
        group = graph.get_pruning_group(projections(trial_modules[attention])[0], tp.prune_linear_out_channels,
                                        idxs=head_channels(trial_modules[attention], heads // 2))
        silenced = [value_channels(masked_modules[attention], heads // 2)]
    else:
        root = trial_modules[root_name]
        handler = tp.prune_linear_out_channels if isinstance(root, nn.Linear) else tp.prune_conv_out_channels
        group = graph.get_pruning_group(root, handler, idxs=[root.weight.shape[0] // 2])
        silenced = [(masked_modules[trial_names[dep.target.module]], [int(i) for i in idxs]) for dep, idxs in group
                    if graph.is_out_channel_pruning_fn(dep.handler) and isinstance(dep.target.module, (*PRUNABLE, nn.modules.batchnorm._BatchNorm))]
    with torch.no_grad():
        for layer, channels in silenced:
            for tensor in (layer.weight, layer.bias):
                if tensor is not None:
                    tensor[channels] = 0
    try:
        group.prune()
        if attention:
            set_head_count(trial_modules[attention], heads - 1)
        with torch.no_grad():
            pruned, expected = pytree.tree_leaves(trial(example)), pytree.tree_leaves(masked(example))
            same = len(pruned) == len(expected) and all(
                torch.allclose(a, b, rtol=1e-4, atol=1e-5) for a, b in zip(pruned, expected) if isinstance(a, torch.Tensor)
            )
    except Exception as exc:  # any failure means the graph mis-tracked this coupling
        return reason(exc, 120)
    return "" if same else "the pruned model computes a different function"


def trace(model: nn.Module, example: torch.Tensor) -> Any:
    """Torch-Pruning's dependency graph of ``model``; a model it cannot trace gets the failing layer named."""
    try:
        return _tp().DependencyGraph().build_dependency(model, example_inputs=example)
    except Exception as exc:  # tracing runs the user's forward with autograd on: anything can fail
        layer = _failing_layer(model, example)
        where = f" in layer {layer!r}" if layer else ""
        raise FastDFKDError(
            f"Torch-Pruning cannot trace this model{where} ({reason(exc, 160)}); "
            "make that layer's forward work with gradients on, or prune a copy without it"
        ) from exc


def _failing_layer(model: nn.Module, example: torch.Tensor) -> str | None:
    """The innermost layer a forward with gradients on entered but never left."""
    open_layers: list[str] = []
    handles = []
    for name, module in model.named_modules():
        handles.append(module.register_forward_pre_hook(lambda m, i, name=name: open_layers.append(name)))
        handles.append(module.register_forward_hook(lambda m, i, o, name=name: open_layers.remove(name)))
    try:
        model(example)
    except Exception:  # the same failure as in tracing; we only want where it happened
        return open_layers[-1] if open_layers else None
    finally:
        for handle in handles:
            handle.remove()
    return None


# -- data-driven importance --------------------------------------------------------------------

def _hook_obdc(model: nn.Module, importance: Any) -> list[Any]:
    """OBDC's input and output-gradient hooks on every Conv/Linear layer.

    Torch-Pruning 1.6.1's own ``_prepare_model`` hooks only the roots of prunable
    groups and fails without attention layers; its scoring then also reads the
    layers that consume pruned channels, so every such layer needs its Fisher factors.
    """
    importance._clear_buffer()
    handles = []
    for module in model.modules():
        if isinstance(module, tuple(importance.target_types)):
            importance.modules.append(module)
            handles.append(module.register_forward_pre_hook(importance._save_input))
            handles.append(module.register_full_backward_hook(importance._save_grad_output))
    return handles


def accumulate_importance(model: nn.Module, importance: Any, batches: list[torch.Tensor], teacher: Teacher) -> None:
    """Collect what ``importance`` needs before ``pruner.step()``, following each criterion's own protocol.

    ``model`` is the copy being pruned (its outputs are picked like the teacher's); the gradients are those of
    the teacher's task's importance loss (cross-entropy to the teacher's classes or class maps).
    Taylor: summed gradients; Hessian: per-sample gradients via ``accumulate_grad``;
    OBDC: hooks plus ``step()`` per batch; activation: one forward
    over all batches inside ``compute_importance``. Data-free criteria need nothing.
    """
    imp = _tp().importance
    if isinstance(importance, imp.ActivationImportance):
        with torch.no_grad(), frozen(model), importance.compute_importance(model):
            model(torch.cat(batches))
        return
    if not isinstance(importance, (imp.GroupTaylorImportance, imp.GroupHessianImportance, imp.OBDCImportance)):
        return
    handles = _hook_obdc(model, importance) if isinstance(importance, imp.OBDCImportance) else []
    if isinstance(importance, imp.GroupHessianImportance):
        importance.zero_grad()
    was_training = model.training
    model.eval()  # gradients of the deployed function, with BN in inference mode
    model.zero_grad()
    try:
        with teacher.frozen():
            for inputs in batches:
                with torch.no_grad():
                    target = teacher.outputs(inputs)
                outputs = teacher.outputs_from(model(inputs))
                if isinstance(importance, imp.GroupHessianImportance):
                    for loss in teacher.task.importance_loss(outputs, target, reduction="none"):
                        model.zero_grad()
                        loss.backward(retain_graph=True)
                        importance.accumulate_grad(model)
                else:
                    teacher.task.importance_loss(outputs, target).backward()
                    if isinstance(importance, imp.OBDCImportance):
                        importance.step()
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)


# -- pruning to a speed-up ---------------------------------------------------------------------

def count_macs(model: nn.Module, example: torch.Tensor) -> tuple[float, float]:
    """(MACs, parameters) of ``model`` for ``example``."""
    with frozen(model):
        return _tp().utils.count_ops_and_params(model, example)


class HeadAwarePruner:
    """Torch-Pruning's ``BasePruner`` on a copy, removing whole heads from the attention modules named in ``heads``.

    The head count each attention's forward reshapes with is updated after every step;
    heads go at the same ratio as channels elsewhere, but every attention keeps one.
    ``options`` override any of this.
    """

    def __init__(self, model: nn.Module, example: torch.Tensor, importance: Any, ratio: float, ignored: list[str],
                 heads: list[str], options: dict[str, Any], iterative_steps: int = 1) -> None:
        modules = dict(model.named_modules())
        self.attention = [modules[name] for name in heads]
        head_counts = {layer: head_count(module) for module in self.attention for layer in projections(module)}
        head_ratios = {layer: _head_ratio(ratio, count) for layer, count in head_counts.items()}
        settings = {"num_heads": head_counts, "prune_num_heads": bool(head_counts), "prune_head_dims": False,
                    "head_pruning_ratio_dict": head_ratios, **options}
        self.pruner = _tp().pruner.BasePruner(model, example, importance, pruning_ratio=ratio, iterative_steps=iterative_steps,
                                             ignored_layers=[modules[name] for name in ignored], **settings)

    def step(self) -> None:
        self.pruner.step()
        for module in self.attention:
            set_head_count(module, self.pruner.num_heads[projections(module)[0]])


def _head_ratio(ratio: float, heads: int) -> float:
    """The head pruning ratio that removes floor(ratio × heads) heads but never the last one.

    Rounding down lets channel pruning elsewhere make up the rest, so a target speed-up
    is met closely rather than overshot by a whole head in every block. Torch-Pruning
    removes ceil(head ratio × heads), hence a ratio just under the wanted fraction.
    """
    removed = min(math.floor(ratio * heads + 1e-9), heads - 1)
    return max(removed / heads - 1e-6, 0.0)


def ratio_for_speed_up(
    model: nn.Module, example: torch.Tensor, speed_up: float, ignored: list[nn.Module], pruner_options: dict[str, Any],
    heads: list[str] | None = None,
) -> float:
    """The per-layer pruning ratio that gives ``speed_up`` × fewer MACs (bisection on copies).

    With local pruning the MACs depend on how many channels go, not which, so a
    data-free importance finds the ratio. Refuses a speed-up the allowed layers cannot reach.
    ``heads`` names the attention modules that lose whole heads (see :class:`HeadAwarePruner`).
    """
    tp = _tp()
    names = {module: name for name, module in model.named_modules()}
    base_macs, _ = count_macs(model, example)

    def speed_up_at(ratio: float) -> float:
        trial = trainable_copy(model)
        HeadAwarePruner(trial, example, tp.importance.GroupMagnitudeImportance(p=2), ratio, [names[m] for m in ignored],
                        heads or [], pruner_options).step()
        return base_macs / count_macs(trial, example)[0]

    best = speed_up_at(MAX_PRUNING_RATIO)
    if best < speed_up:
        raise FastDFKDError(
            f"a {speed_up:g}× speed-up is out of reach: pruning the layers that can be pruned safely "
            f"(at most {MAX_PRUNING_RATIO:.0%} of each one's channels) gives at most {best:.2f}×; ask for {best:.2f}× or less"
        )
    low, high = 0.0, MAX_PRUNING_RATIO
    for _ in range(14):
        middle = (low + high) / 2
        low, high = (low, middle) if speed_up_at(middle) >= speed_up else (middle, high)
    return high


# -- recovery ----------------------------------------------------------------------------------

def recover(
    teacher: Teacher | nn.Module,
    student: nn.Module,
    batches: DataSource | Iterator[torch.Tensor],
    config: DistillConfig,
    bn_samples: int = 512,
    evaluate: Callable[[nn.Module], dict[str, float]] | None = None,
    eval_every_seconds: float = 0.0,
    checkpoint: str | Path | None = None,
    checkpoint_every: int = 0,
    resume: str | Path | bool | None = None,
    progress: bool = False,
    run_settings: dict[str, Any] | None = None,
) -> Distiller:
    """BN re-estimation on the first ``bn_samples`` images, then KD from ``teacher`` (``config.steps`` steps).

    The BN images also seed the KD bank, and their synthesis time counts toward the
    log's seconds (and a ``config.seconds`` budget). A source's adversarial term (if
    it has one) is aimed at the pruned student, so new batches concentrate where it
    disagrees with the teacher. ``resume`` continues from a checkpoint, ``True`` from
    ``checkpoint``, or a path (BN re-estimation is not repeated). ``run_settings`` are the caller's own settings that a
    resumed run must share (see :class:`~fastdfkd_plugin.training.distillation.Distiller`).
    """
    teacher, batches = teacher_for(teacher, batches)
    checkpoint, saved = resumed_checkpoint(resume, checkpoint, teacher)
    return _recover(teacher, student, batches, config, bn_samples, evaluate, eval_every_seconds, checkpoint,
                    checkpoint_every, saved, progress, run_settings)


def _recover(
    teacher: Teacher, student: nn.Module, batches: DataSource | Iterator[torch.Tensor], config: DistillConfig, bn_samples: int,
    evaluate: Callable[[nn.Module], dict[str, float]] | None = None, eval_every_seconds: float = 0.0,
    checkpoint: str | Path | None = None, checkpoint_every: int = 0, saved: Checkpoint | None = None,
    progress: bool = False, run_settings: dict[str, Any] | None = None, bn_batch: int | None = None,
) -> Distiller:
    """:func:`recover` for a Teacher, continuing from the checkpoint ``saved`` when given; BatchNorm re-estimation
    passes all ``bn_samples`` images at once (exact statistics), or ``bn_batch`` at a time where a memory plan says so."""
    distiller = Distiller(teacher, student, batches, config, teacher.output_transform, run_settings)
    if saved is not None:
        distiller.restore(saved)
    elif bn_samples:
        started = time.perf_counter()
        images = _first_images(batches, bn_samples, config.synthesis_batch_size or config.batch_size)
        reestimate_batchnorm(student, images.split(bn_batch or len(images)))
        distiller.data.bank.add(images)
        del images  # the bank holds its own copy
        distiller.log.synthesis_seconds += time.perf_counter() - started
    if not distiller.finished:
        distiller.run(evaluate, 0, checkpoint, checkpoint_every, progress, eval_every_seconds)
    return distiller


def _first_images(batches: DataSource | Iterator[torch.Tensor], count: int, batch_size: int) -> torch.Tensor:
    if isinstance(batches, DataSource):
        return batches.synthetic_set(count, min(count, batch_size)).inputs
    images: list[torch.Tensor] = []
    while sum(len(i) for i in images) < count:
        images.append(next(batches))
    return torch.cat(images)[:count]


@dataclass
class PruneReport:
    """What pruning and recovery did, for logs and the CLI's summary."""

    macs_before: float
    macs_after: float
    params_before: float
    params_after: float
    pruning_ratio: float
    importance: str
    unsafe_layers: list[str]
    agreement: dict[str, float] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def speed_up(self) -> float:
        return self.macs_before / self.macs_after

    def summary(self) -> str:
        stages = ", ".join(f"{k} {v:.1%}" for k, v in self.agreement.items())
        return (
            f"MACs {self.macs_before / 1e6:.1f}M → {self.macs_after / 1e6:.1f}M ({self.speed_up:.2f}× fewer), "
            f"parameters {self.params_before / 1e6:.3f}M → {self.params_after / 1e6:.3f}M; "
            f"agreement with the unpruned model on held-out synthetic images: {stages}; "
            f"time {sum(self.seconds.values()):.0f} s"
        )


def prune_datafree(
    teacher: Teacher | nn.Module,
    source: DataSource,
    speed_up: float,
    importance: str | Any = "magnitude",
    *,
    recovery: DistillConfig | None = None,
    rounds: int = 1,
    bn_samples: int = 512,
    importance_batches: int = 4,
    batch_size: int = 64,
    eval_samples: int = 256,
    ignored_layers: list[nn.Module] | None = None,
    pruner_options: dict[str, Any] | None = None,
    checkpoint: str | Path | None = None,
    checkpoint_every: int = 100,
    resume: str | Path | bool | None = None,
    memory_budget: int | None = None,
    memory_plan: bool = True,
    progress: bool = False,
) -> tuple[nn.Module, PruneReport]:
    """Prune a copy of the teacher to ``speed_up``× fewer MACs and recover it from ``source``; the teacher is untouched.

    Layers the dependency graph cannot follow are found and left unpruned (see
    :func:`unsafe_layers`); the classifier keeps its outputs. Attention modules with a
    head count and Linear q/k/v projections (timm, Hugging Face) lose whole heads.
    ``importance`` is a name or any Torch-Pruning importance; data-driven ones are fed
    synthetic batches. ``pruner_options`` go to ``BasePruner`` (``round_to``,
    ``global_pruning``, ``prune_num_heads``, ...). With ``rounds`` > 1, pruning is iterative, with a short recovery
    (``recovery.steps // rounds`` KD steps) after every round but the last.
    Recovery is BN re-estimation, then ``recovery.steps`` KD steps (0: BN only).
    With ``checkpoint``, the final recovery checkpoints there; ``resume`` continues it (``True``:
    from ``checkpoint``, or a path), refused before any work if the teacher or a setting differs.
    ``memory_plan`` sizes the synthesis batches (``batch_size`` too) and the recovery's bank to ``memory_budget``
    bytes (default: half of the memory there is) from probes on a copy of the unpruned model, a bound for the pruned one.
    """
    teacher, _ = teacher_for(teacher, source)
    if teacher.device != source.device:
        raise FastDFKDError(f"the model is on {teacher.device} but the source on {source.device}; build the source on the model's device")
    if isinstance(teacher.model, OnnxModule):
        raise FastDFKDError(f"the teacher is the ONNX graph {teacher.model.source}, which cannot be pruned and exported again; "
                            "prune the torch model it came from (--model file.py:factory --weights FILE)")
    model = teacher.model
    if rounds < 1:
        raise FastDFKDError(f"rounds must be at least 1, got {rounds}")
    recovery = recovery or DistillConfig(steps=0)
    pruner_options = dict(pruner_options or {})
    started = time.perf_counter()
    importance_name = importance if isinstance(importance, str) else type(importance).__name__
    run_settings = {"speed_up": speed_up, "importance": importance_name, "rounds": rounds, "bn_samples": bn_samples,
                    "pruner_options": {key: repr(value) for key, value in sorted(pruner_options.items())}}
    checkpoint, saved = resumed_checkpoint(resume, checkpoint, teacher)
    student, bn_batch = trainable_copy(model), None
    if memory_plan:
        plan = plan_distillation(source, student, recovery, budget=memory_budget, held_out=eval_samples + bn_samples,
                                 saved_settings=saved and saved.settings, student_output_transform=teacher.output_transform,
                                 progress=progress)
        recovery, batch_size, bn_batch = plan.config, min(batch_size, plan.synthesis_batch), plan.largest_forward()
    if saved is not None:
        saved.check_settings(distill_settings(recovery, source, run_settings))  # before any work, not after
        source.load_state_dict(saved.state["source"])  # already warm: no second warm-up before the resume below
    example = synthetic_example(source)
    held_out = source.synthetic_set(eval_samples, batch_size).inputs
    ignored = list(ignored_layers or []) + output_layers(model, example, teacher.output_transform)
    unsafe = unsafe_layers(model, example, ignored)
    names = {module: name for name, module in model.named_modules()}
    heads = [name for name, module in prunable_attention(model).items() if projections(module)[0] not in ignored + unsafe]
    macs_before, params_before = count_macs(model, example)
    ratio = ratio_for_speed_up(model, example, speed_up, ignored + unsafe, pruner_options, heads)
    report = PruneReport(macs_before, 0.0, params_before, 0.0, ratio, importance_name, [names[m] for m in unsafe])
    if saved is not None:
        fit_layers_to_state_dict(student, saved.state["student"])
    else:
        criterion = make_importance(importance, teacher.info.num_classes or 1) if isinstance(importance, str) else importance
        pruner = HeadAwarePruner(student, example, criterion, ratio, [names[m] for m in ignored + unsafe], heads,
                                 pruner_options, iterative_steps=rounds)
        for round_ in range(rounds):
            batches = [source.next_batch(batch_size).inputs for _ in range(importance_batches)]
            accumulate_importance(student, criterion, batches, teacher)
            pruner.step()
            student.zero_grad(set_to_none=True)
            if round_ < rounds - 1:
                _recover(teacher, student, source, dataclasses.replace(recovery, steps=recovery.steps // rounds), bn_samples,
                         bn_batch=bn_batch)
        report.agreement["pruned"] = agreement(teacher, student, held_out, model_output_transform=teacher.output_transform)
    report.macs_after, report.params_after = count_macs(student, example)
    report.seconds["prune"] = round(time.perf_counter() - started, 2)
    release_freed_memory()  # what the pruning stage kept for reuse goes back before the recovery, which the plan sized
    started = time.perf_counter()
    _recover(teacher, student, source, recovery, bn_samples, checkpoint=checkpoint, checkpoint_every=checkpoint_every,
             saved=saved, progress=progress, run_settings=run_settings, bn_batch=bn_batch)
    report.seconds["recovery"] = round(time.perf_counter() - started, 2)
    report.agreement["recovered"] = agreement(teacher, student, held_out, model_output_transform=teacher.output_transform)
    return student.eval(), report


def save_pruned(student: nn.Module, path: str | Path, model_spec: str | None, report: PruneReport | None = None) -> None:
    """Write the pruned weights (tensors only, loadable with ``weights_only=True``), atomically.

    Load back with ``fastdfkd_plugin.teacher.loading.load_model(SPEC, weights=path)``, or
    ``fit_layers_to_state_dict(model, state["state_dict"])`` then ``load_state_dict``.
    """
    state = {
        "format": PRUNED_FORMAT, "model_spec": model_spec, "state_dict": student.state_dict(),
        "report": {**asdict(report), "speed_up": report.speed_up} if report else None,
    }
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


# -- CLI ---------------------------------------------------------------------------------------

def cmd_prune(args: argparse.Namespace) -> None:
    if args.speed_up <= 1:
        raise FastDFKDError(f"--speed-up must be above 1 (MACs before / after), got {args.speed_up}")
    checkpoint, resume = options.checkpoint_paths(args)
    teacher = options.load_teacher(args)
    source = options.source_from_args(args, teacher)
    recovery = options.kd_config(args, args.recovery_steps, args.steps_per_batch)
    pruner_options = {"round_to": args.round_to, "global_pruning": args.global_pruning}
    try:
        student, report = prune_datafree(
            teacher, source, args.speed_up, args.importance, recovery=recovery, bn_samples=args.bn_samples,
            batch_size=args.batch_size, pruner_options={k: v for k, v in pruner_options.items() if v},
            checkpoint=checkpoint, checkpoint_every=args.checkpoint_every, resume=resume, progress=not args.quiet,
            memory_budget=args.memory_budget, memory_plan=not args.no_memory_plan,
        )
    except KeyboardInterrupt:
        if Path(checkpoint).exists():
            print(f"fastdfkd: checkpoint written; continue with the same command and --resume {checkpoint}", file=sys.stderr)
        raise
    save_pruned(student, args.out, args.model, report)
    options.save_generator_state(args, source)
    if report.unsafe_layers:
        print(f"left {len(report.unsafe_layers)} layers unpruned whose channel coupling the dependency graph "
              f"cannot follow (e.g. {', '.join(report.unsafe_layers[:3])})")
    print(report.summary())
    print(f"wrote {args.out}; load it with --model {args.model} --weights {args.out}")
    options.report_fidelity(args, teacher, student, "prune less (a lower --speed-up) or recover longer (--recovery-steps)",
                            teacher.output_transform)


@hookimpl
def fastdfkd_register_commands(subparsers: argparse._SubParsersAction) -> None:
    prune = subparsers.add_parser("prune", help="structured pruning with Torch-Pruning, then data-free recovery")
    options.add_model_arguments(prune)
    options.add_source_arguments(prune, with_samples=False)
    prune.add_argument("--speed-up", type=argtypes.positive_float, required=True, help="target MACs before / after, e.g. 2.0")
    prune.add_argument("--importance", default="magnitude", choices=IMPORTANCE_NAMES)
    prune.add_argument("--global-pruning", action="store_true", help="rank channels across layers (speed-up becomes approximate)")
    prune.add_argument("--round-to", type=argtypes.positive, help="keep channel counts multiples of this")
    prune.add_argument("--bn-samples", type=int, default=512, help="synthetic images for BN re-estimation (0 skips it)")
    prune.add_argument("--recovery-steps", type=int, default=400, help="KD steps after pruning (0: BN re-estimation only)")
    prune.add_argument("--steps-per-batch", type=argtypes.positive, default=20, help="KD steps per new synthetic batch")
    options.add_kd_arguments(prune, batch_size=128, bank_size=8192, lr=0.01, temperature=4.0)
    options.add_checkpoint_arguments(prune, every=100)
    prune.add_argument("--out", required=True, help="pruned weights (.pt, tensors only)")
    options.add_evaluate_arguments(prune)
    prune.set_defaults(run=cmd_prune)
