"""Torch-Pruning: prune, then fine-tune, in the shape of Torch-Pruning's ``reproduce/main.py``.

That script builds a ``BasePruner`` on ``example_inputs``, prunes, and calls
``train_model(model, train_loader, ...)`` with cross-entropy on the real training set.
Here the model is a small CNN trained on scikit-learn's digits (stand-ins for your model
and your training data):

    python examples/prune_finetune.py              # fine-tune on the real training digits
    python examples/prune_finetune.py --data-free  # fine-tune from the unpruned model alone

Going data-free swaps the loader for :func:`~fastdfkd_plugin.kd_loader` (synthetic
images with the unpruned model's logits) and cross-entropy for
:func:`~fastdfkd_plugin.kd_loss`: the lines marked ``# data-free`` (docs/existing_scripts.md shows the diff).
"""

from __future__ import annotations

import argparse
import copy
import json

import torch
import torch.nn.functional as F
import torch_pruning as tp
from torch.utils.data import DataLoader, TensorDataset

from fastdfkd_plugin import Teacher, get_source, kd_loader, kd_loss
from fastdfkd_plugin.demo import DigitsNet, load_digits, train_teacher


@torch.no_grad()
def evaluate(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    model.eval()
    return round(100.0 * (model(images).argmax(1) == labels).float().mean().item(), 1)


def train_model(model: torch.nn.Module, train_loader, test_x: torch.Tensor, test_y: torch.Tensor, epochs: int,
                lr: float, loss_fn=F.cross_entropy) -> None:
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs * len(train_loader))
    for epoch in range(epochs):
        model.train()
        for inputs, targets in train_loader:
            loss = loss_fn(model(inputs), targets)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
        print(f"epoch {epoch}: loss {loss.item():.3f}, accuracy {evaluate(model, test_x, test_y)} %")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-free", action="store_true", help="fine-tune from the unpruned model instead of real data")
    parser.add_argument("--pruning-ratio", type=float, default=0.5)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--kd-steps", type=int, default=100, help="data-free: synthetic batches per epoch")
    parser.add_argument("--warmup-tasks", type=int, default=40, help="the synthesizer's warm-up (fewer: faster, rougher)")
    args = parser.parse_args()

    torch.manual_seed(0)
    digits = load_digits()                                                      # your data
    model = train_teacher(digits, epochs=6, model=DigitsNet(16))                # your trained model
    base_macs, _ = tp.utils.count_ops_and_params(model, digits.test_x[:1])
    accuracy_before = evaluate(model, digits.test_x, digits.test_y)
    teacher = Teacher(copy.deepcopy(model), (1, 32, 32), mean=[digits.mean], std=[digits.std])   # data-free

    example_inputs = torch.randn(1, 1, 32, 32)
    importance = tp.importance.GroupMagnitudeImportance(p=2)
    pruner = tp.pruner.BasePruner(model, example_inputs, importance, pruning_ratio=args.pruning_ratio,
                                  ignored_layers=[model.classifier])
    pruner.step()
    macs, _ = tp.utils.count_ops_and_params(model, example_inputs)
    accuracy_pruned = evaluate(model, digits.test_x, digits.test_y)

    train_loader = DataLoader(TensorDataset(digits.train_x, digits.train_y), batch_size=64, shuffle=True)
    train_loader = kd_loader(get_source("fastdfkd", teacher, warmup_tasks=args.warmup_tasks), batch_size=64,  # data-free
                             steps=args.kd_steps, student=model) if args.data_free else train_loader          # data-free
    train_model(model, train_loader, digits.test_x, digits.test_y, args.epochs, args.lr,
                loss_fn=kd_loss if args.data_free else F.cross_entropy)                                          # data-free

    results = {"fine_tuning": "data-free KD" if args.data_free else "real data", "speed_up": round(base_macs / macs, 2),
               "accuracy_before": accuracy_before, "accuracy_pruned": accuracy_pruned,
               "accuracy_fine_tuned": evaluate(model, digits.test_x, digits.test_y)}
    print(json.dumps(results))


if __name__ == "__main__":
    main()
