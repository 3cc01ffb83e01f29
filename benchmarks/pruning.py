"""Prune a real CIFAR-10 ResNet-56 (or ResNet-20, or the ViT) with Torch-Pruning, then recover it without its training data.

    python -m benchmarks.pruning [--teacher resnet56|resnet20|vit] [--speed-ups 2.0,2.6] [--recover-at 2.6] [--budget 600]
                                 [--sources ...] [--eval test_a|heldout] [--keep-heads]

The ViT loses whole attention heads as well as MLP channels (``--keep-heads``: MLP
channels only, the ablation); it has no BatchNorm, so its BN re-estimation columns
equal the pruned model's.

For each target speed-up (MACs before / after): accuracy of the unpruned model, right
after pruning (magnitude importance, only the layers the dependency graph can follow;
see ``unsafe_layers``), after BatchNorm re-estimation on 512 images of (a) ``fastdfkd``
(b) Gaussian noise (c) real ``train_10k``; then, at ``--recover-at``, KD recovery from
the pruned model under the same wall-clock budget for every source: ``fastdfkd``
(warm-up counted), ``deepinversion`` (steps per batch set so that its first 512 images
take half the budget), Gaussian noise, and real ``train_10k`` images (what a user with
data gets). Each recovery re-estimates BN on the source's first 512 images (which also
seed the KD bank; their time counts) and then distils.

Three more recovery sources run what a pruning script's own fine-tuning loop does
(``train_model(model, train_loader, ...)``: SGD with a cosine schedule over its steps,
no BN re-estimation), for as many steps as ``fastdfkd``'s ``recover()`` made in its
budget: ``kd_loader`` + ``kd_loss`` (the data-free loader), cross-entropy on a fixed
``fastdfkd`` set as large as everything ``recover()`` synthesised, and cross-entropy on
real ``train_10k`` images (the script's original). Accuracy on ``test_a.npz``, or with
``--eval heldout`` on 2,000 ``train_10k`` images never used for recovery (for tuning).
"""

from __future__ import annotations

import copy
import itertools
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from examples.cifar_vit import Attention
from fastdfkd_plugin import DistillConfig, kd_loader, kd_loss, reestimate_batchnorm
from fastdfkd_plugin.adapters.torch_pruning import prune_datafree, recover

from .common.cli import benchmark_parser
from .common.data import HELDOUT, accuracy, endless, load_images
from .common.plots import Panel, accuracy_over_time
from .common.report import environment, publish
from .common.sources import cold_source, deepinversion_seconds_per_step
from .common.teachers import load_teacher

BN_SAMPLES = 512
# Fixed before any run (from the KD recovery reference in docs/method.md), never tuned on test_a.
RECOVERY = dict(batch_size=128, synthesis_batch_size=64, steps_per_batch=10, bank_size=4096, lr=0.01, temperature=4.0)
RECOVERY_SOURCES = ("fastdfkd", "deepinversion", "gaussian", "real train_10k")
SCRIPT_LOOPS = ("fastdfkd kd_loader + kd_loss", "fastdfkd fixed set + cross-entropy", "real train_10k + cross-entropy")


def attention_heads(model: torch.nn.Module) -> list[int]:
    """Heads left per attention block of the example ViT ([] for a network without attention)."""
    return [module.num_heads for module in model.modules() if isinstance(module, Attention)]


def source(name: str, teacher: torch.nn.Module, args, **options):
    return cold_source(name, teacher, seed=args.seed, device="cpu", **options)


def bn_reestimation(pruned, teacher, real_x, args, score) -> dict[str, dict[str, float]]:
    """Accuracy after BN re-estimation on 512 images of each kind, and the time to get them."""
    rows = {}
    makers = {
        "fastdfkd": lambda: source("fastdfkd", teacher, args).synthetic_set(BN_SAMPLES).inputs,
        "gaussian": lambda: source("gaussian", teacher, args).synthetic_set(BN_SAMPLES).inputs,
        "real train_10k": lambda: real_x[:BN_SAMPLES],
    }
    for name, make in makers.items():
        started = time.perf_counter()
        inputs = make()
        seconds = time.perf_counter() - started
        rows[name] = {"accuracy": score(reestimate_batchnorm(copy.deepcopy(pruned), [inputs])), "seconds": round(seconds, 1)}
        print(f"    BN re-estimation on {name}: {rows[name]['accuracy']:.2f} % ({seconds:.0f} s for the images)", flush=True)
    return rows


