"""`python -m quarry.cli`: the same as the `quarry` command."""

from quarry.cli import main

main()
