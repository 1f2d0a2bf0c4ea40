"""``python -m study.cli``: the same commands as the ``study`` script."""

from study.cli import app

app()
