"""One Checkpoint type for every saved state, one resume convention (``resume=`` a path or True, ``--resume [PATH]``),
and files of the older formats that still load."""

from __future__ import annotations

import pytest
import torch
from conftest import FAST, MODELS, SHAPE, state_hash
from conftest import run_cli as run
from models import TinyNet, make_teacher

from fastdfkd_plugin import Checkpoint, DistillConfig, Distiller, FastDFKDError, Teacher, distill_datafree, get_source
from fastdfkd_plugin.runtime.checkpoint import DISTILLATION, GENERATOR_STATE

SMALL = DistillConfig(steps=8, batch_size=16, steps_per_batch=4, bank_size=64, lr=0.05, temperature=4)


def distill(teacher: Teacher, **options) -> torch.nn.Module:
    """A short data-free distillation of a fresh student; returns the student."""
    torch.manual_seed(0)
    student = TinyNet(width=4)
    source = get_source("fastdfkd", teacher, seed=1, **FAST)
    distill_datafree(teacher, student, source, SMALL, eval_samples=16, eval_every=4, checkpoint_every=4, **options)
    return student


def stopped_halfway(teacher: Teacher, checkpoint, monkeypatch) -> None:
    """The same run, interrupted after 4 of its 8 steps (as Ctrl-C would: the checkpoint is written)."""
    kd_step = Distiller.kd_step

    def interrupt_at_four(self):
        if self.step == 4:
            raise KeyboardInterrupt
        return kd_step(self)

    with monkeypatch.context() as patch:
        patch.setattr(Distiller, "kd_step", interrupt_at_four)
        with pytest.raises(KeyboardInterrupt):
            distill(teacher, checkpoint=checkpoint)


@pytest.fixture
def built(teacher) -> Teacher:
    return Teacher(teacher, SHAPE, device="cpu")


def test_resume_true_continues_from_the_checkpoint_and_a_path_from_that_path(built, tmp_path, monkeypatch):
    whole = distill(built)
    stopped_halfway(built, tmp_path / "a.ckpt", monkeypatch)
    (tmp_path / "b.ckpt").write_bytes((tmp_path / "a.ckpt").read_bytes())
    assert state_hash(distill(built, checkpoint=tmp_path / "a.ckpt", resume=True)) == state_hash(whole)
    assert state_hash(distill(built, resume=tmp_path / "b.ckpt")) == state_hash(whole)
    assert Checkpoint.load(tmp_path / "b.ckpt", DISTILLATION, built.info.fingerprint).state["step"] == 8  # written there too
    with pytest.raises(FastDFKDError, match="resume=True continues from the checkpoint path, but none is set"):
        distill(built, resume=True)


def test_a_distillation_checkpoint_of_the_previous_format_resumes_to_the_same_student(built, tmp_path, monkeypatch):
    whole = distill(built)
    stopped_halfway(built, tmp_path / "run.ckpt", monkeypatch)
    saved = torch.load(tmp_path / "run.ckpt", weights_only=True)
    config = {key: saved["settings"].pop(key) for key in list(DistillConfig.__dataclass_fields__)}
    torch.save({"format": 2, "teacher_fingerprint": saved["teacher_fingerprint"], "config": config,  # as 0.1 wrote it
                "run": saved["settings"], **saved["state"]}, tmp_path / "old.ckpt")
    assert state_hash(distill(built, resume=tmp_path / "old.ckpt")) == state_hash(whole)


def test_a_generator_state_of_the_previous_format_loads(built, tmp_path):
    source = get_source("fastdfkd", built, **FAST)
    source.next_batch(8)
    source.save_state(tmp_path / "new.pt")
    expected = source.next_batch(8).inputs
    saved = torch.load(tmp_path / "new.pt", weights_only=True)
    torch.save({"teacher_fingerprint": saved["teacher_fingerprint"], "input_shape": list(SHAPE),  # as 0.1 wrote it
                "generator_name": "compact", **saved["state"]}, tmp_path / "old.pt")
    loaded = get_source("fastdfkd", built, state_path=tmp_path / "old.pt", **FAST)
    assert torch.equal(loaded.next_batch(8).inputs, expected)


