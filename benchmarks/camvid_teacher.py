"""The segmentation base: a CamVid teacher and a student trained on the real labels, trained here from scratch.

    python -m benchmarks.camvid_teacher [--teacher-epochs 30] [--student-epochs 60] [--threads 2]   # trains once each, then cached

No pretrained CamVid networks exist in ../shared/data, so the segmentation benchmarks
train their own (benchmarks.common.seg_models, seg_training): ``camvid_teacher``, a slim
ResNet-18 DeepLabV3+-like segmenter, and ``camvid_student``, the same at half the widths
trained the same way on the real labels, the reference a data-free student is measured
against. Epochs were chosen so both train in about half an hour on two CPU cores; the
weights kept are the best on ``val``; ``test_a`` is scored once, at the end. Reports mean
IoU over the 11 classes and pixel accuracy (unlabelled pixels excluded), MACs per
180×240 image and the training time.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .common.camvid import evaluate, load_split, macs_per_image
from .common.cli import benchmark_parser
from .common.report import environment, heading, publish
from .common.seg_training import load_segmenter, training_record


def markdown(results: dict) -> str:
    lines = heading("CamVid segmenters trained here: teacher and real-label student", results,
                    "Trained from scratch on camvid/train.npz ({threads} thread(s), torch {torch}); weights kept at the best "
                    "val mIoU; mean IoU over the 11 classes and pixel accuracy, unlabelled pixels excluded.")
    lines += ["| model | epochs (best) | MMAC / image | parameters | training min | val mIoU | val pixel acc. | "
              "test_a mIoU | test_a pixel acc. |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for row in results["models"]:
        val, test = row["val"], row["test_a"]
        lines.append(f"| {row['name']} | {row['epochs']} ({row['best_epoch']}) | {row['macs'] / 1e6:.0f} | "
                     f"{row['parameters'] / 1e6:.2f} M | {row['train_seconds'] / 60:.1f} | {val['miou']:.2f} | "
                     f"{val['pixel_accuracy']:.2f} | {test['miou']:.2f} | {test['pixel_accuracy']:.2f} |")
    lines += ["", "Load either with `benchmarks.common.seg_training.load_segmenter(name, epochs)` (cached in "
              "`$FASTDFKD_BENCHMARK_CACHE` as `<name>-<epochs>ep.pt`)."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--teacher-epochs", type=int, default=30)
    parser.add_argument("--student-epochs", type=int, default=60)
    parser.add_argument("--threads", type=int, default=2,
                        help="torch threads; 1 where other work shares the cores (two-thread steps stall when one is descheduled)")
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks/camvid_teacher"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    splits = {split: load_split(split, args.data_dir) for split in ("val", "test_a")}
    rows = []
    for name, epochs in (("camvid_teacher", args.teacher_epochs), ("camvid_student", args.student_epochs)):
        model = load_segmenter(name, epochs, args.data_dir)
        record = training_record(name, epochs)
        rows.append({"name": name, "epochs": epochs, "best_epoch": record["best_epoch"], "train_seconds": record["train_seconds"],
                     "macs": macs_per_image(model), "parameters": sum(p.numel() for p in model.parameters()),
                     **{split: evaluate(model, *data) for split, data in splits.items()}, "val_history": record["history"]})
        print(f"{name}: val mIoU {rows[-1]['val']['miou']:.2f} %, test_a mIoU {rows[-1]['test_a']['miou']:.2f} %", flush=True)
    results = {"environment": environment(), "models": rows}
    publish(args.out, results, markdown(results))


if __name__ == "__main__":
    main()
