"""The embedded demo, end to end (the README's first command runs exactly this)."""

from __future__ import annotations

import json

import pytest

from fastdfkd_plugin.cli.main import main


@pytest.mark.slow
def test_demo_runs_end_to_end_and_synthetic_data_beats_noise(tmp_path, capsys):
    assert main(["demo", "--out-dir", str(tmp_path), "-q"]) == 0
    out = capsys.readouterr().out
    assert "| fastdfkd |" in out and "| gaussian |" in out and "| real digits |" in out
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["teacher_accuracy"] > 95
    students, quantized = results["student_accuracy"], results["quantized_accuracy"]
    assert students["fastdfkd"] > students["gaussian"] + 20
    assert quantized["fastdfkd"]["W4A4"] > quantized["gaussian"]["W4A4"]
    view = results["fastdfkd_teacher_view"]  # the synthetic digits look like digits to the teacher, every class
    assert view["confidence"] > 0.7 and view["label_agreement"] > 80 and min(view["class_histogram"]) >= 25
    assert (tmp_path / "preview.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "fastdfkd-digits.npz").exists()
