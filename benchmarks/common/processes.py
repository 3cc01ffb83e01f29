"""Running a command as its own process, as a user runs it, and measuring its wall time and peak resident memory.

The peak is sampled from outside twice a second and compared with the kernel's own count at
exit (``ru_maxrss``): the latter catches spikes between samples, the former survives the
memory plan resetting the process's high-water mark. A command above ``kill_at`` bytes is
stopped, so a benchmark never lets the kernel kill the machine's other work.
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

GIB = 2**30


@dataclass(frozen=True)
class MeasuredRun:
    returncode: int
    seconds: float
    peak_bytes: int
    killed: bool
    stdout: str  # empty unless captured
    stderr: str


def resident_bytes(pid: int) -> int:
    """Resident memory of ``pid`` now, 0 once it has gone."""
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return 0


def run_measured(command: list[str], kill_at: float, env: dict[str, str] | None = None, capture: bool = False) -> MeasuredRun:
    """Run ``command`` to the end (or stop it above ``kill_at`` bytes); ``capture`` keeps its output instead of showing it."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        started = time.perf_counter()
        child = subprocess.Popen(command, env=env, start_new_session=True,
                                 stdout=out if capture else None, stderr=err if capture else None, text=True)
        sampled, killed = 0, False
        while True:
            pid, status, usage = os.wait4(child.pid, os.WNOHANG)
            if pid:
                break
            sampled = max(sampled, resident_bytes(child.pid))
            if sampled > kill_at and not killed:
                os.killpg(child.pid, signal.SIGKILL)
                killed = True
            time.sleep(0.5)
        out.seek(0), err.seek(0)
        return MeasuredRun(os.waitstatus_to_exitcode(status), time.perf_counter() - started,
                           max(sampled, usage.ru_maxrss * 1024), killed, out.read(), err.read())
