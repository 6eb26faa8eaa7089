"""Progress bars: counts in words, and the last count is what stays on the screen."""

from __future__ import annotations

from stackcube._progress import progress_bar
from stackcube.demo import write_demo_catalog
from stackcube.search import search_items


def _last_drawn(err: str) -> str:
    """The last non-blank state of a bar, as a text terminal or a notebook's stream shows it."""
    return [part.strip() for part in err.replace("\n", "\r").split("\r") if part.strip()][-1]


def test_a_search_shows_how_many_items_it_found(tmp_path, capsys) -> None:
    catalog = write_demo_catalog(tmp_path / "demo", dates=3, size=256)
    _, items = search_items(catalog, progress=True)
    assert len(items) == 3
    err = capsys.readouterr().err
    assert _last_drawn(err).startswith(f"searching {catalog}: 3 items [")
    assert "3item" not in err
    assert "0item" not in err


def test_one_is_singular_and_a_known_total_has_a_spaced_unit(capsys) -> None:
    with progress_bar(None, "searching", "item", enabled=True) as advance:
        advance(1)
    assert _last_drawn(capsys.readouterr().err).startswith("searching: 1 item [")
    with progress_bar(4, "reading TIFF headers", "header", enabled=True) as advance:
        advance(4)
    last = _last_drawn(capsys.readouterr().err)
    assert last.startswith("reading TIFF headers: 100%")
    assert "| 4/4 headers [" in last
    with progress_bar(None, "searching", "item", enabled=False) as advance:
        advance(5)
    assert capsys.readouterr().err == ""
