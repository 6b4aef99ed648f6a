"""`python -m bob` runs the same CLI as main.py."""

from bob.cli import run

run()