def recovery_run(name: str, pruned, teacher, real_x, args, score, deepinversion_steps: int) -> dict:
    """BN re-estimation on 512 of the source's images, then KD, within ``args.budget`` seconds in all."""
    batches = endless(real_x, RECOVERY["synthesis_batch_size"], args.seed) if name == "real train_10k" else source(
        name, teacher, args, **({"steps": deepinversion_steps} if name == "deepinversion" else {})
    )
    config = DistillConfig(steps=10**9, seconds=args.budget, seed=args.seed, **RECOVERY)
    student = copy.deepcopy(pruned)
    distiller = recover(teacher, student, batches, config, BN_SAMPLES, evaluate=lambda model: {"accuracy": score(model)},
                        eval_every_seconds=args.budget / 6)
    log = distiller.log
    final = log.evaluations[-1]
    print(f"    recovery from {name}: {final['accuracy']:.2f} % after {distiller.step} KD steps in {log.seconds:.0f} s "
          f"(synthesis {log.synthesis_seconds:.0f} s)", flush=True)
    return {"source": name, "kd_steps": distiller.step, "synthesis_seconds": round(log.synthesis_seconds, 1),
            "kd_seconds": round(log.kd_seconds, 1), "curve": log.evaluations, "final_accuracy": final["accuracy"]}


