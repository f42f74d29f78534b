"""Install Engine: a private Python environment with the engine in it, for animators who are not Python people.

No bpy here (the preferences' button drives it; tests drive it with plain pytest). The environment goes where the
caller says (the add-on passes a folder in Blender's user data, outside the extension, so updating or removing the
extension keeps it). Steps run one after another on a thread, each a subprocess whose output goes to the log;
`cancel` stops the one running and removes an environment this install created, so nothing is left half-made.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

TORCH = "torch==2.13.0"          # the version the engine is tested with
CPU_TORCH_INDEX = "https://download.pytorch.org/whl/cpu"
PACKAGE = "gfpose-core"
_NO_NETWORK = ("Failed to establish a new connection", "Temporary failure in name resolution",
               "Network is unreachable", "No matching distribution found", "Could not find a version",
               "connection refused", "Connection refused")


class InstallError(RuntimeError):
    """Why the install cannot go on, in words for the preferences' status line."""


def python_version(python: str) -> tuple[int, int] | None:
    try:
        out = subprocess.run([python, "-c", "import sys; print(*sys.version_info[:2])"], capture_output=True,
                             text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    try:
        major, minor = map(int, out.stdout.split())
    except ValueError:
        return None
    return major, minor


def find_python(preferred: str = "") -> str:
    """A Python 3.11+ with venv to build the environment from: the one the user picked, else the newest found on
    PATH. An InstallError says what was wrong."""
    if preferred:
        v = python_version(preferred)
        if v is None:
            raise InstallError(f"'{preferred}' is not a Python that runs")
        if v < (3, 11):
            raise InstallError(f"'{preferred}' is Python {v[0]}.{v[1]}; the engine needs Python 3.11 or newer")
        return preferred
    for name in ("python3.13", "python3.12", "python3.11", "python3", "python", "py"):
        path = shutil.which(name)
        if path and (v := python_version(path)) is not None and v >= (3, 11):
            return path
    raise InstallError("no Python 3.11 or newer found on this computer: install one (python.org) and pick it "
                       "under Base Python")


def has_nvidia_gpu() -> bool:
    smi = shutil.which("nvidia-smi")
    if not smi:
        return False
    try:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and "GPU" in out.stdout


def env_python(env: Path) -> Path:
    return env / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _kill(proc: subprocess.Popen | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    if os.name != "nt":
        try:
            os.killpg(proc.pid, signal.SIGKILL)
            return
        except OSError:
            pass
    proc.kill()


@dataclass
class Plan:
    """What to install: the environment's folder, the Python to make it with, where the engine comes from (""
    for the package index, or a wheel file or a folder of wheels, used without any network), and whether to take
    torch's CUDA build."""
    env: Path
    base_python: str
    source: str = ""
    cuda: bool = False

    def steps(self) -> list[tuple[str, list[str]]]:
        py = str(env_python(self.env))
        pip = [py, "-m", "pip", "install", "--disable-pip-version-check"]
        out = []
        if not env_python(self.env).exists():
            out.append(("Making the environment", [self.base_python, "-m", "venv", str(self.env)]))
        if self.source:
            src = Path(self.source)
            if not src.exists():
                raise InstallError(f"'{self.source}' does not exist: pick the engine's wheel or a folder of wheels")
            folder = src if src.is_dir() else src.parent
            target = PACKAGE if src.is_dir() else str(src)
            out.append(("Installing the engine from " + src.name, pip + ["--no-index", "--find-links", str(folder),
                                                                         target]))
        else:
            torch = pip + [TORCH] if self.cuda or sys.platform == "darwin" else \
                pip + [TORCH, "--index-url", CPU_TORCH_INDEX]
            out.append(("Installing torch (" + ("CUDA" if self.cuda else "CPU") + ")", torch))
            out.append(("Installing the engine", pip + [PACKAGE]))
        out.append(("Checking the engine", [py, "-m", "gfpose_core", "--help"]))
        return out


@dataclass
class Installer:
    """Runs a Plan on a thread: `start()`, then poll `done`, `progress`, `label`, `log`; `cancel()` at any time.
    On success `python` is the environment's Python (what Engine Python is set to); on failure `error` says why."""
    plan: Plan
    log: list[str] = field(default_factory=list)
    progress: float = 0.0
    label: str = ""
    done: bool = False
    error: str | None = None
    python: str | None = None

    def __post_init__(self):
        self._cancelled = threading.Event()
        self._proc: subprocess.Popen | None = None
        self._made_env = not env_python(self.plan.env).exists()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> "Installer":
        self._steps = self.plan.steps()      # a bad source is refused here, before anything is made
        self._thread.start()
        return self

    def wait(self, timeout: float | None = None) -> bool:
        self._thread.join(timeout)
        return self.done

    def cancel(self) -> None:
        self._cancelled.set()
        _kill(self._proc)

    def _run(self) -> None:
        try:
            for i, (label, cmd) in enumerate(self._steps):
                if self._cancelled.is_set():
                    raise InstallError("cancelled")
                self.label, self.progress = label, i / len(self._steps)
                self.log.append(f"$ {' '.join(cmd)}")
                self._step(cmd)
            self.python, self.progress, self.label = str(env_python(self.plan.env)), 1.0, "Installed"
        except InstallError as e:
            self.error = str(e)
            if self._made_env:              # nothing half-made stays behind
                shutil.rmtree(self.plan.env, ignore_errors=True)
        finally:
            self._proc = None
            self.done = True

    def _step(self, cmd: list[str]) -> None:
        try:
            # its own process group, so that cancelling stops pip's (or a wrapper's) children too
            self._proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                          errors="replace", start_new_session=os.name != "nt")
        except OSError as e:
            raise InstallError(f"cannot run {cmd[0]}: {e}") from None
        if self._cancelled.is_set():        # cancelled while it was starting
            _kill(self._proc)
        tail: list[str] = []
        for line in self._proc.stdout:
            line = line.rstrip()
            if line:
                self.log.append(line)
                tail = (tail + [line])[-40:]
        code = self._proc.wait()
        if self._cancelled.is_set():
            raise InstallError("cancelled")
        if code != 0:
            text = "\n".join(tail)
            lacking = re.search(r"No matching distribution found for (\S+)", text)
            if lacking and "--no-index" in cmd:
                raise InstallError(f"the chosen wheel or folder lacks {lacking.group(1)}, which the engine needs: "
                                   "add its wheel to the folder, or leave Source empty to use the package index")
            if any(s in text for s in _NO_NETWORK):
                raise InstallError("the package index cannot be reached (no network?): download the engine's wheel "
                                   "on a connected machine and pick it, or a folder of wheels, as Source")
            raise InstallError(f"'{' '.join(cmd[:4])} ...' failed: {tail[-1] if tail else 'no output'}")
