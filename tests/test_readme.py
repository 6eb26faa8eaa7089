"""The Python examples of the README and of docs/ run as written, twice in one folder, and their claims hold. (Blocks
fenced as ``py`` need the network and real accounts, and are not run: tests/test_credentials.py and
tests/test_hrefs.py run their flows against loopback services.)"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import ROOT, require

DOCUMENTS = ["README.md", *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md"))]
"""The documents whose examples run, in the order a reader meets them: the README, then docs/."""


def python_blocks() -> list[tuple[str, str]]:
    """(where, code) of every ``python`` block of every document, in order."""
    blocks = []
    for document in DOCUMENTS:
        text = (ROOT / document).read_text()
        found = re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)
        blocks += [(f"{document} block {n}", code) for n, code in enumerate(found)]
    return blocks


CHECKED = {"red", "raw", "stacked", "union", "report", "checked", "cube", "data", "clustered", "pooled"}
CHECKED |= {"from_parquet", "plan", "manifest", "vds", "look", "grey", "shared", "published", "tile"}
"""The names :func:`check_example` checks: each must be made by some example, or its check would silently stop."""


def test_the_readme_and_the_guide_have_examples_and_each_check_has_one() -> None:
    where = [w for w, _ in python_blocks()]
    assert any(w.startswith("README.md ") for w in where)
    assert any(w.startswith("docs/guide.md ") for w in where)
    assigned = {
        name
        for _, code in python_blocks()
        for targets in re.findall(r"^\s*([\w, ]+?) =[^=]", code, flags=re.MULTILINE)
        for name in re.split(r",\s*", targets)
    }
    assert assigned >= CHECKED, CHECKED - assigned


TILES_WARNING = "ignore:Use `@` matmul instead of `\\*` mul operator:PendingDeprecationWarning"
"""rioxarray's ``rio.transform()`` multiplies affine transforms with ``*``, which affine deprecates: raised in the tile
server's thread, it would answer the README's tile request with a 500 under ``filterwarnings=error``."""


@pytest.mark.corpus
@pytest.mark.filterwarnings(TILES_WARNING)
@pytest.mark.parametrize(("where", "code"), python_blocks(), ids=[w for w, _ in python_blocks()])
def test_example_runs_twice_in_one_folder(corpus, where, code, monkeypatch, tmp_path) -> None:
    """Readers re-run an example where they ran it before: the second run, among the files and cubes the first one
    wrote, must run and hold as the first did."""
    require(corpus.is_dir(), "corpus missing")
    # a checkout-like layout: examples use paths relative to the project (demo-output/, ../shared/corpus)
    (tmp_path / "main").mkdir()
    (tmp_path / "shared").symlink_to(ROOT.parent / "shared")
    monkeypatch.chdir(tmp_path / "main")
    for run in (1, 2):
        namespace: dict[str, object] = {}
        exec(compile(code, f"{where} (run {run})", "exec"), namespace)
        check_example(namespace, runs=run)


CHECKS = {"red", "stacked", "union", "report", "cube", "clustered", "pooled", "from_parquet", "plan", "manifest"}
CHECKS |= {"vds", "look", "shared", "published", "tile"}
"""The checks of :func:`check_example`, by the name that starts each: every one must run on some example."""


def check_example(namespace: dict[str, object], *, runs: int) -> set[str]:
    """What the documents say of the names an example leaves behind, after it ran ``runs`` times in one folder; the
    checks that ran (:data:`CHECKS`)."""
    ran = {name for name in CHECKS if name in namespace}
    if "manifest" in namespace and "cube" in namespace:
        ran.discard("manifest")
    if "red" in namespace:
        import numpy as np

        red, raw = namespace["red"], namespace["raw"]
        assert red.dtype == np.float32  # type: ignore[attr-defined]
        assert set(red.coords["offset"].values.ravel().tolist()) == {-0.1}  # type: ignore[attr-defined]
        valid = raw.values != 0  # type: ignore[attr-defined]
        expected = (raw.values[valid].astype(np.float64) * 0.0001 - 0.1).astype(np.float32)  # type: ignore[attr-defined]
        np.testing.assert_array_equal(red.values[valid], expected)  # type: ignore[attr-defined]
        assert np.isnan(red.values[~valid]).all()  # type: ignore[attr-defined]
    if "stacked" in namespace:
        names = namespace["stacked"].coords["common_name"].values.tolist()  # type: ignore[attr-defined]
        assert names == ["blue", "green", "red", "nir"]
    if "union" in namespace:
        assert dict(namespace["union"].sizes) == {"time": 5, "band": 1, "y": 407, "x": 380}  # type: ignore[attr-defined]
    if "report" in namespace:
        assert not namespace["report"].committed  # type: ignore[attr-defined]
        assert namespace["checked"].ok  # type: ignore[attr-defined]
        assert namespace["checked"].checked == 24  # type: ignore[attr-defined]
    if "cube" in namespace:
        data = namespace["data"]
        assert data.dims == ("time", "band", "y", "x")  # type: ignore[attr-defined]
        assert data.shape == (4, 4, 512, 512)  # type: ignore[attr-defined]
    if "clustered" in namespace:  # headers read on a LocalCluster: every source of the demo catalog
        assert len(namespace["clustered"].plan.sources) == 24  # type: ignore[attr-defined]
    if "pooled" in namespace:  # the same on a process pool, with one commit per build
        pooled = namespace["pooled"]
        assert len(pooled.plan.sources) == 24  # type: ignore[attr-defined]
        history = list(pooled.repository.ancestry(branch="main"))  # type: ignore[attr-defined]
        assert history[0].id == pooled.snapshot_id  # type: ignore[attr-defined]
        assert len(history) == 1 + runs  # the repository's first snapshot, then one commit per run
    if "from_parquet" in namespace:  # the stac-geoparquet search kept the scenes the filter keeps
        array = namespace["from_parquet"].plan.arrays[0]  # type: ignore[attr-defined]
        assert len(array.items) == 3
    if "plan" in namespace:
        plan = namespace["plan"]
        ten = plan.arrays[0]  # type: ignore[attr-defined]
        assert plan.report().startswith("2 arrays: EPSG:32735 10 m x 4 dates x 3 bands")  # type: ignore[attr-defined]
        assert ten.shape == (4, 3, 512, 512)
        assert ten.chunks == (1, 1, 256, 256)
        assert ten.bands == ("red", "green", "blue")
        assert ten.source_index.shape == (4, 3, 2, 2)
    if "manifest" in namespace and "cube" not in namespace:
        manifest = namespace["manifest"]
        assert manifest.header_requests == 1  # type: ignore[attr-defined]
        ifd = manifest.ifds[0]  # type: ignore[attr-defined]
        assert ifd.offsets.shape == (1, 11, 11)
        assert ifd.recipe.compression == 8
        assert ifd.geo.crs == "EPSG:32621"
    if "vds" in namespace:
        assert namespace["vds"]["data"].shape == (1, 2667, 2658)  # type: ignore[index]
    if "look" in namespace:  # the quicklook: an RGB PNG of the first date, saved where the example says
        look = namespace["look"]
        assert look.png.startswith(b"\x89PNG\r\n\x1a\n")  # type: ignore[attr-defined]
        assert look.bands == ("B04", "B03", "B02")  # type: ignore[attr-defined]
        assert look.shape == (512, 512)  # type: ignore[attr-defined]
        assert Path("demo-output/quicklook.png").read_bytes() == look.png  # type: ignore[attr-defined]
        assert namespace["grey"].bands == ("B08",)  # type: ignore[attr-defined]
        assert str(namespace["grey"].time).startswith("2020-06-16")  # type: ignore[attr-defined]  # time=-1: the last
    if "shared" in namespace:  # the engine opens what open_dataarray opens, in its default dask chunks
        import numpy as np

        import stackcube

        ours = stackcube.open_dataarray("demo-output/cube.icechunk", "EPSG32735_10m")
        shared = namespace["shared"]["data"]  # type: ignore[index]
        assert shared.chunks == ours.chunks
        np.testing.assert_array_equal(shared.values, ours.values)
        paths = [node.path for node in namespace["shared_tree"].subtree]  # type: ignore[attr-defined]
        assert "/EPSG32735_20m/0" in paths
    if "published" in namespace:  # the Collection written, its asset naming the branch's tip, opened by the engine
        import json

        import icechunk
        import numpy as np

        import stackcube

        written = json.loads(Path("demo-output/collection.json").read_text())
        asset = written["assets"]["cube"]
        repository = icechunk.Repository.open(icechunk.local_filesystem_storage(asset["href"]))
        assert asset["version"] == repository.lookup_branch("main") == namespace["asset"].extra_fields["version"]  # type: ignore[attr-defined]
        assert (written["title"], written["license"]) == ("Demo scenes", "CC-BY-4.0")
        ours = stackcube.open_dataarray("demo-output/cube.icechunk", "EPSG32735_20m", chunks=False)
        np.testing.assert_array_equal(namespace["published"]["data"].values, ours.values)  # type: ignore[index]
    if "tile" in namespace:  # a PNG map tile of one band: grey and alpha, saved where the example says
        import imagecodecs
        import numpy as np

        tile = namespace["tile"]
        assert tile.status_code == 200  # type: ignore[attr-defined]
        pixels = imagecodecs.png_decode(tile.content)  # type: ignore[attr-defined]
        assert pixels.shape == (256, 256, 2)
        grey = pixels[..., 0][pixels[..., 1] > 0]  # where the cube has a value
        assert len(np.unique(grey)) > 16  # the red band stretched, not a flat tile (nor an empty one)
        assert Path("demo-output/tile.png").read_bytes() == tile.content  # type: ignore[attr-defined]
    return ran


@pytest.mark.corpus
@pytest.mark.filterwarnings(TILES_WARNING)
def test_the_examples_run_twice_in_order_and_every_cube_they_made_still_reads(corpus, monkeypatch, tmp_path) -> None:
    """A reader follows the README and docs/ top to bottom, then again: nothing an example writes breaks a cube made
    before."""
    import numpy as np

    import stackcube

    require(corpus.is_dir(), "corpus missing")
    (tmp_path / "main").mkdir()
    (tmp_path / "shared").symlink_to(ROOT.parent / "shared")
    monkeypatch.chdir(tmp_path / "main")
    ran: set[str] = set()
    for run in (1, 2):
        for where, code in python_blocks():
            namespace: dict[str, object] = {}
            exec(compile(code, where, "exec"), namespace)
            ran |= check_example(namespace, runs=run)
    assert ran == CHECKS, CHECKS - ran  # an example that stopped making a name would otherwise skip its check
    repos = sorted(p for p in (tmp_path / "main").rglob("*.icechunk") if p.is_dir())
    assert len(repos) >= 2
    for repo in repos:
        repository = stackcube.store.open_repository(repo)
        versions = [{"branch": b} for b in repository.list_branches()] + [{"tag": t} for t in repository.list_tags()]
        for version in versions:
            tree = stackcube.open_cube(repo, **version, chunks=False)
            for name in stackcube.store.CubeMetadata.from_attrs(tree.attrs).array_names:
                values = tree[f"{name}/0"]["data"].isel(time=0).values  # SourceChangedError if a source moved
                assert np.isfinite(values).any(), (repo, version, name)


def test_the_stackstac_table_names_only_what_stack_takes_or_refuses() -> None:
    import inspect

    from stackcube.stack import REFUSED, stack

    text = (ROOT / "README.md").read_text()
    section = text.split("## Coming from stackstac", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ") and "---" not in line][1:]
    named = {name for row in rows for name in re.findall(r"`(\w+)=`", row.split(" | ")[0])}
    taken = set(inspect.signature(stack).parameters)
    assert named, "the table is gone"
    assert named <= taken | set(REFUSED), named - taken - set(REFUSED)
    for stackstac_parameter in ("epsg", "bounds_latlon", "chunksize", "xy_coords", "rescale", "errors_as_nodata"):
        assert stackstac_parameter in named


@pytest.mark.parametrize(("code", "ok"), [(0, True), (3, True), (2, False), (1, False), (137, False)])
def test_the_scheduler_lines_count_only_0_and_3_as_success(code: int, ok: bool, tmp_path) -> None:
    """The README's cron line and GitHub Actions step, with the stackcube command replaced by one that exits with
    ``code``: the line succeeds exactly for 0 (done) and 3 (nothing to do)."""
    import subprocess

    text = (ROOT / "README.md").read_text()
    cron = re.search(r"^15 6 \* \* \* (.*stackcube refresh .*)$", text, flags=re.MULTILINE)
    weekly = re.search(r"^45 6 \* \* 0 (.*stackcube refresh .*--full-search.*)$", text, flags=re.MULTILINE)
    action = re.search(r"- run: (stackcube refresh .*)$", text, flags=re.MULTILINE)
    assert cron is not None
    assert weekly is not None
    assert action is not None
    fake = f"sh -c 'exit {code}'"
    for line in (cron[1], weekly[1], action[1]):
        command = re.sub(r"(?:\.venv/bin/)?stackcube refresh \S+ (?:--full-search )?--quiet", fake, line)
        command = command.replace("cd /srv/cubes && ", "")
        assert fake in command, line
        done = subprocess.run(["sh", "-c", command], cwd=tmp_path, check=False)
        assert (done.returncode == 0) is ok, (line, code, done.returncode)


def test_every_test_the_documents_name_exists() -> None:
    """The promises table (and SECURITY.md) name the tests that show each promise: a test renamed or moved must take
    its name in the documents with it."""
    import ast

    named = set()
    for document in ("README.md", "SECURITY.md"):
        named |= set(re.findall(r"`(tests/[\w/]+\.py)::(\w+)`", (ROOT / document).read_text()))
    assert len(named) >= 15, named  # the table is there
    missing = []
    for path, name in sorted(named):
        module = ROOT / path
        tree = ast.parse(module.read_text()) if module.is_file() else ast.Module(body=[], type_ignores=[])
        if name not in {n.name for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)}:
            missing.append(f"{path}::{name}")
    assert not missing, missing
