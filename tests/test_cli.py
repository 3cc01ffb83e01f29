"""The ``fastdfkd`` command line, run in-process through ``main`` (same code path as the script)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import MODELS
from conftest import run_cli as run
from models import make_teacher

from fastdfkd_plugin.cli.main import main

TINY = f"{MODELS}:tiny"
FAST_ARGS = ["--raw-pixels", "--steps", "2", "--warmup-tasks", "1", "--batch-size", "8", "--device", "cpu", "-q"]




def test_sources_lists_every_source_with_its_plugin(capsys):
    code, out, _ = run(capsys, "sources")
    assert code == 0
    for name in ("fastdfkd", "deepinversion", "gaussian", "uniform"):
        assert name in out
    assert "fastdfkd_plugin.builtin" in out  # the built-ins' plugin, listed like a third-party one


def data_labels_are_the_teachers(path) -> bool:
    with np.load(path) as data:
        logits = make_teacher()(torch.from_numpy(data["inputs"])).argmax(1).numpy()
        return bool((data["labels"] == logits).all()) and data["targets"].shape == data["labels"].shape


def test_no_flip_reaches_the_source(capsys, tmp_path):
    code, _, err = run(capsys, "synthesize", "--model", TINY, "--input-shape", "3,32,32", "--num-samples", "8",
                       "--no-flip", "--out", str(tmp_path / "s.npz"), *FAST_ARGS)
    assert code == 0, err
    with np.load(tmp_path / "s.npz") as data:
        assert json.loads(str(data["metadata"]))["settings"]["flip"] is False


def test_synthesize_writes_inputs_labels_metadata_and_preview(capsys, tmp_path):
    out, preview = tmp_path / "set.npz", tmp_path / "grid.png"
    code, stdout, err = run(capsys, "synthesize", "--model", TINY, "--input-shape", "3,32,32",
                            "--mean", "0.485,0.456,0.406", "--std", "0.229,0.224,0.225", "--num-samples", "12",
                            "--seed", "3", "--out", str(out), "--preview", str(preview), "--warmup-steps", "1",
                            *FAST_ARGS[1:])  # normalised: no --raw-pixels
    assert code == 0, err
    assert str(out) in stdout and "images/s" in stdout
    with np.load(out) as data:
        assert data["inputs"].dtype == np.float32 and data["inputs"].shape == (12, 3, 32, 32)
        assert data["labels"].dtype == np.int64 and data["labels"].shape == (12,)
        metadata = json.loads(str(data["metadata"]))
    from fastdfkd_plugin.teacher.teacher import fingerprint

    assert metadata["source"] == "fastdfkd" and metadata["seed"] == 3
    assert metadata["settings"]["steps"] == 2 and metadata["settings"]["warmup_tasks"] == 1
    assert metadata["settings"]["warmup_steps"] == 1 and metadata["settings"]["flip"] is True
    assert data_labels_are_the_teachers(out)
    assert metadata["teacher_fingerprint"] == fingerprint(make_teacher())
    assert metadata["package_version"] and metadata["seconds"] > 0
    assert preview.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(tmp_path.glob(".*.tmp"))


def test_generator_state_round_trip_skips_the_warm_up(capsys, tmp_path):
    state = tmp_path / "gen.pt"
    args = ["synthesize", "--model", TINY, "--input-shape", "3,32,32", "--num-samples", "8", *FAST_ARGS]
    assert run(capsys, *args, "--out", str(tmp_path / "a.npz"), "--save-generator-state", str(state))[0] == 0
    code, _, err = run(capsys, *args, "--out", str(tmp_path / "b.npz"), "--generator-state", str(state))
    assert code == 0, err
    with np.load(tmp_path / "b.npz") as data:
        assert json.loads(str(data["metadata"]))["settings"]["warmup_seconds"] == 0


def test_torchscript_model_spec(capsys, tmp_path):
    scripted = tmp_path / "teacher.pt"
    torch.jit.script(make_teacher()).save(str(scripted))
    code, _, err = run(capsys, "synthesize", "--model", str(scripted), "--input-shape", "3,32,32", "--source", "gaussian", "--raw-pixels",
                       "--num-samples", "4", "--out", str(tmp_path / "s.npz"), "-q")
    assert code == 0, err


def test_weights_load_safely_and_pickles_need_the_flag(capsys, tmp_path):
    teacher = make_teacher(seed=5)
    weights = tmp_path / "w.th"
    torch.save({"state_dict": {f"module.{k}": v for k, v in teacher.state_dict().items()}, "best": 1.0}, weights)
    base = ["synthesize", "--model", TINY, "--input-shape", "3,32,32", "--source", "gaussian", "--raw-pixels", "--num-samples", "4", "-q"]
    code, _, err = run(capsys, *base, "--weights", str(weights), "--out", str(tmp_path / "a.npz"))
    assert code == 0, err
    pickled = tmp_path / "module.pt"
    torch.save(teacher, pickled)
    code, _, err = run(capsys, *base, "--weights", str(pickled), "--out", str(tmp_path / "b.npz"))
    assert code == 2 and "--allow-pickle" in err and "runs code" in err and "Traceback" not in err
    code, _, err = run(capsys, *base, "--weights", str(pickled), "--allow-pickle", "--out", str(tmp_path / "b.npz"))
    assert code == 0, err


def test_allow_pickle_help_says_it_runs_code(capsys):
    with pytest.raises(SystemExit):
        main(["synthesize", "--help"])
    assert "RUNS CODE" in capsys.readouterr().out


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model", "missing.py:net"], "does not exist"),
        (["--model", "no_colon_here"], "is not 'path/to/file.py:callable'"),
        (["--model", f"{MODELS}:absent"], "has no attribute 'absent'"),
        (["--model", f"{MODELS}:not_a_module"], "not a torch.nn.Module"),
        (["--model", "no_such_package.models:net"], "cannot import"),
        (["--model", f"{MODELS}:no_batchnorm", "--prior", "batchnorm"], "does not apply"),
        (["--model", TINY, "--prior", "nope"], "unknown prior 'nope'"),
        (["--model", f"{MODELS}:nan_weights"], "NaN or Inf"),
        (["--model", f"{MODELS}:tuple_output", "--task", "classification"], "output_transform"),
        (["--model", f"{MODELS}:conv_logits"], "class logits or 1×1 class maps? say which"),
        (["--model", TINY, "--task", "nope"], "unknown task 'nope'"),
        (["--model", TINY, "--input-shape", "1,32,32"], "cannot take inputs of shape"),
        (["--model", TINY, "--weights", "missing.th"], "weights file missing.th does not exist"),
        (["--model", TINY, "--source", "nope"], "unknown source 'nope'"),
        (["--model", TINY, "--source", "gaussian", "--steps", "3"], "source 'gaussian' does not take --steps, an option of "),
        (["--model", TINY, "--mean", "0.5,0.5"], "one per channel"),
        (["--model", TINY, "--generator-state", "missing.pt"], "does not exist"),
    ],
)
def test_bad_input_gets_one_clear_sentence_and_exit_2(capsys, tmp_path, args, message):
    if "--input-shape" not in args:
        args = [*args, "--input-shape", "3,32,32"]
    out = tmp_path / "set.npz"
    code, _, err = run(capsys, "synthesize", *args, "--num-samples", "4", "--out", str(out), *FAST_ARGS)
    assert code == 2
    assert message in err and err.startswith("fastdfkd: error:") and "Traceback" not in err
    assert not out.exists() and not list(tmp_path.iterdir())


def test_weights_that_do_not_fit_are_explained(capsys, tmp_path):
    weights = tmp_path / "other.th"
    torch.save({"head.weight": torch.zeros(3, 3)}, weights)
    code, _, err = run(capsys, "synthesize", "--model", TINY, "--weights", str(weights), "--input-shape", "3,32,32",
                       "--num-samples", "4", "--out", str(tmp_path / "s.npz"), *FAST_ARGS)
    assert code == 2 and "do not fit the model" in err


@pytest.mark.parametrize("args", [["--num-samples", "0"], ["--num-samples", "-3"], ["--batch-size", "0"],
                                  ["--input-shape", "3,32"], ["--input-shape", "3,0,32"]])
def test_non_positive_or_malformed_sizes_exit_2(capsys, tmp_path, args):
    base = {"--num-samples": "4", "--input-shape": "3,32,32"}
    base.update(dict(zip(args[::2], args[1::2])))
    flat = [item for pair in base.items() for item in pair]
    code, _, err = run(capsys, "synthesize", "--model", TINY, *flat, *([] if "--batch-size" not in args else args),
                       "--out", str(tmp_path / "s.npz"), "-q")
    assert code == 2 and ("positive" in err or "C,H,W" in err)


def test_missing_output_folder_is_explained(capsys, tmp_path):
    code, _, err = run(capsys, "synthesize", "--model", TINY, "--input-shape", "3,32,32", "--source", "gaussian",
                       "--num-samples", "4", "--out", str(tmp_path / "nowhere" / "s.npz"), "-q")
    assert code == 2 and "output folder" in err


def test_failed_write_leaves_no_partial_file(tmp_path, monkeypatch):
    from fastdfkd_plugin.runtime import io

    def crash(handle, **arrays):
        handle.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(io.np, "savez", crash)
    with pytest.raises(KeyboardInterrupt):
        io.save_npz(tmp_path / "s.npz", np.zeros((1, 1, 2, 2)), np.zeros(1), {})
    assert list(tmp_path.iterdir()) == []


def test_synthesising_needs_the_normalisation_or_raw_pixels(capsys, tmp_path):
    args = ["synthesize", "--model", TINY, "--input-shape", "3,32,32", "--num-samples", "4", "--out", str(tmp_path / "s.npz")]
    code, _, err = run(capsys, *args, "-q")
    assert code == 2 and "--mean and --std" in err and "--raw-pixels" in err and not (tmp_path / "s.npz").exists()
    code, _, err = run(capsys, *args, "--raw-pixels", "--mean", "0.5,0.5,0.5", "-q")
    assert code == 2 and "drop it or drop --mean/--std" in err


def test_progress_bars_stay_out_of_logs(capsys, tmp_path):
    """Not a terminal (as under pytest, CI or `> log`): no bars and no escape codes, even without -q."""
    code, _, err = run(capsys, "synthesize", "--model", TINY, "--input-shape", "3,32,32", "--raw-pixels", "--num-samples", "8",
                       "--steps", "2", "--warmup-tasks", "1", "--device", "cpu", "--out", str(tmp_path / "s.npz"))
    assert code == 0 and "\r" not in err and "\x1b[" not in err and "synthesis:" not in err
