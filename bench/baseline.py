"""Another revision of tfship's model server, measured side by side with this one (``--baseline-rev``).

Ratios between runs minutes apart on this shared box drift by tens of percent, so "the new server is
1.5x today's" is only meaningful when both run in the same bench run. A ``Baseline`` is a detached git
worktree of the revision in a temp dir plus a venv (``--system-site-packages``: the same TensorFlow,
grpcio and the rest as this checkout; ``pip install --no-deps -e`` of the worktree), whose
``tfship-model-server`` is started with the same flags. ``close()`` removes both.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


class Baseline:
    def __init__(self, rev: str) -> None:
        self.rev = rev
        self.root = Path(tempfile.mkdtemp(prefix="tfship-bench-baseline-"))
        self.src = self.root / "src"
        self.venv = self.root / "venv"
        try:
            subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(self.src), rev],
                           check=True, capture_output=True, text=True)
            self.commit = subprocess.run(["git", "-C", str(self.src), "log", "--oneline", "-1"], check=True,
                                         capture_output=True, text=True).stdout.strip()
            subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(self.venv)], check=True)
            subprocess.run([str(self.python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                            "--no-deps", "-e", str(self.src)], check=True)
            self._check_imports_worktree()
        except BaseException as error:
            self.close()
            if isinstance(error, subprocess.CalledProcessError):
                raise RuntimeError(f"--baseline-rev {rev}: {' '.join(map(str, error.cmd))} failed:\n"
                                   f"{error.stderr or ''}") from error
            raise

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    @property
    def model_server(self) -> list[str]:
        """argv prefix starting the revision's tfship-model-server."""
        exe = self.venv / "bin" / "tfship-model-server"
        return [str(exe)] if exe.exists() else [str(self.python), "-c", "from tfship.serving.main import main; main()"]

    def _check_imports_worktree(self) -> None:
        # the system site-packages has this checkout's tfship too: the editable install must win
        # (run outside any checkout: ``python -c`` puts the working directory first on sys.path)
        out = subprocess.run([str(self.python), "-c", "import tfship; print(tfship.__file__)"], check=True,
                             capture_output=True, text=True, cwd=self.root).stdout.strip()
        if not out.startswith(str(self.src)):
            raise RuntimeError(f"--baseline-rev {self.rev}: its venv imports tfship from {out}, not {self.src}")

    def close(self) -> None:
        if self.src.exists():
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(self.src)],
                           capture_output=True)
        shutil.rmtree(self.root, ignore_errors=True)
        subprocess.run(["git", "-C", str(REPO), "worktree", "prune"], capture_output=True)
