"""The error tree: messages say what to do, naming the Python call or, on the command line, the command."""

from __future__ import annotations

import pickle

from stackcube import _remedies
from stackcube.errors import Remedy, RepositoryError, SourceChangedError, StackcubeError


def test_a_remedy_is_said_for_python_and_for_the_command_line() -> None:
    error = SourceChangedError("s3://b/k.tif changed", remedy=_remedies.reindex("s3://b/cube"))
    assert str(error) == (
        "s3://b/k.tif changed; re-index it with stackcube.refresh_cube('s3://b/cube', check_etags=True) "
        "(or stackcube.verify_cube('s3://b/cube', fix=True))"
    )
    assert error.for_cli() == (
        "s3://b/k.tif changed; re-index it with: stackcube refresh --check-etags s3://b/cube "
        "(or stackcube verify --fix s3://b/cube)"
    )
    copied = pickle.loads(pickle.dumps(error))  # as a dask worker's error reaches the client
    assert (str(copied), copied.for_cli(), type(copied)) == (str(error), error.for_cli(), SourceChangedError)


def test_a_path_with_spaces_is_quoted_for_the_shell() -> None:
    error = RepositoryError("there is no Icechunk repository at my cubes/a", remedy=_remedies.build("my cubes/a"))
    assert error.for_cli().endswith("; build one with: stackcube build CATALOG --repo 'my cubes/a'")
    assert str(error).endswith("; build one with stackcube.build_cube(catalog, repo='my cubes/a')")


def test_credentials_are_redacted_in_both_forms() -> None:
    href = "https://h/a.tif?sig=SECRET&se=2030"
    error = StackcubeError(f"{href} changed", remedy=Remedy(python=f"see {href}", cli=f"run {href}"))
    assert "SECRET" not in str(error)
    assert "SECRET" not in error.for_cli()
    assert error.for_cli().startswith("https://h/a.tif?sig=REDACTED")


def test_an_error_without_a_remedy_says_the_same_everywhere() -> None:
    error = StackcubeError("plain")
    assert error.for_cli() == str(error) == "plain"
