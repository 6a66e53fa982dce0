"""The guided tour (docs/tour/): every chapter runs, top to bottom, within its time limit, on the public API.

Each notebook is executed as a reader would run it (a fresh Jupyter kernel, `nbclient`), in a
temporary folder so that nothing it writes lands in the repository. Outputs are never stored
in git: `nbstripout --verify` checks that in `.ci/run`.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

import sokhan

TOUR = Path(__file__).resolve().parent.parent / "docs" / "tour"
CHAPTERS = sorted(TOUR.glob("[0-9][0-9]-*.ipynb"))
TIME_LIMIT = 120.0  # seconds a chapter may take on a 2-core CPU (the budget)


def test_the_tour_has_its_chapters_in_order():
    assert CHAPTERS, f"no chapters in {TOUR}"
    assert [int(c.name[:2]) for c in CHAPTERS] == list(range(1, len(CHAPTERS) + 1))


@pytest.mark.parametrize("chapter", CHAPTERS, ids=[c.stem for c in CHAPTERS])
def test_a_chapter_is_persian_and_stored_clean(chapter):
    nb = nbformat.read(chapter, as_version=4)
    nbformat.validate(nb)
    markdown = [c.source for c in nb.cells if c.cell_type == "markdown"]
    assert markdown and all(m.startswith('<div dir="rtl">') for m in markdown)  # read right to left
    number = str(int(chapter.name[:2])).translate(str.maketrans("0123456789", "۰۱۲۳۴۵۶۷۸۹"))
    assert markdown[0].split("\n")[2].startswith(f"# فصل {number} — ")
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code)
    # the public API only: `import sokhan` and the names it exports, never a module inside it
    source = "\n".join(c.source for c in code)
    assert "from sokhan" not in source and "import sokhan." not in source
    assert set(re.findall(r"\bsokhan\.(\w+)", source)) <= set(sokhan.__all__)


@pytest.mark.parametrize("chapter", CHAPTERS, ids=[c.stem for c in CHAPTERS])
def test_a_chapter_runs_within_its_time_limit(chapter, tmp_path):
    nb = nbformat.read(chapter, as_version=4)
    start = time.perf_counter()
    NotebookClient(nb, timeout=int(TIME_LIMIT), kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    seconds = time.perf_counter() - start
    assert seconds <= TIME_LIMIT, f"{chapter.name} took {seconds:.0f} s"
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    figures = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if "image/png" in o.get("data", {})]
    assert figures, "every chapter draws what it talks about"


def test_every_public_name_resolves_and_import_stays_light():
    import subprocess
    import sys

    probe = "import sys, sokhan; print('torch' in sys.modules); [getattr(sokhan, n) for n in sokhan.__all__]; " \
            "print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "True"]  # torch loads with the API, not with `import sokhan`
    with pytest.raises(AttributeError):
        sokhan.no_such_name  # noqa: B018


def test_prepare_and_pretrain_check_their_options_as_the_command_line_does(tmp_path):
    from sokhan.errors import SokhanError

    with pytest.raises(SokhanError, match=r"^unknown option 'ordr' in sokhan.pretrain"):
        sokhan.pretrain(data=tmp_path, out_dir=tmp_path / "run", model="ngram", ordr=5)
    with pytest.raises(SokhanError, match=r"^unknown option 'vocab' in sokhan.prepare"):
        sokhan.prepare(source="hafez", out_dir=tmp_path / "data", vocab=300)
    with pytest.raises(SokhanError, match="order"):
        sokhan.pretrain(data=tmp_path, out_dir=tmp_path / "run", model="ngram", order=0)
