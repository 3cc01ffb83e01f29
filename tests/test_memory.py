"""Freed CPU memory stays in the process: once warm, a step's large activations cost no page faults (glibc)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from fastdfkd_plugin.runtime.memory import glibc_malloc

pytestmark = pytest.mark.skipif(not glibc_malloc(), reason="glibc's malloc only")

# Each case runs in its own process: the setting is process-wide and cannot be undone.
PROBE = """
import json, resource, sys, torch
{setup}
conv = torch.nn.Conv2d(8, 8, 3, padding=1)
def step():  # a synthesis-like step: every activation is 32 MiB, at glibc's largest mmap threshold
    x = torch.rand(16, 8, 256, 256, requires_grad=True)
    torch.sigmoid(conv(x)).sum().backward()
for _ in range(8):  # the heap settles within a few steps
    step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
step()
step()
print(json.dumps({{"applied": applied, "faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before}}))
"""
CLI = "from fastdfkd_plugin.cli.main import main\nassert main(['sources']) == 0\napplied = None"


def probe(setup: str, **env: str) -> dict:
    done = subprocess.run([sys.executable, "-c", PROBE.format(setup=setup)], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **env})
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_freed_tensor_is_reused_without_page_faults_once_kept():
    assert probe("applied = None")["faults"] > 100_000  # about 106,000 a step: glibc hands the activations back and faults them in again
    kept = probe("from fastdfkd_plugin.runtime.memory import keep_freed_memory\napplied = keep_freed_memory()")
    assert kept["applied"] is True and kept["faults"] < 20_000


def test_the_command_line_keeps_freed_memory_unless_opted_out():
    assert probe(CLI)["faults"] < 20_000
    assert probe(CLI, FASTDFKD_KEEP_FREED_MEMORY="0")["faults"] > 100_000
