"""The distillation loop and its memory bank."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import FAST, MODELS, SHAPE, state_hash
from models import TinyNet, make_teacher

from fastdfkd_plugin import FastDFKDError, Teacher, agreement, get_source
from fastdfkd_plugin.cli.main import main
from fastdfkd_plugin.training.distillation import DistillConfig, Distiller, MemoryBank, distill, kd_loss


def test_kd_loss_is_zero_for_equal_logits_and_scaled_by_tau_squared():
    logits = torch.randn(4, 10)
    assert kd_loss(logits, logits, 4.0).abs() < 1e-6
    other = torch.randn(4, 10)
    t = 3.0
    expected = (torch.softmax(other / t, 1) * (torch.log_softmax(other / t, 1) - torch.log_softmax(logits / t, 1))).sum(1).mean() * t * t
    assert torch.allclose(kd_loss(logits, other, t), expected, atol=1e-6)


def test_memory_bank_evicts_the_oldest_images():
    bank = MemoryBank(capacity=5)
    bank.add(torch.arange(4.0).view(4, 1))
    bank.add(torch.arange(4.0, 7.0).view(3, 1))
    assert bank.images.flatten().tolist() == [2, 3, 4, 5, 6]
    assert set(bank.sample(20, torch.Generator().manual_seed(0)).flatten().tolist()) <= {2, 3, 4, 5, 6}
    bank.add(torch.arange(7.0, 20.0).view(13, 1))  # more than it holds at once: the newest 5
    assert bank.images.flatten().tolist() == [15, 16, 17, 18, 19]


def test_memory_bank_samples_the_ith_oldest_image_wherever_its_buffer_put_it():
    """The bank is a ring buffer, but index i is the i-th oldest image, as in a list that drops its oldest; a bank
    restored from :attr:`images` (a checkpoint) samples the same images from the same stream."""
    wrapped, restored = MemoryBank(capacity=5), MemoryBank(capacity=5)
    for start in range(0, 12, 3):
        wrapped.add(torch.arange(float(start), start + 3.0).view(3, 1))
    as_list = torch.arange(12.0)[-5:]
    restored.restore(wrapped.images)
    index = torch.randint(0, 5, (30,), generator=torch.Generator().manual_seed(3))
    for bank in (wrapped, restored):
        assert torch.equal(bank.sample(30, torch.Generator().manual_seed(3)).flatten(), as_list[index])


def test_distillation_from_synthetic_batches_raises_agreement_and_leaves_the_teacher(teacher):
    source = get_source("fastdfkd", teacher, SHAPE, seed=0, **FAST)
    held_out = get_source("fastdfkd", teacher, SHAPE, seed=99, **FAST).synthetic_set(128, 64).inputs
    torch.manual_seed(0)
    student = TinyNet(width=4)
    before_teacher = state_hash(teacher)
    before = agreement(source.teacher, student, held_out)
    log = distill(teacher, student, source,
                  DistillConfig(steps=150, batch_size=32, steps_per_batch=10, bank_size=512, lr=0.05, temperature=4))
    after = agreement(source.teacher, student, held_out)
    assert after > before + 0.2, (before, after)
    assert sum(log.losses[-20:]) < sum(log.losses[:20])
    assert state_hash(teacher) == before_teacher
    assert source.objective.student is None, "the adversarial term is released after the run"


SMALL = DistillConfig(steps=12, batch_size=16, steps_per_batch=4, bank_size=64, lr=0.05, temperature=4)


def make_run(teacher, seed=0):
    torch.manual_seed(seed)
    source = get_source("fastdfkd", teacher, SHAPE, seed=0, **FAST)
    return Distiller(source.teacher, TinyNet(width=4), source, SMALL)


def test_the_adversarial_term_is_aimed_at_the_student_during_the_run(teacher):
    run = make_run(teacher)
    seen = []
    run.run(evaluate=lambda student: seen.append(run.batches.objective.student is run.student) or {})
    assert seen == [True, True]


def test_a_resumed_run_ends_where_an_uninterrupted_one_does(teacher, tmp_path):
    whole = make_run(teacher)
    whole.run()
    checkpoint = tmp_path / "run.ckpt"
    first = make_run(teacher)

    def stop_after_six(student):
        if first.step == 6:
            raise KeyboardInterrupt
        return {}

    with pytest.raises(KeyboardInterrupt):
        first.run(evaluate=stop_after_six, eval_every=6, checkpoint=checkpoint)
    resumed = make_run(teacher, seed=123)  # different init: everything must come from the checkpoint
    resumed.resume(checkpoint)
    assert resumed.step == 6
    resumed.run()
    assert state_hash(resumed.student) == state_hash(whole.student)
    assert resumed.log.losses == whole.log.losses


def test_resume_refuses_a_checkpoint_from_another_teacher(teacher, tmp_path):
    run = make_run(teacher)
    run.save_checkpoint(tmp_path / "run.ckpt")
    other = make_run(make_teacher(seed=1))
    with pytest.raises(FastDFKDError, match="another teacher"):
        other.resume(tmp_path / "run.ckpt")
    with pytest.raises(FastDFKDError, match="does not exist"):
        other.resume(tmp_path / "missing.ckpt")


def test_mismatched_outputs_and_devices_are_refused(teacher):
    teacher = Teacher(teacher, SHAPE, device="cpu")
    with pytest.raises(FastDFKDError, match="number of classes"):  # refused on construction, before any step
        Distiller(teacher, TinyNet(width=4, classes=7), iter([torch.randn(16, *SHAPE)] * 10), SMALL).run()
    with pytest.raises(FastDFKDError, match="move both to one device"):
        Distiller(teacher, TinyNet(width=4).to("meta"), iter([]), SMALL)
    with pytest.raises(FastDFKDError, match="ran out"):
        Distiller(teacher, TinyNet(width=4), iter([]), SMALL).run()


DISTILL = ["distill", "--teacher", f"{MODELS}:tiny", "--input-shape", "3,32,32", "--raw-pixels", "--kd-steps", "6", "--kd-steps-per-batch", "3",
           "--kd-batch-size", "16", "--batch-size", "16", "--steps", "2", "--warmup-tasks", "1", "--eval-samples", "32",
           "--eval-every", "3", "--bank-size", "128", "--lr", "0.05", "--temperature", "4", "--device", "cpu", "-q"]


def test_distill_command_writes_student_metrics_plot_and_resumes(tmp_path, capsys):
    out = tmp_path / "student.pt"
    assert main([*DISTILL, "--student", f"{MODELS}:student", "--out", str(out)]) == 0
    assert "6 KD steps on 1 process(es)" in capsys.readouterr().out
    student = TinyNet(width=4)
    student.load_state_dict(torch.load(out, weights_only=True))
    metrics = [json.loads(line) for line in Path(f"{out}.metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [0, 3, 6] and all("agreement" in m for m in metrics)
    assert Path(f"{out}.metrics.png").read_bytes().startswith(b"\x89PNG")
    again = tmp_path / "again.pt"
    assert main([*DISTILL, "--student", f"{MODELS}:student", "--resume", f"{out}.ckpt", "--out", str(again)]) == 0
    resumed, finished = torch.load(again, weights_only=True), torch.load(out, weights_only=True)
    assert all(torch.equal(resumed[key], finished[key]) for key in finished)


@pytest.mark.parametrize("extra, message", [
    (["--student", f"{MODELS}:seven_classes"], "number of classes"),
    (["--student", f"{MODELS}:student", "--resume", "missing.ckpt"], "does not exist"),
])
def test_distill_command_refuses_bad_input_before_spending_time(tmp_path, capsys, extra, message):
    code = main([*DISTILL, *extra, "--out", str(tmp_path / "s.pt")])
    assert code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "s.pt").exists()


def test_distill_command_refuses_a_checkpoint_from_another_teacher(tmp_path, capsys):
    assert main([*DISTILL, "--student", f"{MODELS}:student", "--out", str(tmp_path / "a.pt")]) == 0
    args = [*DISTILL, "--student", f"{MODELS}:student", "--resume", str(tmp_path / "a.pt.ckpt"), "--out", str(tmp_path / "b.pt")]
    args[args.index(f"{MODELS}:tiny")] = f"{MODELS}:residual"
    assert main(args) == 2
    assert "another teacher" in capsys.readouterr().err


def test_a_bank_that_runs_out_of_memory_names_the_setting(monkeypatch):
    bank = MemoryBank(capacity=10)

    def out_of_memory(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(torch, "empty", out_of_memory)
    with pytest.raises(FastDFKDError, match="bank of 10 images; lower bank_size"):
        bank.add(torch.zeros(2, 1))


def test_distill_takes_uint8_x_y_validation_data_and_reports_percent(tmp_path, capsys):
    images = torch.randint(0, 256, (20, 32, 32, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    np.savez(tmp_path / "val.npz", x=images.numpy(), y=np.arange(20) % 10)
    out = tmp_path / "s.pt"
    assert main([*DISTILL, "--student", f"{MODELS}:student", "--eval-data", str(tmp_path / "val.npz"), "--no-plot",
                 "--out", str(out)]) == 0
    assert "accuracy" in capsys.readouterr().out
    metrics = [json.loads(line) for line in Path(f"{out}.metrics.jsonl").read_text().splitlines()]
    assert all(0 <= m["accuracy"] <= 100 for m in metrics) and any(m["accuracy"] > 1 for m in metrics)


def test_a_time_budget_replaces_the_step_count(tmp_path, capsys):
    out = tmp_path / "s.pt"
    args = [arg for arg in DISTILL if arg not in ("--kd-steps", "6")]
    assert main([*args, "--student", f"{MODELS}:student", "--minutes", "0.02", "--no-plot", "--out", str(out)]) == 0
    steps = int(capsys.readouterr().out.split(" KD steps")[0].split()[-1])
    assert steps >= 1 and torch.load(f"{out}.ckpt", weights_only=True)["settings"]["seconds"] == pytest.approx(1.2)
