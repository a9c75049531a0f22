"""The notebooks in notebooks/: committed without outputs, linked from the README, and each
executed top to bottom (nbclient, kernel python3, small settings: TC_NOTEBOOK_QUICK=1) in an
empty temporary directory with this checkout first on PYTHONPATH."""
import json
import os
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
TIMEOUT = 300   # seconds per cell; each notebook runs in well under a minute at QUICK settings


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 3, NOTEBOOKS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_without_outputs(path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert code, f"{path.name} has no code cell"
    for i, cell in enumerate(code):
        assert cell.get("outputs") == [], f"{path.name}: code cell {i} has outputs (strip them)"
        assert cell.get("execution_count") is None, f"{path.name}: code cell {i} has an execution count"
    assert any(c["cell_type"] == "markdown" for c in nb["cells"])


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_linked_from_readme(path):
    assert f"(notebooks/{path.name})" in (REPO / "README.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_executes(path, tmp_path, monkeypatch):
    nbclient = pytest.importorskip("nbclient", reason="nbclient is not installed (pip install -e '.[test]')")
    nbformat = pytest.importorskip("nbformat", reason="nbformat is not installed (pip install -e '.[test]')")
    pytest.importorskip("ipykernel", reason="ipykernel is not installed (pip install -e '.[test]')")
    pytest.importorskip("matplotlib", reason="the notebooks draw with matplotlib (the plot extra)")
    # the kernel inherits this environment: this checkout first, small settings, no display
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("TC_NOTEBOOK_QUICK", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(str(path), as_version=4)
    client = nbclient.NotebookClient(nb, timeout=TIMEOUT, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()   # raises CellExecutionError naming the cell and the exception
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any(o.output_type == "stream" for o in outputs), "the notebook printed nothing"
    if any("viz." in c.source for c in nb.cells if c.cell_type == "code"):
        assert any("image/png" in o.get("data", {}) for o in outputs), "no figure was displayed"
