"""Writing benchmark results: JSON plus a markdown table, atomically, with the command that made them.

A benchmark runs for minutes to hours and its files in docs/benchmarks/ are committed,
so a crash must never leave half a file there: everything goes through the package's own
:func:`fastdfkd_plugin.atomic_path`. The markdown pieces several reports share (the heading with the
command, a table per teacher) are here so that they read the same in every report.
"""

from __future__ import annotations

import json
import platform
import shlex
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from fastdfkd_plugin import __version__, atomic_path


def environment() -> dict[str, Any]:
    """The command that ran (as ``python -m benchmarks.NAME ...``) and what it ran on."""
    return {
        "command": " ".join(["python -m", f"benchmarks.{Path(sys.argv[0]).stem}", *map(shlex.quote, sys.argv[1:])]),
        "package_version": __version__,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "machine": platform.machine(),
    }


def write_results(out: Path, results: dict[str, Any], markdown: str) -> None:
    """``out``.json (``results``) and ``out``.md (``markdown``), each replaced atomically; the folder is made if missing."""
    out.parent.mkdir(parents=True, exist_ok=True)
    for path, text in ((out.with_suffix(".json"), json.dumps(results, indent=2)), (out.with_suffix(".md"), markdown)):
        with atomic_path(path) as temporary:
            temporary.write_text(text)


def publish(out: Path, results: dict[str, Any], markdown: str) -> None:
    """:func:`write_results`, then the markdown on stdout: how every benchmark ends."""
    write_results(out, results, markdown)
    print(markdown)


def heading(title: str, results: dict[str, Any], summary: str, **values: Any) -> list[str]:
    """Markdown lines opening a report: the title, the command that made it and one line saying what was measured.

    ``summary`` is a ``str.format`` template over ``values``, the results' own fields and their
    environment's (``{torch}``, ``{threads}``, ``{cuda}``: see :func:`environment`), in that order of precedence.
    """
    environment = results["environment"]
    return [f"# {title}", "", f"Command: `{environment['command']}`  ", summary.format(**{**environment, **results, **values}), ""]


def teacher_heading(teacher: dict[str, Any]) -> str:
    """A teacher's section heading in a held-out / test_a report: its name and FP32 accuracy on both."""
    return f"## {teacher['teacher']} (FP32 held-out {teacher['fp32']['heldout']:.2f} %, test_a {teacher['fp32']['test_a']:.2f} %)"


def mean_spread(values: list[float]) -> str:
    """A table cell: the mean, with the standard deviation over seeds when there is more than one value."""
    return f"{np.mean(values):.2f}" if len(values) == 1 else f"{np.mean(values):.2f} ± {np.std(values):.2f}"


def paired_table(rows: list[dict[str, Any]], sources: Sequence[str], split: str, columns: Sequence[str],
                 pair: tuple[str, str]) -> list[str]:
    """Markdown table lines: per source (a row) and column, two variants (mean ± std over the seeds' ``rows``) and the
    gain of the second over the first (the mean of the per-seed differences). A row's accuracy on ``split`` is keyed
    ``"{column}, {variant}"``."""
    lines = ["| source | " + " | ".join(f"{column}, {variant}" for column in columns for variant in (*pair, "gain")) + " |",
             "| --- |" + " --- |" * (3 * len(columns))]
    for source in sources:
        scored = [row["accuracy"][split] for row in rows if row["source"] == source]
        cells = []
        for column in columns:
            first, second = ([row[f"{column}, {variant}"] for row in scored] for variant in pair)
            cells += [mean_spread(first), mean_spread(second), f"{np.mean(np.subtract(second, first)):+.2f}"]
        lines.append(f"| {source} | " + " | ".join(cells) + " |")
    return lines


def scored_rows(sets: dict[str, tuple[Any, float]], score: Callable[[Any], dict[str, float]], digits: int = 2) -> list[dict[str, Any]]:
    """The rows :func:`source_tables` reads, one per calibration set: its synthesis seconds and ``score(inputs)``, printed as they come.

    ``sets``: source → (inputs, seconds to make them); ``score``: inputs → column → accuracy (%).
    """
    rows = []
    for source, (inputs, seconds) in sets.items():
        rows.append({"source": source, "synthesis_seconds": seconds, "accuracy": score(inputs)})
        print(f"  {source}: " + ", ".join(f"{k} {v:.{digits}f}" for k, v in rows[-1]["accuracy"].items()), flush=True)
    return rows


def source_tables(teachers: list[dict[str, Any]], columns: list[str]) -> list[str]:
    """Markdown lines, one table per teacher: a row per calibration source, its synthesis time, then ``columns``."""
    lines = []
    for result in teachers:
        lines += [f"## {result['teacher']} (FP32 {result['fp32']:.2f} %)", "",
                  "| calibration data | synthesis s | " + " | ".join(columns) + " |",
                  "| --- | --- | " + " | ".join("---" for _ in columns) + " |"]
        for row in result["rows"]:
            cells = " | ".join(f"{row['accuracy'][c]:.2f}" for c in columns)
            lines.append(f"| {row['source']} | {row['synthesis_seconds']:.0f} | {cells} |")
        lines.append("")
    return lines
