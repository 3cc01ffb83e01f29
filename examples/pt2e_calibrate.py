"""torchao PT2E static quantization, in the shape of the PyTorch 2 Export post-training quantization tutorial.

That tutorial exports a model with ``torch.export``, runs ``prepare_pt2e`` with the X86
Inductor quantizer, calibrates with ``for image, target in data_loader: model(image)`` and
calls ``convert_pt2e``. Here the model is a small CNN trained on scikit-learn's digits
(stand-ins for your model and your calibration images):

    python examples/pt2e_calibrate.py              # calibrate on 500 real training digits
    python examples/pt2e_calibrate.py --data-free  # calibrate on 500 images synthesised from the model

A synthetic set is a ``Dataset`` of ``(image, label)`` pairs, so the tutorial's own loader
and calibration loop take it unchanged: going data-free changes the two lines marked
``# data-free`` (docs/existing_scripts.md shows the diff).
"""

from __future__ import annotations

import argparse
import json

import torch
from torch.utils.data import DataLoader, TensorDataset
from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import (
    X86InductorQuantizer,
    get_default_x86_inductor_quantization_config,
)

from fastdfkd_plugin import Teacher, get_source
from fastdfkd_plugin.demo import DigitsNet, load_digits, train_teacher

BATCH_SIZE = 50  # torch.export fixes the batch size of the example below


def calibrate(model: torch.nn.Module, data_loader: DataLoader) -> None:
    with torch.no_grad():
        for image, target in data_loader:
            model(image)


@torch.no_grad()
def accuracy(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    predictions = torch.cat([model(chunk).argmax(1) for chunk in images.split(BATCH_SIZE)])
    return round(100.0 * (predictions == labels).float().mean().item(), 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-free", action="store_true", help="calibrate on synthetic images instead of real ones")
    parser.add_argument("--num-samples", type=int, default=500)
    parser.add_argument("--warmup-tasks", type=int, default=40, help="the synthesizer's warm-up (fewer: faster, rougher)")
    args = parser.parse_args()

    torch.manual_seed(0)
    digits = load_digits()                                                      # your validation data
    model = train_teacher(digits, epochs=6, model=DigitsNet(16)).eval()         # your trained model

    if args.data_free:
        calibration_set = get_source("fastdfkd", Teacher(model, (1, 32, 32), mean=[digits.mean], std=[digits.std]),  # data-free
                                     warmup_tasks=args.warmup_tasks).synthetic_set(args.num_samples)                 # data-free
    else:
        calibration_set = TensorDataset(digits.train_x[: args.num_samples], digits.train_y[: args.num_samples])
    data_loader = DataLoader(calibration_set, batch_size=BATCH_SIZE, shuffle=True, drop_last=True)

    example_inputs = (digits.test_x[:BATCH_SIZE],)
    exported = torch.export.export(model, example_inputs).module()
    quantizer = X86InductorQuantizer().set_global(get_default_x86_inductor_quantization_config())
    prepared = prepare_pt2e(exported, quantizer)
    calibrate(prepared, data_loader)
    quantized = convert_pt2e(prepared)

    results = {"calibration": "synthetic" if args.data_free else "real",
               "fp32_accuracy": accuracy(model, digits.test_x, digits.test_y),
               "int8_accuracy": accuracy(quantized, digits.test_x, digits.test_y)}
    print(json.dumps(results))


if __name__ == "__main__":
    main()
