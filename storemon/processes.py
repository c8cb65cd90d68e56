"""Processes on this host: is one alive (report jobs and upload files are owned by a pid)."""

from __future__ import annotations

import os


def process_alive(pid: int) -> bool:
    """Is a process with this pid running on this host?"""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