def script_loop_run(name: str, pruned, teacher, real, args, score, steps: int) -> dict:
    """A script's own fine-tuning loop for ``steps`` steps, fed by ``name`` (see the module docstring)."""
    student = copy.deepcopy(pruned)
    synthesised = BN_SAMPLES + math.ceil(steps / RECOVERY["steps_per_batch"]) * RECOVERY["synthesis_batch_size"]
    started = time.perf_counter()
    if name.startswith("fastdfkd kd_loader"):
        loader = kd_loader(source("fastdfkd", teacher, args), RECOVERY["batch_size"], steps,
                           steps_per_batch=RECOVERY["steps_per_batch"], bank_size=RECOVERY["bank_size"],
                           synthesis_batch_size=RECOVERY["synthesis_batch_size"], student=student, seed=args.seed)
        batches, loss_fn = iter(loader), lambda output, target: kd_loss(output, target, RECOVERY["temperature"])
    else:
        dataset = (source("fastdfkd", teacher, args).synthetic_set(synthesised) if name.startswith("fastdfkd")
                   else torch.utils.data.TensorDataset(*real))
        generator = torch.Generator().manual_seed(args.seed)
        loader = DataLoader(dataset, batch_size=RECOVERY["batch_size"], shuffle=True, drop_last=True, generator=generator)
        batches, loss_fn = itertools.chain.from_iterable(itertools.repeat(loader)), F.cross_entropy
    optimizer = torch.optim.SGD(student.parameters(), lr=RECOVERY["lr"], momentum=0.9, weight_decay=1e-4)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    student.train()
    for inputs, target in itertools.islice(batches, steps):
        loss = loss_fn(student(inputs), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
    seconds = time.perf_counter() - started
    final = score(student.eval())
    print(f"    {name}: {final:.2f} % after {steps} steps in {seconds:.0f} s", flush=True)
    return {"source": name, "kd_steps": steps, "seconds": round(seconds, 1),
            "synthesised_images": synthesised if name.startswith("fastdfkd") else 0, "final_accuracy": final}


def deepinversion_steps_for(teacher, args) -> int:
    """DeepInversion steps per batch that let its 512 BN images take half the budget (timed, not tuned)."""
    per_step = deepinversion_seconds_per_step(teacher, RECOVERY["synthesis_batch_size"], seed=args.seed, device="cpu")
    return max(1, int(args.budget / 2 / (per_step * BN_SAMPLES / RECOVERY["synthesis_batch_size"])))


def main(argv: list[str] | None = None) -> None:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--teacher", default="resnet56")
    parser.add_argument("--speed-ups", default="2.0,2.6")
    parser.add_argument("--recover-at", default="2.6", help="speed-ups to run KD recovery at (comma-separated)")
    parser.add_argument("--budget", type=float, default=600.0, help="training seconds per recovery source")
    parser.add_argument("--sources", default=",".join(RECOVERY_SOURCES + SCRIPT_LOOPS),
                        help="recovery sources to run, comma-separated (script loops need fastdfkd)")
    parser.add_argument("--keep-heads", action="store_true", help="ablation: prune no attention heads (vit)")
    parser.add_argument("--eval", choices=("test_a", "heldout"), default="test_a")
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks"))
    args = parser.parse_args(argv)
    torch.manual_seed(args.seed)
    teacher = load_teacher(args.teacher, args.data_dir)
    train_x, train_y = load_images("train_10k", args.data_dir, seed=args.seed)
    order = torch.randperm(len(train_y), generator=torch.Generator().manual_seed(args.seed))
    real_x, real_y = train_x[order[HELDOUT:]], train_y[order[HELDOUT:]]
    sources = [name for name in args.sources.split(",") if name]
    unknown = set(sources) - set(RECOVERY_SOURCES + SCRIPT_LOOPS)
    if unknown or (set(sources) & set(SCRIPT_LOOPS) and "fastdfkd" not in sources):
        parser.error(f"--sources: unknown {sorted(unknown)} or script loops without fastdfkd; choose from "
                     f"{', '.join(RECOVERY_SOURCES + SCRIPT_LOOPS)}")
    eval_x, eval_y = (train_x[order[:HELDOUT]], train_y[order[:HELDOUT]]) if args.eval == "heldout" else load_images("test_a", args.data_dir)

    def score(model: torch.nn.Module) -> float:
        return accuracy(model, eval_x, eval_y)

    results = {"teacher": args.teacher, "keep_heads": args.keep_heads, "eval": args.eval, "eval_images": len(eval_y), "budget_seconds": args.budget,
               "recovery_config": RECOVERY, "environment": environment(),
               "unpruned": score(teacher), "targets": []}
    print(f"{args.teacher} unpruned: {results['unpruned']:.2f} % on {args.eval}", flush=True)
    recover_at = {float(s) for s in args.recover_at.split(",") if s}
    for speed_up in (float(s) for s in args.speed_ups.split(",")):
        print(f"  target {speed_up}× fewer MACs", flush=True)
        pruned, report = prune_datafree(teacher, source("fastdfkd", teacher, args), speed_up, "magnitude", bn_samples=0,
                                        pruner_options={"prune_num_heads": False} if args.keep_heads else None)
        row = {"target": speed_up, "speed_up": round(report.speed_up, 3), "macs_before": report.macs_before,
               "macs_after": report.macs_after, "params_before": report.params_before, "params_after": report.params_after,
               "pruning_ratio": round(report.pruning_ratio, 4), "unpruned_layers": report.unsafe_layers,
               "pruned": score(pruned), "heads": attention_heads(pruned)}
        print(f"    {report.speed_up:.2f}× at ratio {report.pruning_ratio:.3f}, {len(report.unsafe_layers)} layers left "
              f"unpruned, attention heads {row['heads']}; right after pruning {row['pruned']:.2f} %", flush=True)
        row["bn_reestimation"] = bn_reestimation(pruned, teacher, real_x, args, score)
        if speed_up in recover_at:
            steps = deepinversion_steps_for(teacher, args) if "deepinversion" in sources else 0
            row["deepinversion_steps"] = steps
            row["recovery"] = [recovery_run(name, pruned, teacher, real_x, args, score, steps)
                               for name in RECOVERY_SOURCES if name in sources]
            fastdfkd_steps = next((run["kd_steps"] for run in row["recovery"] if run["source"] == "fastdfkd"), 0)
            row["script_loops"] = [script_loop_run(name, pruned, teacher, (real_x, real_y), args, score, fastdfkd_steps)
                                   for name in SCRIPT_LOOPS if name in sources]
        results["targets"].append(row)
    name = (("pruning" if args.eval == "test_a" else "pruning_heldout") + ("" if args.teacher == "resnet56" else f"_{args.teacher}")
            + ("_keep_heads" if args.keep_heads else ""))
    publish(args.out / name, results, markdown(results))
    plot(results, args.out / f"{name}.png")


def share(accuracy: float, real: float) -> str:
    """``accuracy`` as a share of real-image recovery ('–' when real images were not run)."""
    return "–" if math.isnan(real) else f"{100 * accuracy / real:.1f} %"


def markdown(results: dict) -> str:
    lines = [
        f"# Pruning {results['teacher']} without data, then recovering it",
        "",
        f"Command: `{results['environment']['command']}` ({results['environment']['threads']} thread(s)).",
        f"Accuracy on {results['eval']} ({results['eval_images']} images); unpruned {results['unpruned']:.2f} %.",
        "",
        "| target | MACs fewer | right after pruning | BN re-est. fastdfkd | BN re-est. Gaussian | BN re-est. real |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for row in results["targets"]:
        bn = row["bn_reestimation"]
        lines.append(f"| {row['target']}× | {row['speed_up']:.2f}× | {row['pruned']:.2f} | {bn['fastdfkd']['accuracy']:.2f} | "
                     f"{bn['gaussian']['accuracy']:.2f} | {bn['real train_10k']['accuracy']:.2f} |")
    lines += [f"\nAttention heads left per block at {row['speed_up']:.2f}×: {row['heads']}" for row in results["targets"] if row.get("heads")]
    for row in results["targets"]:
        if "recovery" not in row:
            continue
        real = next((r["final_accuracy"] for r in row["recovery"] if r["source"] == "real train_10k"), math.nan)
        lines += ["", f"KD recovery at {row['speed_up']:.2f}×, {results['budget_seconds']:.0f} s per source "
                  f"(synthesis included; BN re-estimation on the source's first 512 images, then KD"
                  + (f"; DeepInversion at {row['deepinversion_steps']} steps per batch" if row["deepinversion_steps"] else "")
                  + "):", "",
                  "| source | final accuracy | of real-image recovery | KD steps | synthesis s |", "| --- | --- | --- | --- | --- |"]
        for run in row["recovery"]:
            lines.append(f"| {run['source']} | {run['final_accuracy']:.2f} | {share(run['final_accuracy'], real)} | "
                         f"{run['kd_steps']} | {run['synthesis_seconds']:.0f} |")
        if row.get("script_loops"):
            lines += ["", "A pruning script's own fine-tuning loop (SGD, cosine over its steps, no BN re-estimation), "
                      "as many steps as `recover()` made above:", "",
                      "| fed by | final accuracy | of real-image recovery | steps | synthesised images | seconds |",
                      "| --- | --- | --- | --- | --- | --- |"]
            for run in row["script_loops"]:
                lines.append(f"| {run['source']} | {run['final_accuracy']:.2f} | {share(run['final_accuracy'], real)} | "
                             f"{run['kd_steps']} | {run['synthesised_images']} | {run['seconds']:.0f} |")
    return "\n".join(lines) + "\n"


def plot(results: dict, path: Path) -> None:
    panels = [Panel(f"{results['teacher']} at {row['speed_up']:.2f}× fewer MACs", row["recovery"], results["unpruned"], "unpruned")
              for row in results["targets"] if "recovery" in row]
    if panels:
        accuracy_over_time(panels, path, xlabel="training time (min, 1 core)", ylabel=f"accuracy on {results['eval']} (%)")


if __name__ == "__main__":
    main()
