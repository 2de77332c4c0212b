"""A free localhost TCP port, for test clusters that must not collide with the session's own Ray."""

import socket


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
