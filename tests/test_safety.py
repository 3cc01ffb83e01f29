"""Never lose a user's files; refuse bad input before work, in one sentence; clean interruptions.

One test (or one parametrised case) per case of the safety review; each failed before
these guarantees were built.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import MODELS
from conftest import run_cli as run
from models import make_teacher, residual

from fastdfkd_plugin import FastDFKDError, __version__, list_sources
from fastdfkd_plugin.hooks.manager import get_plugin_manager
from fastdfkd_plugin.sources.base import DataSource
from fastdfkd_plugin.teacher.inputspace import InputSpace
from fastdfkd_plugin.training.distillation import DistillConfig

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--model", f"{MODELS}:tiny", "--input-shape", "3,32,32"]  # FAST below adds --raw-pixels
FAST = ["--raw-pixels", "--steps", "2", "--warmup-tasks", "1", "--batch-size", "8", "--device", "cpu", "-q"]
DISTILL = ["distill", "--teacher", f"{MODELS}:tiny", "--input-shape", "3,32,32", "--student", f"{MODELS}:student",
           "--kd-steps", "4", "--kd-steps-per-batch", "2", "--kd-batch-size", "8", "--eval-samples", "8",
           "--bank-size", "32", "--no-plot", *FAST]
PRUNE = ["prune", *TINY, "--speed-up", "1.5", "--recovery-steps", "2", "--bn-samples", "8", "--kd-batch-size", "8", *FAST]




def one_sentence(err: str) -> bool:
    return err.startswith("fastdfkd: error: ") and "Traceback" not in err and err.count("\n") == 1


@pytest.fixture
def no_synthesis(monkeypatch):
    """Fail the test if any synthesis starts: refusals must come before the expensive part."""
    def synthesis_started(self, *args, **kwargs):
        raise AssertionError("synthesis started before the bad input was refused")

    monkeypatch.setattr(DataSource, "next_batch", synthesis_started)


# -- 1-3: data loss ----------------------------------------------------------------------------------

@pytest.mark.parametrize("target", ["data", "."])
def test_export_test_data_never_deletes_files_it_did_not_write(tmp_path, capsys, monkeypatch, target):
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / target
    folder.mkdir(exist_ok=True)
    (folder / "weights.th").write_bytes(b"the user's weights")
    export = ["export-onnx", *TINY, "--out", str(tmp_path / "m.onnx"), "--num-samples", "8", "--test-data", target, *FAST]
    code, _, err = run(capsys, *export)
    assert code == 2 and "not empty" in err and "--overwrite" in err and one_sentence(err)
    assert (folder / "weights.th").read_bytes() == b"the user's weights" and not (tmp_path / "m.onnx").exists()
    (folder / "test_data_set_7").mkdir()  # stale test data from an earlier export is replaced, nothing else
    assert run(capsys, *export, "--overwrite")[0] == 0
    assert (folder / "weights.th").read_bytes() == b"the user's weights"
    assert sorted(p.name for p in folder.glob("test_data_set_*")) == ["test_data_set_0"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "no staging folder left behind"


def test_failed_export_verification_keeps_the_good_onnx_already_there(tmp_path, capsys):
    out = tmp_path / "m.onnx"
    assert run(capsys, "export-onnx", *TINY, "--out", str(out), "--num-samples", "8", *FAST)[0] == 0
    good = out.read_bytes()
    code, _, err = run(capsys, "export-onnx", *TINY, "--out", str(out), "--num-samples", "8", "--min-agreement", "101", *FAST)
    assert code == 2 and "the file already there was kept" in err and one_sentence(err)
    assert out.read_bytes() == good
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"], "the rejected temporary export is removed"


@pytest.mark.parametrize("command, checkpoint_flags", [(DISTILL, []), (PRUNE, ["--checkpoint", "{tmp}/p.ckpt"])])
def test_running_again_without_resume_refuses_to_overwrite_the_checkpoint(tmp_path, capsys, command, checkpoint_flags):
    flags = [flag.format(tmp=tmp_path) for flag in checkpoint_flags]
    assert run(capsys, *command, *flags, "--out", str(tmp_path / "a.pt"))[0] == 0
    checkpoint = Path(flags[1]) if flags else tmp_path / "a.pt.ckpt"
    before = checkpoint.read_bytes()
    code, _, err = run(capsys, *command, *flags, "--out", str(tmp_path / "a.pt"))
    assert code == 2 and "--resume" in err and "--overwrite" in err and one_sentence(err)
    assert checkpoint.read_bytes() == before
    assert run(capsys, *command, *flags, "--overwrite", "--out", str(tmp_path / "a.pt"))[0] == 0


# -- 4: every output checked before work ----------------------------------------------------------

@pytest.mark.parametrize("flag", ["--out", "--preview", "--save-generator-state"])
@pytest.mark.parametrize("problem", ["missing folder", "a folder"])
def test_unwritable_outputs_are_refused_before_synthesis(tmp_path, capsys, no_synthesis, flag, problem):
    paths = {"--out": str(tmp_path / "s.npz"), "--preview": str(tmp_path / "p.png"), "--save-generator-state": str(tmp_path / "g.pt")}
    paths[flag] = str(tmp_path / "nowhere" / "x") if problem == "missing folder" else str(tmp_path)
    args = ["synthesize", *TINY, "--num-samples", "8", *FAST]
    for name, path in paths.items():
        args += [name, path]
    code, _, err = run(capsys, *args)
    assert code == 2 and one_sentence(err)
    assert ("does not exist" in err) if problem == "missing folder" else ("is a folder" in err and flag in err)


@pytest.mark.parametrize("flag", ["--checkpoint", "--metrics"])
def test_distill_outputs_are_refused_before_synthesis(tmp_path, capsys, no_synthesis, flag):
    code, _, err = run(capsys, *DISTILL, flag, str(tmp_path / "nowhere" / "x"), "--out", str(tmp_path / "s.pt"))
    assert code == 2 and "does not exist" in err and one_sentence(err)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_output_folder_is_refused_before_synthesis(tmp_path, capsys, no_synthesis):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    code, _, err = run(capsys, "synthesize", *TINY, "--num-samples", "8", "--out", str(locked / "s.npz"), *FAST)
    assert code == 2 and "cannot write" in err and one_sentence(err)


# -- 5: resume refuses anything that changes the run ---------------------------------------------------

def test_distill_resume_refuses_changed_settings_and_another_student(tmp_path, capsys):
    out = tmp_path / "s.pt"
    assert run(capsys, *DISTILL, "--out", str(out))[0] == 0
    resume = ["--resume", f"{out}.ckpt", "--out", str(tmp_path / "t.pt")]  # resume from the checkpoint given
    changed_steps = [*DISTILL, *resume]
    changed_steps[changed_steps.index("--steps") + 1] = "3"
    code, _, err = run(capsys, *changed_steps)
    assert code == 2 and "steps=2" in err and "steps=3" in err and one_sentence(err)
    normalised = [arg for arg in DISTILL if arg != "--raw-pixels"]
    for args in ([*normalised, "--mean", "0.5,0.5,0.5"], [*DISTILL, "--warmup-tasks", "2"], [*DISTILL, "--batch-size", "4"]):
        code, _, err = run(capsys, *args, *resume)
        assert code == 2 and "use the same settings" in err and one_sentence(err), args
    other_source = [arg for arg in DISTILL if arg not in ("--warmup-tasks", "1")]  # deepinversion has no warm-up
    code, _, err = run(capsys, *other_source, *resume, "--source", "deepinversion")
    assert code == 2 and "source='fastdfkd'" in err and "source='deepinversion'" in err
    wider = [*DISTILL, *resume]
    wider[wider.index(f"{MODELS}:student")] = f"{MODELS}:tiny"  # same classes, another architecture
    code, _, err = run(capsys, *wider)
    assert code == 2 and "same student architecture" in err and "of shape" in err and one_sentence(err)


def test_prune_resume_refuses_another_speed_up(tmp_path, capsys):
    checkpoint = ["--checkpoint", str(tmp_path / "p.ckpt")]
    assert run(capsys, *PRUNE, *checkpoint, "--out", str(tmp_path / "a.pt"))[0] == 0
    faster = [*PRUNE, *checkpoint, "--resume", "--out", str(tmp_path / "b.pt")]
    faster[faster.index("--speed-up") + 1] = "1.6"
    code, _, err = run(capsys, *faster)
    assert code == 2 and "speed_up=1.5" in err and "speed_up=1.6" in err and one_sentence(err)
    assert not (tmp_path / "b.pt").exists()


# -- 6: values that make no sense are refused at parsing ------------------------------------------------

@pytest.mark.parametrize("option, value", [("--std", "inf"), ("--std", "0,1,1"), ("--mean", "nan,0,0"), ("--std", "1,-1,1")])
def test_non_finite_or_zero_normalisation_is_refused(tmp_path, capsys, option, value):
    code, _, err = run(capsys, "synthesize", *TINY, "--num-samples", "4", option, value, "--out", str(tmp_path / "s.npz"), *FAST)
    assert code == 2 and option in err and not (tmp_path / "s.npz").exists()


@pytest.mark.parametrize("option, value", [("--lr", "0"), ("--lr", "inf"), ("--temperature", "nan"), ("--temperature", "-4")])
def test_non_finite_or_zero_kd_settings_are_refused(tmp_path, capsys, option, value):
    code, _, err = run(capsys, *DISTILL, option, value, "--out", str(tmp_path / "s.pt"))
    assert code == 2 and option in err


def test_the_python_api_refuses_them_too():
    with pytest.raises(FastDFKDError, match="positive and finite"):
        InputSpace(3, std=[float("inf")] * 3)
    with pytest.raises(FastDFKDError, match="finite"):
        InputSpace(3, mean=[float("nan")] * 3)
    with pytest.raises(FastDFKDError, match="lr must be a positive finite number"):
        DistillConfig(lr=float("nan"))


# -- 7-9: the user's files and models ------------------------------------------------------------------

@pytest.mark.parametrize("code_text, expected", [
    ("raise RuntimeError('boom at import')\n", "RuntimeError: boom at import"),
    ("def net():\n    raise ValueError('no such width')\n", "raised ValueError: no such width"),
])
def test_a_model_file_that_raises_is_named_with_its_error(tmp_path, capsys, code_text, expected):
    (tmp_path / "broken_model.py").write_text(code_text)
    code, _, err = run(capsys, "synthesize", "--model", f"{tmp_path / 'broken_model.py'}:net", "--input-shape", "3,32,32",
                       "--num-samples", "4", "--out", str(tmp_path / "s.npz"), *FAST)
    assert code == 2 and expected in err and "broken_model.py" in err and one_sentence(err)


def test_a_teacher_in_another_dtype_is_told_about_its_dtype(tmp_path, capsys):
    (tmp_path / "double.py").write_text(
        f"import sys\nsys.path.insert(0, {str(MODELS.parent)!r})\nfrom models import make_teacher\n"
        "def net():\n    return make_teacher().double()\n"
    )
    code, _, err = run(capsys, "synthesize", "--model", f"{tmp_path / 'double.py'}:net", "--input-shape", "3,32,32",
                       "--num-samples", "4", "--out", str(tmp_path / "s.npz"), *FAST)
    assert code == 2 and "float64" in err and "model.float()" in err and "--input-shape" not in err


def test_random_bytes_are_corrupt_and_only_real_pickles_suggest_allow_pickle(tmp_path, capsys):
    (tmp_path / "noise.th").write_bytes(os.urandom(4096))
    code, _, err = run(capsys, "synthesize", *TINY, "--weights", str(tmp_path / "noise.th"), "--num-samples", "4",
                       "--out", str(tmp_path / "s.npz"), *FAST)
    assert code == 2 and "not a readable weights file" in err and "--allow-pickle" not in err
    torch.save({"state_dict": make_teacher().state_dict(), "note": object.__new__(InputSpace)}, tmp_path / "pickled.th")
    code, _, err = run(capsys, "synthesize", *TINY, "--weights", str(tmp_path / "pickled.th"), "--num-samples", "4",
                       "--out", str(tmp_path / "s.npz"), *FAST)
    assert code == 2 and "--allow-pickle" in err


def test_weights_of_another_architecture_name_the_keys_that_differ(tmp_path, capsys):
    torch.save(residual().state_dict(), tmp_path / "residual.th")
    code, _, err = run(capsys, "synthesize", *TINY, "--weights", str(tmp_path / "residual.th"), "--num-samples", "4",
                       "--out", str(tmp_path / "s.npz"), *FAST)
    assert code == 2 and "missing from the file, e.g. body.0.weight" in err and "the model lacks, e.g. stem.0.weight" in err


# -- 10-11: sizes and ONNX models ----------------------------------------------------------------

@pytest.mark.parametrize("command", [["synthesize"], ["quantize-onnx"]])
def test_a_set_too_large_for_memory_or_disk_is_refused_up_front(tmp_path, capsys, monkeypatch, no_synthesis, command):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    code, _, err = run(capsys, *command, *TINY, "--num-samples", "100000000", "--out", str(tmp_path / "big.out"), *FAST)
    assert code == 2 and "GiB" in err and "lower --num-samples" in err and one_sentence(err)
    assert list(tmp_path.iterdir()) == []


def test_an_onnx_model_with_a_fixed_batch_of_one_is_calibrated_in_batches_of_one(tmp_path, capsys):
    teacher = make_teacher()
    torch.onnx.export(teacher, (torch.zeros(1, 3, 32, 32),), str(tmp_path / "fixed.onnx"), input_names=["input"], dynamo=False)
    code, out, err = run(capsys, "quantize-onnx", "--onnx", str(tmp_path / "fixed.onnx"), *TINY, "--num-samples", "12",
                         "--out", str(tmp_path / "q.onnx"), *FAST)
    assert code == 0, err
    assert "(top-1 agreement 100.0 %)" in out and "estimated to keep" in out  # the estimate runs the graph in batches of one too


def test_quantize_onnx_without_input_shape_or_onnx_model_says_which_to_give(tmp_path, capsys):
    code, _, err = run(capsys, "quantize-onnx", "--model", f"{MODELS}:tiny", "--out", str(tmp_path / "q.onnx"), *FAST)
    assert code == 2 and "--input-shape" in err and one_sentence(err)


def test_an_object_array_as_calibration_is_refused_in_one_sentence(tmp_path, capsys):
    np.save(tmp_path / "objects.npy", np.array([object(), object()], dtype=object), allow_pickle=True)
    code, _, err = run(capsys, "quantize-onnx", *TINY, "--calibration", str(tmp_path / "objects.npy"),
                       "--out", str(tmp_path / "q.onnx"), *FAST)
    assert code == 2 and "numeric array" in err and one_sentence(err)


# -- 12-13: interruptions, leftovers and file modes ------------------------------------------------------

def fastdfkd(*args: str, env: dict | None = None) -> subprocess.Popen:
    command = [sys.executable, "-c", "import sys; from fastdfkd_plugin.cli.entry import main; sys.exit(main())", *args]
    return subprocess.Popen(command, cwd=ROOT, env={**os.environ, **(env or {})}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def wait_for(condition, process: subprocess.Popen, seconds: float = 240) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert process.poll() is None, process.communicate()[1][-2000:]
        assert time.monotonic() < deadline, "timed out waiting for the run to get going"
        time.sleep(0.2)


@pytest.mark.slow
def test_sigterm_during_distillation_writes_the_checkpoint_and_exits_143(tmp_path):
    checkpoint = tmp_path / "s.pt.ckpt"
    process = fastdfkd(*DISTILL[:-1], "--kd-steps", "1000000", "--checkpoint-every", "1", "--out", str(tmp_path / "s.pt"))
    wait_for(checkpoint.exists, process)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 143, err
    assert f"--resume {checkpoint}" in err and "Traceback" not in err
    assert torch.load(checkpoint, weights_only=True)["state"]["step"] >= 1
    assert not list(tmp_path.glob(".*.tmp")) and not (tmp_path / "s.pt").exists()


@pytest.mark.slow
def test_sigterm_during_quantize_onnx_leaves_no_temporary_files(tmp_path):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    process = fastdfkd("quantize-onnx", *TINY, "--raw-pixels", "--num-samples", "4096", "--warmup-tasks", "50", "--steps", "2",
                       "--device", "cpu", "-q", "--out", str(tmp_path / "q.onnx"), env={"TMPDIR": str(scratch)})
    wait_for(lambda: any(scratch.glob("fastdfkd-ort-*")), process)
    time.sleep(1)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 143 and "Traceback" not in err, err
    assert not list(scratch.glob("fastdfkd-ort-*")), "the working folder is removed (torch's and ONNX Runtime's own caches may stay)"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scratch"]


def test_ctrl_c_while_importing_at_start_up_exits_130_without_a_traceback():
    patched_import = (
        "import builtins, sys\n"
        "real = builtins.__import__\n"
        "def interrupted(name, *args, **kwargs):\n"
        "    if name == 'torch':\n"
        "        raise KeyboardInterrupt\n"
        "    return real(name, *args, **kwargs)\n"
        "builtins.__import__ = interrupted\n"
        "from fastdfkd_plugin.cli.entry import main\n"
        "sys.exit(main())\n"
    )
    result = subprocess.run([sys.executable, "-c", patched_import, "sources"], cwd=ROOT, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 130 and "Traceback" not in result.stderr and "interrupted" in result.stderr


def test_outputs_get_the_users_file_mode(tmp_path, capsys):
    previous = os.umask(0o027)
    try:
        assert run(capsys, "synthesize", *TINY, "--source", "gaussian", "--raw-pixels", "--num-samples", "4", "--out", str(tmp_path / "new.npz"),
                   "-q")[0] == 0
        existing = tmp_path / "existing.npz"
        existing.write_bytes(b"old")
        existing.chmod(0o604)
        assert run(capsys, "synthesize", *TINY, "--source", "gaussian", "--raw-pixels", "--num-samples", "4", "--out", str(existing), "-q")[0] == 0
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "new.npz").stat().st_mode) == 0o640
    assert stat.S_IMODE(existing.stat().st_mode) == 0o604 and existing.read_bytes() != b"old"


# -- 14: plugins that break ------------------------------------------------------------------------------

def test_a_plugin_that_fails_to_import_does_not_disable_the_command_line(tmp_path):
    dist = tmp_path / "broken_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[fastdfkd]\nbroken = broken_plugin_module\n")
    (tmp_path / "broken_plugin_module.py").write_text("raise ImportError('needs a library that is not installed')\n")
    env = {"PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    for args, expected in ((["sources"], "fastdfkd"), (["--version"], f"fastdfkd {__version__}"), (["--help"], "synthesize")):
        process = fastdfkd(*args, env=env)
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0 and expected in out, err
        if args == ["sources"]:
            assert "'broken' (broken_plugin_module) from broken-plugin 0.1 failed to load" in err
            assert "FASTDFKD_DISABLE_PLUGIN_AUTOLOAD" in err and "Traceback" not in err


class RaisingPlugin:
    @staticmethod
    def fastdfkd_register_sources(register):
        raise RuntimeError("this plugin is broken")

    @staticmethod
    def fastdfkd_register_commands(subparsers):
        sys.exit(3)


def test_a_plugin_hook_that_raises_or_exits_is_named_and_skipped(caplog, capsys):
    from fastdfkd_plugin.hooks.hookspecs import hookimpl

    plugin = type("Broken", (), {name: staticmethod(hookimpl(getattr(RaisingPlugin, name)))
                                 for name in ("fastdfkd_register_sources", "fastdfkd_register_commands")})
    manager = get_plugin_manager()
    manager.register(plugin, name="broken-hooks")
    try:
        assert "fastdfkd" in {entry.name for entry in list_sources()}
        assert run(capsys, "--version")[0] == 0
    finally:
        manager.unregister(name="broken-hooks")
    messages = caplog.text
    assert "'broken-hooks' failed in fastdfkd_register_sources and is skipped (RuntimeError: this plugin is broken)" in messages
    assert "'broken-hooks' failed in fastdfkd_register_commands and is skipped (SystemExit" in messages
