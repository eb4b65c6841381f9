"""`python -m server`: run the gRPC server (the same as `quarry serve`)."""

from server.cli import run_server_command

run_server_command()
