"""The notebooks: committed with their outputs, re-executed here (with small resample counts), and
figures shown inline from the returned Figure, no file written.

Each notebook's cell tagged ``parameters`` holds its resample counts; the tests run them with
``build_notebook.TEST_PARAMETERS`` instead (the intervals' digits change, the checks do not).
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NB_DIR = REPO / "analysis" / "notebooks"


def _builder():
    spec = importlib.util.spec_from_file_location("build_notebook", NB_DIR / "build_notebook.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _ensure_kernel():
    from jupyter_client.kernelspec import KernelSpecManager

    if "python3" not in KernelSpecManager().find_kernel_specs():
        subprocess.run([sys.executable, "-m", "ipykernel", "install", "--user"], check=True)


def _outputs(nb, key="text"):
    out = []
    for c in nb.cells:
        if c.cell_type == "code":
            for o in c.get("outputs", []):
                out.append(o.get("text", "") if key == "text" else str(o.get("data", {}).get(key, "")))
    return "".join(out)


def _images(nb) -> int:
    return sum("image/png" in o.get("data", {}) for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))


def _run(name: str):
    import nbformat

    _ensure_kernel()
    b = _builder()
    nb = nbformat.read(NB_DIR / name, as_version=4)
    return b.execute(nb, b.TEST_PARAMETERS[name], timeout=600)


@pytest.mark.parametrize("name", ["chinchilla_replication.ipynb", "fit_your_own_sweep.ipynb"])
def test_committed_notebook_carries_its_outputs(name):
    """What people browse: every code cell executed, figures inline, no Image(file) round trip,
    and the source identical to what build_notebook.py generates."""
    import nbformat

    nb = nbformat.read(NB_DIR / name, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.get("execution_count") for c in code)
    assert _images(nb) >= (5 if name.startswith("chinchilla") else 3)
    assert "Image(" not in "".join(c.source for c in code)
    assert not any(o.get("output_type") == "error" for c in code for o in c.outputs)
    built = _builder().build(_builder().NOTEBOOKS[name])
    assert [c.source for c in nb.cells] == [c.source for c in built.cells], "rerun build_notebook.py"


def test_chinchilla_notebook_runs_end_to_end():
    nb = _run("chinchilla_replication.ipynb")
    outputs = _outputs(nb)
    assert "objective 1.0182" in outputs
    assert "Approach 2: a = " in outputs
    assert "2.22564408899844" in outputs and "(README: 227B tokens" in outputs    # data-constrained law
    assert "(numeric frontier)" in outputs                                       # a user-defined law
    assert "Compute-equivalent gain" in _outputs(nb, "text/markdown")
    assert "Approach 3: chinchilla law" in _outputs(nb, "text/html")            # a fit renders as a table
    assert _images(nb) >= 5


def test_fit_your_own_sweep_runs_end_to_end():
    nb = _run("fit_your_own_sweep.ipynb")
    outputs = _outputs(nb)
    # the committed quickstart table: the same exponents its fits.md reports (A2 0.4709, A3 0.4566)
    assert "Approach 2: a = 0.471; Approach 3: a = 0.45" in outputs
    assert "paired: True" in outputs                                            # same (N, D) points
    html = _outputs(nb, "text/html")
    assert "Predictions of the fitted law at new budgets" in html and "2.5e+13" in html
    assert "Compute-equivalent gain of WSD forks over cosine N x D" in html
    assert "bootstrap over runs, K=20" in html                                  # the test's parameters
    assert _images(nb) >= 3


def test_plot_cell_renders_inline_without_writing_a_file(tmp_path):
    """Under the inline backend a plot function's Figure appears as image/png, with no file anywhere."""
    import nbformat
    from nbclient import NotebookClient

    _ensure_kernel()
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(
        "import sys; sys.path.insert(0, %r)\n"
        "import matplotlib\n"
        "backend = matplotlib.get_backend()\n"
        "import analysis\n"
        "from analysis import approaches as ap, plots\n"
        "from analysis.data import prepare\n"
        "df = analysis.load_results(%r)\n"
        "cols = dict(n_col='n_total', d_col='tokens', loss_col='eval_loss', budget_col='budget')\n"
        "fig = plots.isoflop_curves(prepare(df, **cols), ap.fit_approach2(df, **cols))\n"
        "assert matplotlib.get_backend() == backend, (backend, matplotlib.get_backend())\n"
        "print(backend)" % (str(REPO), str(REPO / "experiments" / "results" / "quickstart")))]
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outs = nb.cells[0].outputs
    assert any("image/png" in o.get("data", {}) for o in outs)
    assert "inline" in "".join(o.get("text", "") for o in outs)
    assert list(tmp_path.iterdir()) == []                                       # nothing written
