"""``python -m stackcube.cli``: the ``stackcube`` command."""

from stackcube.cli import run

if __name__ == "__main__":
    run()
