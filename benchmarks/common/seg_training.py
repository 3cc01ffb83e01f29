"""Training the CamVid segmenters of :mod:`.seg_models` on ``camvid/train.npz``, cached outside the repository.

There are no pretrained CamVid teachers, so the benchmarks train their own, once: random
scale (0.75–1.25), crop or pad back to 180×240 and horizontal flips; cross-entropy that
skips unlabelled pixels; AdamW with a one-cycle learning rate. Only ``val`` chooses
anything: it is scored every few epochs and the best-on-val weights are kept, so
``test_a`` stays unseen. Weights and the training record go to the benchmark cache
(:func:`.training.cache_path`), written atomically; :func:`load_segmenter` is the one way to get a model.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from fastdfkd_plugin import atomic_path, load_weights

from .camvid import IGNORE_INDEX, evaluate, load_split
from .data import default_data_dir
from .seg_models import SEGMENTERS
from .training import cache_path

BATCH_SIZE = 8
MAX_LR = 2e-3
WEIGHT_DECAY = 1e-4
SCALES = (0.75, 1.25)
EVAL_EVERY = 2  # epochs between scores on val (and always after the last)


def augment(x: torch.Tensor, y: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image: rescale by a random factor in :data:`SCALES`, pad (images with zeros, the mean after normalisation; labels
    with :data:`IGNORE_INDEX`) and crop a random window of the original size, flip horizontally half of the time."""
    height, width = x.shape[-2:]
    images, labels = [], []
    for image, label in zip(x, y):
        scale = float(torch.empty(()).uniform_(*SCALES, generator=generator))
        size = (round(height * scale), round(width * scale))
        image = F.interpolate(image[None], size=size, mode="bilinear", align_corners=False)[0]
        label = F.interpolate(label[None, None].float(), size=size, mode="nearest")[0, 0].long()
        pad_h, pad_w = max(0, height - size[0]), max(0, width - size[1])
        image = F.pad(image, (pad_w, pad_w, pad_h, pad_h))
        label = F.pad(label, (pad_w, pad_w, pad_h, pad_h), value=IGNORE_INDEX)
        top = int(torch.randint(0, image.shape[-2] - height + 1, (), generator=generator))
        left = int(torch.randint(0, image.shape[-1] - width + 1, (), generator=generator))
        image, label = image[:, top : top + height, left : left + width], label[top : top + height, left : left + width]
        if torch.rand((), generator=generator) < 0.5:
            image, label = image.flip(-1), label.flip(-1)
        images.append(image)
        labels.append(label)
    return torch.stack(images), torch.stack(labels)


def train(model: nn.Module, name: str, epochs: int, data_dir: Path, seed: int = 0) -> tuple[nn.Module, dict[str, Any]]:
    """Train ``model`` on ``train.npz``; return it with the best-on-val weights and its record (seconds, val history)."""
    torch.manual_seed(seed)
    started = time.perf_counter()
    x, y = load_split("train", data_dir)
    val_x, val_y = load_split("val", data_dir)
    steps_per_epoch = len(y) // BATCH_SIZE
    opt = torch.optim.AdamW(model.parameters(), lr=MAX_LR, weight_decay=WEIGHT_DECAY)
    schedule = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=MAX_LR, total_steps=epochs * steps_per_epoch, pct_start=0.1)
    generator = torch.Generator().manual_seed(seed)
    best: dict[str, Any] = {"miou": -1.0}
    history = []
    bar = tqdm(total=epochs * steps_per_epoch, desc=f"training {name}", unit="step")
    for epoch in range(1, epochs + 1):
        model.train()
        for index in torch.randperm(len(y), generator=generator)[: steps_per_epoch * BATCH_SIZE].split(BATCH_SIZE):
            images, labels = augment(x[index], y[index], generator)
            loss = F.cross_entropy(model(images), labels, ignore_index=IGNORE_INDEX)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            schedule.step()
            bar.update()
            bar.set_postfix(loss=f"{loss.item():.3f}", best_val_miou=f"{best['miou']:.1f}")
        if epoch % EVAL_EVERY == 0 or epoch == epochs:
            scores = evaluate(model, val_x, val_y)
            history.append({"epoch": epoch, **scores})
            if scores["miou"] > best["miou"]:
                best = {**scores, "epoch": epoch, "state_dict": copy.deepcopy(model.state_dict())}
            bar.write(f"{name} epoch {epoch}: val mIoU {scores['miou']:.2f} %, pixel accuracy {scores['pixel_accuracy']:.2f} %")
    bar.close()
    model.load_state_dict(best.pop("state_dict"))
    record = {"train_seconds": time.perf_counter() - started, "best_epoch": best.pop("epoch"), "val": best, "history": history}
    return model.eval(), record


def load_segmenter(name: str, epochs: int, data_dir: Path | None = None) -> nn.Module:
    """The named segmenter of :data:`.seg_models.SEGMENTERS` (``camvid_teacher``, ``camvid_student``) in eval mode, on the CPU,
    taking normalised N×3×H×W images (:data:`.camvid.MEAN`/``STD``) and returning N×11×H×W logits.

    Trained for ``epochs`` first (minutes on two CPU cores) and cached if that run is not in the cache yet.
    """
    if name not in SEGMENTERS:
        raise ValueError(f"unknown segmenter {name!r}; choose one of {', '.join(SEGMENTERS)}")
    path, model = cache_path(name, epochs), SEGMENTERS[name]()
    if path.exists():
        load_weights(model, path)
        return model.eval()
    trained, record = train(model, name, epochs, data_dir or default_data_dir())
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as temporary:
        torch.save({"state_dict": trained.state_dict(), "record": record}, temporary)
    print(f"trained {name} in {record['train_seconds']:.0f} s; cached at {path}", flush=True)
    return trained


def training_record(name: str, epochs: int) -> dict[str, Any]:
    """What training the cached run recorded: ``train_seconds``, ``best_epoch``, ``val`` scores of the kept weights, ``history``."""
    return torch.load(cache_path(name, epochs), weights_only=True)["record"]
