"""``python -m imagemill``: the same as the ``imagemill`` command."""

from imagemill.cli import main

main()
