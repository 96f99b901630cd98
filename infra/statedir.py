"""The state folder (``--state-dir``, ``.state``) and what is in it are private to the user
who runs the deployment: the embedded broker's data (every topic, the texts' bodies on
``<app>.bodies`` until their retention ends, sealed numbers on the work topics), its log,
Faust's data and, in development, the generated secret.

``make_private(path)``: a folder 0700 (created as such when missing), which no other user
may then enter; ``tree=True`` also each file and folder below it 0600 / 0700 (for a folder
this program owns whole: the broker's, never a state folder the user named, which may hold
anything). The embedded broker is started with umask 077
(``infra.broker``), so the files it writes later (its snapshot ``kafka.json`` is replaced
about once a second) are created 0600. Before this, ``kafka.json`` was 0644 in a 0755
folder: readable by every user of the machine.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600
PRIVATE_UMASK = 0o077


def make_private(path: str | Path, tree: bool = False) -> Path:
    """``path`` (a folder, created if missing) private to its owner; with ``tree``,
    everything below it too."""
    root = Path(path)
    root.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR)
    _chmod(root, PRIVATE_DIR)
    if not tree:
        return root
    for folder, dirs, files in os.walk(root):
        for name in dirs:
            _chmod(Path(folder, name), PRIVATE_DIR)
        for name in files:
            _chmod(Path(folder, name), PRIVATE_FILE)
    return root


def _chmod(path: Path, mode: int) -> None:
    try:
        st = path.lstat()
        if stat.S_ISLNK(st.st_mode) or stat.S_IMODE(st.st_mode) & ~mode == 0:
            return  # a link is left alone; a mode as tight already too
        path.chmod(stat.S_IMODE(st.st_mode) & mode)
    except FileNotFoundError:  # replaced meanwhile (the broker's atomic snapshot)
        pass
