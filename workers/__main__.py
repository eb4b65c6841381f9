"""`python -m workers`: run a worker (the same as `quarry worker`)."""

from server.cli import run_worker_command

run_worker_command()