@pytest.mark.parametrize("change, message", [
    (lambda saved: {**saved, "version": 99}, "is a distillation checkpoint of format 99, but this fastdfkd reads format 3"),
    (lambda saved: {**saved, "kind": "generator state"}, "is not a distillation checkpoint; check the path"),
    (lambda saved: {"weights": torch.zeros(2)}, "is not a distillation checkpoint; check the path"),
    (lambda saved: {**saved, "teacher_fingerprint": "0123456789abcdef"}, "was made for another teacher (fingerprint 0123456789abcdef"),
])
def test_a_file_that_cannot_be_resumed_is_refused_in_one_sentence(built, tmp_path, monkeypatch, change, message):
    stopped_halfway(built, tmp_path / "run.ckpt", monkeypatch)
    torch.save(change(torch.load(tmp_path / "run.ckpt", weights_only=True)), tmp_path / "bad.ckpt")
    with pytest.raises(FastDFKDError) as refused:
        distill(built, resume=tmp_path / "bad.ckpt")
    assert message in str(refused.value) and "\n" not in str(refused.value)
    assert "start again without --resume" in str(refused.value)


def test_settings_that_differ_are_named_with_both_values(built, tmp_path):
    checkpoint = Checkpoint(GENERATOR_STATE, built.info.fingerprint, {"generator": "paper", "input_shape": [3, 32, 32]}, {})
    checkpoint.save(tmp_path / "g.pt")
    loaded = Checkpoint.load(tmp_path / "g.pt", GENERATOR_STATE, built.info.fingerprint)
    with pytest.raises(FastDFKDError, match=r"g\.pt was made with generator='paper', but this run has generator='compact'; "
                                            r"use the same settings, or warm up a new generator"):
        loaded.check_settings({"generator": "compact", "input_shape": [3, 32, 32]})
    loaded.check_settings({"generator": "paper", "input_shape": [3, 32, 32]})  # the same settings pass


PRUNE = ["prune", "--model", f"{MODELS}:tiny", "--input-shape", "3,32,32", "--speed-up", "1.5", "--recovery-steps", "4",
         "--steps-per-batch", "2", "--bn-samples", "8", "--kd-batch-size", "8", "--checkpoint-every", "2", "--raw-pixels",
         "--steps", "2", "--warmup-tasks", "1", "--batch-size", "8", "--device", "cpu", "-q"]


@pytest.mark.slow
def test_prune_checkpoints_to_out_ckpt_and_resume_alone_continues_from_it(tmp_path, capsys):
    out = tmp_path / "p.pt"
    assert run(capsys, *PRUNE, "--out", str(out))[0] == 0
    assert (tmp_path / "p.pt.ckpt").is_file()  # the default checkpoint, as for distill
    code, _, err = run(capsys, *PRUNE, "--out", str(out))
    assert code == 2 and "exists from an earlier run; pass --resume to continue it or --overwrite" in err
    assert run(capsys, *PRUNE, "--resume", "--out", str(tmp_path / "again.pt"), "--checkpoint", str(tmp_path / "p.pt.ckpt"))[0] == 0
    assert run(capsys, *PRUNE, "--resume", str(tmp_path / "p.pt.ckpt"), "--out", str(tmp_path / "third.pt"))[0] == 0
    first, again, third = (torch.load(tmp_path / name, weights_only=True)["state_dict"] for name in ("p.pt", "again.pt", "third.pt"))
    assert all(torch.equal(first[key], again[key]) and torch.equal(first[key], third[key]) for key in first)
    code, _, err = run(capsys, *PRUNE, "--resume", "--out", str(tmp_path / "fourth.pt"))
    assert code == 2 and "fourth.pt.ckpt does not exist, so there is nothing to resume" in err


def test_the_teacher_passed_to_distill_is_the_sources_own(built, tmp_path):
    source = get_source("gaussian", built)
    other = Teacher(make_teacher(seed=4), SHAPE, device="cpu")
    with pytest.raises(FastDFKDError, match="the source was built for another Teacher"):
        distill_datafree(other, TinyNet(width=4), source, SMALL)
