"""The quickstart notebook runs top to bottom (so it cannot rot) and shows what it promises."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "docs" / "notebooks" / "quickstart.ipynb"


def _outputs(cell: Any) -> str:
    texts = []
    for output in cell.get("outputs", []):
        if output["output_type"] == "stream":
            texts.append(output["text"])
        elif output["output_type"] == "execute_result":
            texts.append(output["data"].get("text/plain", ""))
    return "".join(texts)


@pytest.mark.slow
def test_quickstart_notebook_executes(tmp_path: Path) -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("torch")
    pytest.importorskip("matplotlib")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        notebook,
        timeout=120,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()  # raises CellExecutionError naming the failing cell
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    text = [_outputs(cell) for cell in code]
    assert "'frames': 2400" in text[1]
    best, epochs, accuracy = (float(x) for x in text[2].strip("()\n").split(","))
    assert 1 <= best <= epochs and 0.0 < accuracy <= 1.0  # the BC baseline, at its plateau
    assert text[3].startswith(("('PASS'", "('HOLD'", "('FAIL'"))
    assert "(1, 0.1, " in text[3] and "(3, 0.05, " in text[3]
    assert any(
        o["output_type"] == "display_data" and "image/png" in o["data"] for o in code[4].outputs
    )  # the return per cycle, stages marked
    assert text[5].splitlines()[0].split()[:3] == ["anneal_cycle", "critic_warmup", "bc_coef"]
    assert "'mode': 'sampled'" in text[6] and "'lower_bound':" in text[6]
    # The run wrote its files where the notebook ran, not into the repository.
    assert (tmp_path / "runs" / "quickstart" / "telemetry.jsonl").is_file()
    assert (tmp_path / "runs" / "quickstart" / "run_fingerprint.json").is_file()
