"""Execute analysis/notebooks/chinchilla_replication.ipynb end to end (nbclient, python3)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _ensure_kernel():
    from jupyter_client.kernelspec import KernelSpecManager

    if "python3" not in KernelSpecManager().find_kernel_specs():
        subprocess.run([sys.executable, "-m", "ipykernel", "install", "--user"], check=True)


def test_notebook_runs_end_to_end(monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    _ensure_kernel()
    monkeypatch.setenv("PYTHONPATH", str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    nb = nbformat.read(REPO / "analysis" / "notebooks" / "chinchilla_replication.ipynb", as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(REPO)}}).execute()
    outputs = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                      for o in c.get("outputs", []))
    assert "objective 1.0182" in outputs
    assert "Approach 2: a = " in outputs
    assert "2.22564408899844" in outputs and "(README: 227B tokens" in outputs    # data-constrained law
    assert "(numeric frontier)" in outputs                                       # a user-defined law
    assert "Compute-equivalent gain" in "".join(str(o.get("data", {}).get("text/markdown", ""))
                                                for c in nb.cells if c.cell_type == "code"
                                                for o in c.get("outputs", []))
    images = sum("image/png" in o.get("data", {}) for c in nb.cells if c.cell_type == "code"
                 for o in c.get("outputs", []))
    assert images >= 5
