"""Dropping a slow consumer's TCP connection, at once and for good.

A stalled client's connection holds buffers (uvicorn's, and the kernel's) full of data it does not
read. Closing it the polite way (FIN) waits behind that data: uvicorn's transport keeps it until
the client reads, and the kernel would go on retrying for minutes after that. A reset (RST, by
``SO_LINGER`` 0) frees both at once; the client sees its connection reset.
"""

from __future__ import annotations

import socket
import struct
from typing import Any

#: ``struct linger`` with ``l_onoff`` 1 and ``l_linger`` 0: close() resets the connection.
_RESET = struct.pack("ii", 1, 0)


def drop(transport: Any) -> None:
    """Reset ``transport``'s connection (an asyncio transport) and close it now."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET)
        except OSError:  # already closed, or not a TCP socket: abort alone will do
            pass
    transport.abort()
