"""Run under torchrun (or alone) by test_distributed.py: start a run and stop halfway, or resume one.

    python -m torch.distributed.run --standalone --nproc-per-node 2 tests/distributed_driver.py start|resume OUT_DIR
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import torch.distributed as dist  # noqa: E402
from models import make_teacher, student  # noqa: E402

from fastdfkd_plugin import get_source
from fastdfkd_plugin.runtime import distributed
from fastdfkd_plugin.training.distillation import DistillConfig, Distiller

CONFIG = DistillConfig(steps=12, batch_size=16, steps_per_batch=3, bank_size=128, lr=0.05, temperature=4)


def digest(module, buffers: bool = True) -> str:
    h = hashlib.sha256()
    tensors = module.state_dict() if buffers else dict(module.named_parameters())
    for name, tensor in sorted(tensors.items()):
        h.update(name.encode() + tensor.detach().numpy().tobytes())
    return h.hexdigest()


def threads() -> int:
    """Threads of this process, C++ ones included (gloo's workers are invisible to ``threading``)."""
    return len(os.listdir("/proc/self/task"))


def record_teardown(path: Path, threads_before: int) -> None:
    """Registered before setup(), so it runs after setup()'s own exit handler (atexit is last-in, first-out)."""
    path.write_text(json.dumps({"left_process_group": not dist.is_initialized(), "threads_left": threads() - threads_before}))


def main(mode: str, out: Path) -> None:
    atexit.register(record_teardown, out / f"{mode}-exit-rank{os.environ.get('RANK', '0')}.json", threads())
    context = distributed.setup("cpu")
    teacher = make_teacher()
    source = get_source("fastdfkd", teacher, (3, 32, 32), seed=context.rank, steps=2, warmup_tasks=1, latent_dim=32, device="cpu")
    if context.world_size > 1:
        source.share_across_processes()
    run = Distiller(source.teacher, student(), source, CONFIG)
    if mode == "start":
        for _ in range(6):
            run.kd_step()
        run.save_checkpoint(out / "halfway.ckpt")  # as Ctrl-C would
    else:
        run.resume(out / "halfway.ckpt")
        run.run()
    # Mid-run, DDP keeps the parameters identical, but each process's BN statistics drift until run() ends.
    record = {"step": run.step, "student": digest(run.student, buffers=mode != "start"),
              "generator": digest(source.synthesizer.generator)}
    (out / f"{mode}-{context.world_size}-rank{context.rank}.json").write_text(json.dumps(record))


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))
