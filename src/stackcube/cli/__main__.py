"""``python -m stackcube.cli``: the ``stackcube`` command."""

from stackcube.cli import run

run()
