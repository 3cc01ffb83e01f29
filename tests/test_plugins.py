"""The pluggy layer: built-ins as ordinary plugins, mock and real third-party plugins."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import SHAPE, registered

from fastdfkd_plugin import DataSource, FastDFKDError, get_source, hookimpl, list_sources
from fastdfkd_plugin.hooks.manager import BUILTIN_PLUGINS

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "fastdfkd-checkerboard"


class ConstantSource(DataSource):
    """Every pixel 0.5 (a test plugin)."""

    name = "constant"

    def synthesize_pixels(self, labels):
        return torch.full((len(labels), *self.input_shape), 0.5, device=self.device)


class MockPlugin:
    @hookimpl
    def fastdfkd_register_sources(self, register):
        register(ConstantSource)


@pytest.fixture
def mock_plugin():
    with registered(MockPlugin(), "mock-plugin") as plugin:
        yield plugin


def test_builtins_are_registered_as_plugins():
    entries = {entry.name: entry for entry in list_sources()}
    assert {"fastdfkd", "deepinversion", "gaussian", "uniform"} <= set(entries)
    assert entries["fastdfkd"].plugin in BUILTIN_PLUGINS
    assert entries["gaussian"].description.startswith("Gaussian noise")


def test_registered_plugin_source_is_selectable_by_name(mock_plugin, teacher):
    assert "constant" in {entry.name for entry in list_sources()}
    batch = get_source("constant", teacher, SHAPE, device="cpu").next_batch(4)
    assert torch.all(batch.inputs == 0.5)


def test_plugin_is_gone_after_unregistering(teacher):
    with pytest.raises(FastDFKDError, match="unknown source 'constant'"):
        get_source("constant", teacher, SHAPE)


def test_duplicate_source_names_are_refused(mock_plugin):
    class Impostor:
        @hookimpl
        def fastdfkd_register_sources(self, register):
            register(ConstantSource)

    with registered(Impostor(), "impostor"), pytest.raises(FastDFKDError, match="'constant' is registered by both"):
        list_sources()


def test_registering_something_that_is_not_a_source_is_refused():
    class Broken:
        @hookimpl
        def fastdfkd_register_sources(self, register):
            register(object)

    with registered(Broken(), "broken"), pytest.raises(FastDFKDError, match="not a DataSource subclass"):
        list_sources()


class FlatGenerator(torch.nn.Module):
    """A generator plugin's network: one linear layer to every pixel, sigmoid."""

    def __init__(self, input_shape, teacher_macs, latent_dim):
        super().__init__()
        self.latent_dim, self.input_shape = latent_dim, input_shape
        self.layer = torch.nn.Linear(latent_dim, int(torch.tensor(input_shape).prod()))

    def forward(self, z):
        return torch.sigmoid(self.layer(z)).view(len(z), *self.input_shape)


class GeneratorPlugin:
    @hookimpl
    def fastdfkd_register_generators(self, register):
        register("flat", FlatGenerator)


def test_plugin_generator_is_selectable_by_name_and_duplicates_are_refused(teacher):
    with registered(GeneratorPlugin(), "generator-plugin"):
        source = get_source("fastdfkd", teacher, SHAPE, device="cpu", generator="flat", steps=1, warmup_tasks=1, cache=False)
        assert isinstance(source.synthesizer.generator, FlatGenerator)
        assert source.next_batch(4).inputs.shape == (4, *SHAPE)
        assert source.settings()["generator"] == "flat"
        with registered(GeneratorPlugin(), "impostor"), pytest.raises(FastDFKDError, match="generator name 'flat' is registered by both"):
            get_source("fastdfkd", teacher, SHAPE, device="cpu", generator="flat")
    with pytest.raises(FastDFKDError, match="unknown generator 'flat'; choose one of compact, compact-subpixel, paper"):
        get_source("fastdfkd", teacher, SHAPE, device="cpu", generator="flat")


@pytest.fixture(scope="module")
def installed_example(tmp_path_factory):
    """pip-install the documented third-party example into a private folder (a real entry point)."""
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
         "--target", str(target), str(EXAMPLE)],
        check=True, capture_output=True, text=True,
    )
    return target


def fastdfkd(site: Path, *args: str, disable_autoload: bool = False) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(site)}
    env.pop("FASTDFKD_DISABLE_PLUGIN_AUTOLOAD", None)
    if disable_autoload:
        env["FASTDFKD_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    return subprocess.run([sys.executable, "-m", "fastdfkd_plugin.cli", *args], env=env, capture_output=True, text=True)


@pytest.mark.slow
def test_installed_third_party_plugin_is_listed_and_used(installed_example, tmp_path):
    listing = fastdfkd(installed_example, "sources")
    assert listing.returncode == 0, listing.stderr
    assert "checkerboard" in listing.stdout and "fastdfkd-checkerboard 1.0.0" in listing.stdout

    out = tmp_path / "boards.npz"
    result = fastdfkd(installed_example, "synthesize", "--model", f"{ROOT}/tests/models.py:tiny", "--input-shape", "3,32,32", "--raw-pixels",
                      "--source", "checkerboard", "--num-samples", "6", "--out", str(out), "-q")
    assert result.returncode == 0, result.stderr
    import numpy as np

    with np.load(out) as data:
        assert data["inputs"].shape == (6, 3, 32, 32)
        assert '"source": "checkerboard"' in str(data["metadata"])


@pytest.mark.slow
def test_environment_variable_disables_entry_point_autoloading(installed_example):
    listing = fastdfkd(installed_example, "sources", disable_autoload=True)
    assert listing.returncode == 0, listing.stderr
    assert "checkerboard" not in listing.stdout and "fastdfkd" in listing.stdout


def test_plugins_add_cli_commands_through_the_commands_hook(capsys):
    from fastdfkd_plugin.cli.main import main

    class CommandPlugin:
        @hookimpl
        def fastdfkd_register_commands(self, subparsers):
            hello = subparsers.add_parser("hello", help="say hello")
            hello.add_argument("--name", default="world")
            hello.set_defaults(run=lambda args: print(f"hello {args.name}"))

    with registered(CommandPlugin(), "command-plugin"):
        assert main(["hello", "--name", "plugins"]) == 0
    assert capsys.readouterr().out == "hello plugins\n"


def test_builtin_adapters_register_their_commands(capsys):
    from fastdfkd_plugin.cli.main import build_parser

    help_text = build_parser().format_help()
    assert "quantize-onnx" in help_text and "export-onnx" in help_text
