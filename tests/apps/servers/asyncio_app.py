"""Plain asyncio HTTP server (uvloop when installed) on the inherited listener, fd 3.

Answers every request with `<instance> <pid> <ppid> asyncio` and closes the connection;
sends READY=1 to $NOTIFY_SOCKET once serving; SIGTERM stops accepting, lets the
connections it accepted get their answers, then exits 0.
"""

import asyncio
import os
import signal
import socket

try:
    import uvloop
except ImportError:  # plain asyncio is fine too
    uvloop = None

BODY = f"{os.environ.get('RUNTIME_INSTANCE')} {os.getpid()} {os.getppid()} asyncio\n".encode()
RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\nContent-Length: "
    + str(len(BODY)).encode()
    + b"\r\n\r\n"
    + BODY
)


def sd_notify(message: str) -> None:
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return
    if path.startswith("@"):
        path = "\0" + path[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.sendto(message.encode(), path)


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(RESPONSE)
        await writer.drain()
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        pass
    finally:
        writer.close()


async def main() -> None:
    stopping = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stopping.set)
    server = await asyncio.start_server(handle, sock=socket.socket(fileno=3))
    print(f"serving instance {os.environ.get('RUNTIME_INSTANCE')}", flush=True)
    sd_notify("READY=1")
    await stopping.wait()
    sd_notify("STOPPING=1")
    server.close()  # stop accepting; the master keeps the listener open for the others
    # every connection accepted so far gets its answer, even one whose request is still
    # on its way (bounded: a client that never sends is dropped after 10 s)
    # (a few loop turns first: a connection accepted just now gets its handler task
    # from a callback that may not have run yet)
    await asyncio.sleep(0.1)
    handlers = asyncio.all_tasks() - {asyncio.current_task()}
    if handlers:
        await asyncio.wait(handlers, timeout=10)


if __name__ == "__main__":
    (uvloop.run if uvloop else asyncio.run)(main())
