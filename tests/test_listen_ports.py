"""The port helpers the tests stand on: ports picked together differ, and a refused port stays refused."""

from __future__ import annotations

import socket

import pytest

from server.listen_ports import free_ports, port_is_free
from tests.support import refused_port


def test_ports_picked_together_differ_and_are_free() -> None:
    picked = free_ports(200)
    assert len(set(picked)) == 200
    assert all(port_is_free("127.0.0.1", port) for port in picked)


def test_a_refused_port_refuses_connections_and_cannot_be_taken() -> None:
    port = refused_port()
    assert refused_port() == port  # one for the whole process
    with socket.socket() as client, pytest.raises(ConnectionRefusedError):
        client.connect(("127.0.0.1", port))
    # Not even by a server binding as gRPC's does (address and port reuse): nothing can answer there.
    assert not port_is_free("127.0.0.1", port)
    with socket.socket() as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        with pytest.raises(OSError):
            server.bind(("127.0.0.1", port))
