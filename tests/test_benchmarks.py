"""The benchmarks stay importable, runnable and layered, and their shared pieces do what the reports rely on.

Every module under benchmarks/ imports, every script answers ``main(["--help"])``, imports
keep to ``benchmarks.common``, the public API, ``examples`` and outside packages, and no
import circles. Nothing here reads ../shared/data, trains or times anything: the
benchmarks themselves are run by hand (see benchmarks/README.md).
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest
import torch
from imports import find_circle, import_graph, imported_modules, module_files
from models import make_teacher
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"
FIRST_PARTY = {"benchmarks", "fastdfkd_plugin", "adapters", "examples", "tests"}
FILES = module_files(BENCHMARKS, "benchmarks")
SCRIPTS = [name for name in FILES if not name.startswith("benchmarks.common") and name != "benchmarks"]


def import_problem(module: str, names: list[str]) -> str | None:
    """Why a benchmark may not import ``module`` (``names`` from it), or None when it may."""
    top = module.split(".")[0]
    if top == "benchmarks":
        return None if module.startswith("benchmarks.common") else "a benchmark imports only from benchmarks.common"
    if top == "fastdfkd_plugin":
        parts = module.split(".")
        if len(parts) == 3 and parts[1] == "adapters":
            return None
        if module != "fastdfkd_plugin":
            return "use the public API: `from fastdfkd_plugin import NAME` or fastdfkd_plugin.adapters.TOOLKIT"
        import fastdfkd_plugin

        private = sorted(set(names) - set(fastdfkd_plugin.__all__))
        return f"{', '.join(private)} not in fastdfkd_plugin.__all__" if private else None
    if top in FIRST_PARTY - {"examples"}:
        return f"{top} is not importable by benchmarks (adapters are fastdfkd_plugin.adapters.TOOLKIT)"
    return None  # examples, the standard library, third-party packages


@pytest.mark.parametrize("name", list(FILES))
def test_every_benchmark_module_imports_without_reading_data(name, monkeypatch, tmp_path):
    # a module that read the data or the teacher cache at import time would fail here
    monkeypatch.setenv("FASTDFKD_DATA_DIR", str(tmp_path / "no-data"))
    monkeypatch.setenv("FASTDFKD_BENCHMARK_CACHE", str(tmp_path / "no-cache"))
    importlib.import_module(name)


@pytest.mark.parametrize("name", SCRIPTS)
def test_every_script_answers_help(name, capsys):
    module = importlib.import_module(name)
    assert callable(getattr(module, "main", None)), f"{FILES[name]} has no main(argv); a helper belongs in benchmarks/common/"
    source = FILES[name].read_text()
    assert 'if __name__ == "__main__":\n    main()' in source, f"{FILES[name]} does not run main() as a script"
    with pytest.raises(SystemExit) as exit_info:
        module.main(["--help"])
    assert exit_info.value.code in (0, None)
    out = capsys.readouterr().out
    assert out.startswith("usage: ") and f"python -m {name}" in out, out[:300]


def test_benchmarks_import_only_common_the_public_api_examples_and_outside_packages():
    problems = [f"{FILES[name].relative_to(ROOT)}:{line}: imports {module}: {why}"
                for name in FILES for line, module, names in imported_modules(name, FILES)
                if (why := import_problem(module, names))]
    assert not problems, "\n".join(problems)


def test_no_import_circle_among_benchmark_modules():
    circle = find_circle(import_graph(FILES))
    assert circle is None, "import circle: " + " -> ".join(circle or [])


# -- the shared pieces ----------------------------------------------------------------------


def test_results_are_written_as_json_and_markdown_atomically(tmp_path):
    from benchmarks.common.report import write_results
    from fastdfkd_plugin import atomic_path

    out = tmp_path / "new" / "result"
    write_results(out, {"accuracy": 91.5}, "# result\n")
    assert json.loads(out.with_suffix(".json").read_text()) == {"accuracy": 91.5}
    assert out.with_suffix(".md").read_text() == "# result\n"
    with pytest.raises(RuntimeError), atomic_path(out.with_suffix(".md")) as temporary:
        temporary.write_text("half")
        raise RuntimeError("crash mid-write")
    assert out.with_suffix(".md").read_text() == "# result\n"
    assert sorted(p.name for p in out.parent.iterdir()) == ["result.json", "result.md"]  # no temporary left behind


def test_accuracy_over_time_writes_one_png_for_all_panels(tmp_path):
    from benchmarks.common.plots import Panel, accuracy_over_time

    curve = [{"seconds": 60.0 * minute, "accuracy": 10.0 + minute} for minute in range(4)]
    panels = [Panel(f"target {t}", [{"source": "fastdfkd", "curve": curve}], 80.0, "unpruned") for t in (2.0, 2.6)]
    accuracy_over_time(panels, tmp_path / "curve.png", xlabel="minutes", ylabel="accuracy (%)")
    assert (tmp_path / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_teacher_registry_refuses_an_unknown_name_in_one_sentence():
    from benchmarks.common.teachers import load_teacher, teacher_names

    with pytest.raises(ValueError) as refused:
        load_teacher("resnet99")
    message = str(refused.value)
    assert "\n" not in message and ". " not in message, message
    assert "'resnet99'" in message and all(name in message for name in teacher_names())


def test_random_edge_teachers_come_at_their_own_shape_without_normalisation():
    from benchmarks.common.teachers import build_teacher

    teacher = build_teacher("mobilenet_v1_025_96", "cpu")
    assert teacher.input_shape == (3, 96, 96)
    assert teacher.space.mean_values == [0.0, 0.0, 0.0] and teacher.space.std_values == [1.0, 1.0, 1.0]


def test_paddleocr_teachers_come_from_the_installed_wheel_at_their_shape_with_rapidocrs_normalisation():
    pytest.importorskip("rapidocr_onnxruntime", reason="rapidocr-onnxruntime is not installed (the test extra installs it)")
    from benchmarks.common.teachers import build_teacher

    teacher = build_teacher("ppocr_cls", "cpu")
    assert teacher.input_shape == (3, 48, 192)
    assert teacher.space.mean_values == [0.5] * 3 and teacher.space.std_values == [0.5] * 3
    assert teacher.task.name == "classification" and teacher.info.num_classes == 2


def test_folding_batchnorm_keeps_the_function_and_leaves_no_batchnorm():
    from benchmarks.common.teachers import fold_batchnorm
    from examples.cifar_resnet import CifarResNet

    model = make_teacher(model=lambda: CifarResNet(20))
    folded = fold_batchnorm(model)
    x = torch.randn(4, 3, 32, 32)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in folded.modules())
    torch.testing.assert_close(folded(x), model(x), atol=1e-4, rtol=1e-4)


def test_stated_fastdfkd_warmup_defaults_are_the_sources_own():
    from benchmarks.common.sources import FASTDFKD_WARMUP_BATCH_SIZE, FASTDFKD_WARMUP_TASKS, cold_source
    from fastdfkd_plugin import Teacher

    settings = cold_source("fastdfkd", Teacher(make_teacher(), (3, 32, 32), device="cpu")).settings()
    assert (settings["warmup_tasks"], settings["warmup_batch_size"]) == (FASTDFKD_WARMUP_TASKS, FASTDFKD_WARMUP_BATCH_SIZE)



def test_activation_ranges_report_leaves_out_a_source_a_teacher_could_not_run(tmp_path):
    from benchmarks.activation_ranges import markdown, plot
    from benchmarks.common.report import environment

    def row(source: str, seed: int, ratio: float) -> dict:
        return {"source": source, "seed": seed, "range_ratio": {"depth 0–20 %": ratio}, "tensor_ratio": {"/a": ratio, "/b": ratio},
                "accuracy": {split: {"W4A4 MinMax": 50.0 + seed} for split in ("heldout", "test_a")},
                **({"shrunk_real_w4a4_minmax_heldout": {"1.0": 50.0 + seed}} if source == "real" else {})}

    rows = [row(source, seed, ratio) for seed in (0, 1)
            for source, ratio in (("real", 1.0), ("gaussian", 0.5), ("fastdfkd, auto-calibration prior", 0.7))]
    results = {"samples": 8, "seeds": [0, 1], "environment": environment(),
               "teachers": [{"teacher": "vit", "fp32": {"heldout": 80.0, "test_a": 79.0}, "stages": ["depth 0–20 %"], "rows": rows}]}
    report = markdown(results)
    assert "| fastdfkd, auto-calibration prior | 0.70 ± 0.00 |" in report
    assert "batchnorm prior" not in report  # a BN-free teacher has no such row, rather than a row of nan
    assert "| real | 50.50 ± 0.50 |" in report
    plot(results, tmp_path / "ranges.png")
    assert (tmp_path / "ranges.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_seeds_real_calibration_set_does_not_depend_on_which_other_seeds_run(tmp_path):
    import numpy as np

    from benchmarks.common.data import HELDOUT, load_images, seeded_real_sets

    index = np.arange(10_000)  # every image a distinct 1×1 pixel, so sets can be compared image by image
    pixels = np.stack([index % 256, index // 256, np.zeros_like(index)], -1).astype(np.uint8).reshape(-1, 1, 1, 3)
    (tmp_path / "cifar10").mkdir()
    np.savez(tmp_path / "cifar10" / "train_10k.npz", x=pixels, y=index % 10)

    first, heldout, _ = seeded_real_sets("heldout", 100, [0, 1, 2], tmp_path, seed=0)
    later, heldout_later, _ = seeded_real_sets("heldout", 100, [1, 3], tmp_path, seed=0)
    assert np.array_equal(first[1], later[1]) and np.array_equal(heldout, heldout_later)
    assert len(heldout) == HELDOUT

    def images(array: np.ndarray) -> set[tuple[float, ...]]:
        return {tuple(image) for image in array.reshape(len(array), -1).round(4)}

    assert not images(later[3]) & (images(heldout) | images(first[0]) | images(first[1]) | images(first[2]))
    by_position, _ = load_images("train_10k", tmp_path, limit=300 + HELDOUT, seed=0)  # how seeds 0-2 were drawn before
    assert np.array_equal(np.concatenate([first[0], first[1], first[2]]), by_position[:300].numpy())
    with pytest.raises(SystemExit, match="no room"):
        seeded_real_sets("heldout", 100, [80], tmp_path, seed=0)


def test_int4_grid_report_gives_each_grid_and_the_per_seed_gain(tmp_path):
    from benchmarks.common.report import environment
    from benchmarks.int4_grid import COLUMNS, GRIDS, SOURCES, markdown, plot

    def row(source: str, seed: int) -> dict:
        scores = {f"{column}, {grid}": 50.0 + seed + (4.0 if grid == GRIDS[1] else 0.0) for column in COLUMNS for grid in GRIDS}
        return {"source": source, "seed": seed, "set_seconds": {}, "accuracy": {"heldout": scores, "test_a": scores}}

    results = {"samples": 8, "seeds": [0, 1], "environment": environment(),
               "teachers": [{"teacher": "resnet20", "fp32": {"heldout": 86.0, "test_a": 81.0},
                             "rows": [row(source, seed) for seed in (0, 1) for source in SOURCES]}]}
    report = markdown(results)
    assert "| real | 50.50 ± 0.50 | 54.50 ± 0.50 | +4.00 |" in report
    plot(results, tmp_path / "grid.png")
    assert (tmp_path / "grid.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
