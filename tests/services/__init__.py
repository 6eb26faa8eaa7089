"""Real services for tests, started on free loopback ports and stopped with the session."""

from __future__ import annotations

import subprocess


def stop(proc: subprocess.Popen) -> None:
    """Terminate a service process, killing it if it does not exit within 5 seconds."""
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)
