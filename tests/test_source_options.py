"""A source declares its own options: the command line lists, takes and refuses them by the source ``--source`` names."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import MODELS, registered
from conftest import run_cli as run

from fastdfkd_plugin import DataSource, FastDFKDError, SourceOption, get_source, hookimpl, list_sources
from fastdfkd_plugin.hooks.argtypes import positive

SYNTHESIZE = ["synthesize", "--model", f"{MODELS}:tiny", "--input-shape", "3,32,32", "--raw-pixels", "--device", "cpu", "-q"]


def help_text(capsys, *args: str) -> str:
    code, out, err = run(capsys, *args, "--help")
    assert code == 0, err
    return out


def test_help_lists_the_options_of_the_source_named_and_no_other(capsys):
    default = help_text(capsys, *SYNTHESIZE)
    assert "options of source 'fastdfkd'" in default and "--warmup-tasks" in default and "--no-cache" in default
    gaussian = help_text(capsys, *SYNTHESIZE, "--source", "gaussian")
    assert "options of source 'gaussian'" in gaussian and "--no-clip" in gaussian
    assert "--warmup-tasks" not in gaussian and "--no-cache" not in gaussian and "--prior" not in gaussian
    deepinversion = help_text(capsys, "distill", "--help", "--source", "deepinversion")  # --source after --help works too
    assert "--synthesis-steps STEPS, --steps STEPS" in deepinversion and "--max-shift MAX_SHIFT" in deepinversion
    assert "--generator-state GENERATOR_STATE" not in deepinversion and "--no-cache" not in deepinversion


@pytest.mark.parametrize("source, option", [("gaussian", "--no-cache"), ("uniform", "--steps"), ("deepinversion", "--generator")])
def test_an_option_of_another_source_is_refused_naming_the_source(capsys, tmp_path, source, option):
    value = [] if option == "--no-cache" else ["x" if option == "--generator" else "3"]
    code, _, err = run(capsys, *SYNTHESIZE, "--source", source, option, *value, "--num-samples", "4",
                       "--out", str(tmp_path / "s.npz"))
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert f"source '{source}' does not take {option}, an option of " in err and "--source" in err
    assert not (tmp_path / "s.npz").exists()


def test_a_source_option_reaches_the_constructor(capsys, tmp_path):
    code, _, err = run(capsys, *SYNTHESIZE, "--source", "gaussian", "--no-clip", "--num-samples", "4", "--out", str(tmp_path / "s.npz"))
    assert code == 0, err
    with np.load(tmp_path / "s.npz") as data:
        assert '"clip": false' in str(data["metadata"])


@pytest.mark.parametrize("source", ["deepinversion", "gaussian"])
def test_a_commands_own_default_for_a_source_option_applies_only_to_sources_that_take_it(capsys, tmp_path, source):
    # export-onnx defaults fastdfkd's --warmup-tasks to 3; other sources have no warm-up and must not be handed one
    steps = ["--steps", "2"] if source == "deepinversion" else []
    code, out, err = run(capsys, "export-onnx", *SYNTHESIZE[1:], "--source", source, *steps, "--num-samples", "8",
                         "--batch-size", "8", "--out", str(tmp_path / "m.onnx"))
    assert code == 0, err
    assert f"verified on 8 {source} inputs" in out


class ScaledSource(DataSource):
    """Constant images at a brightness of its own option (a test plugin)."""

    name = "scaled"
    options = (SourceOption(("--brightness-steps",), "brightness_steps", "brightness in eighths", type=positive),)

    def __init__(self, teacher, *, brightness_steps: int = 4, **common) -> None:
        super().__init__(teacher, **common)
        self.brightness_steps = brightness_steps

    def synthesize_pixels(self, labels):
        return torch.full((len(labels), *self.input_shape), self.brightness_steps / 8, device=self.device)

    def settings(self):
        return {"brightness_steps": self.brightness_steps}


class ScaledPlugin:
    @hookimpl
    def fastdfkd_register_sources(self, register):
        register(ScaledSource)


def test_a_third_party_source_brings_its_own_options_to_every_command(capsys, tmp_path):
    with registered(ScaledPlugin(), "scaled-plugin"):
        assert "--brightness-steps BRIGHTNESS_STEPS" in help_text(capsys, *SYNTHESIZE, "--source", "scaled")
        code, _, err = run(capsys, *SYNTHESIZE, "--source", "scaled", "--brightness-steps", "2", "--num-samples", "4",
                           "--out", str(tmp_path / "s.npz"))
        assert code == 0, err
        with np.load(tmp_path / "s.npz") as data:
            assert np.allclose(data["inputs"], 0.25) and '"brightness_steps": 2' in str(data["metadata"])
        code, _, err = run(capsys, *SYNTHESIZE, "--brightness-steps", "2", "--num-samples", "4", "--out", str(tmp_path / "t.npz"))
        assert code == 2 and "source 'fastdfkd' does not take --brightness-steps, an option of scaled" in err
        with pytest.raises(FastDFKDError, match=r"source 'scaled' does not take 'steps' \(it takes autocast_dtype, brightness_steps,"):
            get_source("scaled", torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3)), (3, 2, 2), steps=2)


def test_a_source_option_without_a_constructor_keyword_is_refused_at_registration():
    class Misdeclared(ScaledSource):
        name = "misdeclared"
        options = (SourceOption(("--gain",), "gain", "not a constructor option"),)

    class MisdeclaredPlugin:
        @hookimpl
        def fastdfkd_register_sources(self, register):
            register(Misdeclared)

    with registered(MisdeclaredPlugin(), "misdeclared-plugin"), pytest.raises(
            FastDFKDError, match="gives source 'misdeclared' command-line options for gain, which its constructor does not take"):
        list_sources()


def test_a_source_option_that_clashes_with_a_command_option_is_refused(capsys, tmp_path):
    class Clashing(ScaledSource):
        name = "clashing"
        options = (SourceOption(("--out",), "brightness_steps", "clashes with every command's --out", type=positive),)

    class ClashingPlugin:
        @hookimpl
        def fastdfkd_register_sources(self, register):
            register(Clashing)

    with registered(ClashingPlugin(), "clashing-plugin"):
        code, _, err = run(capsys, *SYNTHESIZE, "--source", "clashing", "--num-samples", "4", "--out", str(tmp_path / "s.npz"))
    assert code == 2 and "source 'clashing' has an option --out that `fastdfkd synthesize` already has" in err


def test_a_plugin_written_for_the_old_constructor_gets_one_sentence(teacher):
    class OldStyle(ScaledSource):
        name = "old-style"

        def __init__(self, teacher, input_shape, **common):  # sources before 0.2 took input_shape
            super().__init__(teacher, **common)

    class OldPlugin:
        @hookimpl
        def fastdfkd_register_sources(self, register):
            register(OldStyle)

    with registered(OldPlugin(), "old-plugin"), pytest.raises(FastDFKDError, match="takes input_shape after the teacher"):
        get_source("old-style", teacher, (3, 32, 32))
