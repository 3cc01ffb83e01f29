"""Writing benchmark results: JSON plus a markdown table, atomically, with the command that made them."""

from __future__ import annotations

import json
import platform
import shlex
import sys
from pathlib import Path
from typing import Any

import torch

from fastdfkd_plugin import __version__
from fastdfkd_plugin.io import atomic_path


def environment() -> dict[str, Any]:
    return {
        "command": " ".join(["python -m", f"benchmarks.{Path(sys.argv[0]).stem}", *map(shlex.quote, sys.argv[1:])]),
        "package_version": __version__,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "machine": platform.machine(),
    }


def write_results(json_path: Path, markdown_path: Path, results: dict[str, Any], markdown: str) -> None:
    json_path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(json_path) as tmp:
        tmp.write_text(json.dumps(results, indent=2))
    with atomic_path(markdown_path) as tmp:
        tmp.write_text(markdown)


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
