"""`make lab`: JupyterLab on notebooks/, its kernels on the project's Python (the venv, where
fitbit_lakehouse is installed), whatever other `python3` kernel a user has registered."""
from __future__ import annotations

import os
import sys

from .config import Settings


def lab_command(settings: Settings, port: int | None = None, token: str | None = None,
                open_browser: bool = True, extra: list[str] | None = None) -> tuple[list[str], dict]:
    """The command and environment of `jupyter lab` for this project."""
    command = [sys.executable, "-m", "jupyterlab", f"--ServerApp.root_dir={settings.project_root / 'notebooks'}"]
    if port:
        command.append(f"--ServerApp.port={port}")
    if token is not None:
        command.append(f"--IdentityProvider.token={token}")
    if not open_browser:
        command.append("--ServerApp.open_browser=False")
    if hasattr(os, "geteuid") and os.geteuid() == 0:   # a container or CI runner: Jupyter refuses root otherwise
        command.append("--ServerApp.allow_root=True")
    # the kernel spec `python3` of this environment first (its argv `python` is the server's own
    # interpreter, sys.executable), not one from ~/.local/share/jupyter
    env = {**os.environ, "JUPYTER_PREFER_ENV_PATH": "1"}
    return command + list(extra or []), env


def lab(settings: Settings, port: int | None = None, token: str | None = None, open_browser: bool = True,
        extra: list[str] | None = None) -> None:
    command, env = lab_command(settings, port, token, open_browser, extra)
    os.chdir(settings.project_root / "notebooks")   # the notebooks find conf/ above their folder
    os.execve(command[0], command, env)
