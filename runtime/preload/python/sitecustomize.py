"""Preload for Python cluster workers: bind() on a pre-bound port adopts the master's listener.

The master binds each cluster app's TCP listeners before any worker starts and hands them to
every worker at fd 3, 4, ... (systemd LISTEN_FDS). An unmodified server that binds the port
itself (`HTTPServer(("", PORT), ...)`) would get EADDRINUSE; with this module, its bind()
takes the inherited listener instead.

Contract (the master sets it for each worker of a cluster-mode app):
- PYTHONPATH starts with this directory, which holds nothing but this file and
  runtime_metrics.py (the metrics helper apps import): any other module here would shadow
  one of the app's.
- RUNTIME_PORTS=PORT=FD[,PORT=FD...], e.g. `3000=3` or `3000=3,3000=4,8443=5` (two fds on
  one port are an IPv4 and an IPv6 listener; Unix-socket listeners are not listed).
  Unset or empty: nothing is patched and `socket` is not imported.

What bind() does, for an AF_INET/AF_INET6 SOCK_STREAM socket whose port is listed:
- It checks the listed fds (a TCP socket, listening, on that port; getsockname and
  SO_ACCEPTCONN) and dup2()s the one of the socket's family onto the socket's own fd. The
  app's listen() and accept() then use the master's socket; the host it asked for is not
  used, the master chose the address. The socket keeps its blocking mode and
  inheritability, and its listen() is skipped so the master's backlog stays (socketserver
  asks for 5). An unusable fd: one line on stderr, and the bind goes ahead as asked.
- No listener of the socket's family: an IPv6 socket takes the IPv4 listener (an AF_INET6
  socket object reads IPv4 addresses correctly). So a `::` dual-stack server is served,
  and asyncio's `create_server(port=...)` with no host, which binds `0.0.0.0` and `::`,
  ends with both sockets on the master's one listener (asyncio accepts on either). Binding
  `::` for real instead would make the second instance fail with EADDRINUSE. An IPv4
  socket when the master listens on IPv6 only cannot take that listener (an AF_INET socket
  object turns IPv6 addresses into garbage), so it is bound to 127.0.0.1 on an ephemeral
  port, with one line on stderr: it conflicts with no instance and serves nothing.

Stopping: the runtime stops a Python worker with SIGTERM (its kill_signal), whose default
action ends the process at once and resets the connections it accepted and has not
answered yet, so a rolling reload of a server with no handler would fail a few requests.
At its first adoption, from the main thread, a process whose SIGTERM handler is still
SIG_DFL gets one of ours, and so does SIGINT while it is Python's default_int_handler
(`kill_signal: SIGINT`, as pm2 files often say; an app that sets its own, before or
after, keeps its own). On the first of them it stops accepting: each fd of an adopted
listener in this process is dup2()ed over by a placeholder listener on 127.0.0.1 that no
client knows, so the process accepts nothing more and the master's socket, with its
queue, stays with the other workers. Then a thread waits until this process has no
connection left on the adopted ports (/proc/self/fd against /proc/net/tcp{,6}), at most
$RUNTIME_DRAIN_MS (the app's kill_timeout less 500 ms, so the process still dies of
SIGTERM; DRAIN_LIMIT_S without it; an idle keep-alive client looks the same as a request
in flight), and the handler, called again on the main thread, does what Python would have
done at once: for SIGTERM it restores SIG_DFL and raises it again, so the process dies of
it; for SIGINT it restores default_int_handler and raises KeyboardInterrupt in the main
thread (the app's `except KeyboardInterrupt` and `finally` run). A second stop signal
does that at once. An asyncio server on the placeholder may spin (its epoll still holds
the master's socket) until then; asyncio servers with handlers (aiohttp, uvicorn) are not
affected.

Chaining: after the hook is installed, the sitecustomize that this directory shadows (the
next one on sys.path, if any) is imported, once; usercustomize is not affected. Imported
under another name (runtime.preload.python.sitecustomize, by a tool that walks the
package), the module patches and chains nothing.

Cost: without RUNTIME_PORTS, an environment lookup and the search for the shadowed
sitecustomize (importlib.machinery). With it, `import socket` (about 3 ms), which every
server imports anyway.

Covered, in tests/integration/test_preload_python.py: http.server (HTTPServer,
ThreadingHTTPServer), socketserver.TCPServer, asyncio create_server(port=...) and
start_server(host, port), uvloop's create_server (uvloop 0.23 binds through
socket.socket), aiohttp web.run_app(port=...), Flask/werkzeug run() with and without the
reloader, `uvicorn app:app --port N`, Django runserver with and without --noreload. The
werkzeug and Django reloaders re-run the program with close_fds=False, so the child
inherits fds 3.. (not close-on-exec) and RUNTIME_PORTS; werkzeug hands its bound socket
down, Django's child binds and adopts. This module does not add its fds to other
subprocesses: a child started with close_fds=True gets no listener, as intended.

Limits:
- Only binds made through the socket module: a server that calls bind(2) in native code
  is not covered, and neither is a program run with `python -E`/`-I` (PYTHONPATH ignored)
  or from a directory that has its own sitecustomize.py.
- Options the app sets before bind() (SO_REUSEPORT, TCP_DEFER_ACCEPT...) are dropped with
  its own socket; options set after it act on the master's socket, which in `shared` mode
  every worker holds, as it holds the socket's O_NONBLOCK flag.
- uvloop listens through libuv, not socket.listen, so its listen(2) replaces the master's
  backlog with the app's (uvicorn: 2048; create_server's default: 100).

Metrics: with NOTIFY_SOCKET set (every worker of the runtime), a finder sits first on
sys.meta_path until `asyncio` is imported (a string comparison per import until then), and
then wraps asyncio's `_set_running_loop`: asyncio's own loops call it as
`asyncio.events._set_running_loop`, and uvloop calls `asyncio._set_running_loop`, which it
looks up once when uvloop is imported (after asyncio, whose import it triggers). So a loop
of either kind that starts running in the main thread is handed to runtime_metrics, which
measures its delay and reports it on NOTIFY_SOCKET (its docstring says how). A failure
anywhere in this leaves the app as it was: no metrics, no exception.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # not typing's: this runs in the user's worker, whose modules we leave be

if TYPE_CHECKING:
    import asyncio
    import socket
    from types import ModuleType
    from typing import Any

TAG = "runtime preload:"
PARK_ADDRESS_V4 = ("127.0.0.1", 0)  # where an IPv4 socket goes when the port is IPv6-only
PLACEHOLDER_ADDRESS = ("127.0.0.1", 0)  # what a draining process "listens" on instead
TCP_LISTEN_STATE = "0A"  # the `st` column of /proc/net/tcp for a listening socket
DRAIN_POLL_S = 0.02
DRAIN_ENV = "RUNTIME_DRAIN_MS"  # the app's kill_timeout less 500 ms, set by the runtime
DRAIN_LIMIT_S = 3.0  # without it (a worker started by hand): under the default kill_timeout


def _warn(message: str) -> None:
    print(f"{TAG} {message}", file=sys.stderr, flush=True)


def _is_number(text: str) -> bool:
    return text.isascii() and text.isdigit()


def parse_ports(text: str) -> dict[int, list[int]]:
    """`3000=3,3000=4` as {3000: [3, 4]}; a malformed entry is reported and skipped."""
    ports: dict[int, list[int]] = {}
    for entry in text.split(","):
        port, _, fd = entry.strip().partition("=")
        if _is_number(port) and _is_number(fd) and 0 < int(port) < 65536:
            ports.setdefault(int(port), []).append(int(fd))
        elif entry.strip():
            _warn(f"ignoring RUNTIME_PORTS entry {entry!r} (want PORT=FD)")
    return ports


def _probe(fd: int, port: int) -> int | str:
    """The family of `fd` if it is a TCP socket listening on `port`, else why it is not."""
    import socket

    try:
        probe = socket.socket(fileno=fd)  # reads family and type from the fd
    except OSError as exc:
        return f"unusable ({exc.strerror or exc})"
    try:
        if probe.type != socket.SOCK_STREAM or probe.family not in (
            socket.AF_INET,
            socket.AF_INET6,
        ):
            return "not a TCP socket"
        if not probe.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
            return "a TCP socket that is not listening"
        bound = probe.getsockname()[1]
        return int(probe.family) if bound == port else f"listening on port {bound}"
    finally:
        probe.detach()  # the fd stays open: it is the master's


def _listeners(port: int, fds: list[int]) -> dict[int, int]:
    """The usable listed fds of `port` by family (the first of each); reports the others."""
    found: dict[int, int] = {}
    for fd in fds:
        family = _probe(fd, port)
        if isinstance(family, int):
            found.setdefault(family, fd)
        else:
            outcome = "ignored" if len(fds) > 1 else f"binding port {port} normally"
            _warn(f"RUNTIME_PORTS {port}={fd}: fd {fd} is {family}; {outcome}")
    return found


def _listed_port(sock: socket.socket, address: Any, ports: dict[int, list[int]]) -> int | None:
    """The port `sock` is being bound to, if it is a TCP socket and the port is listed."""
    import socket

    if sock.family not in (socket.AF_INET, socket.AF_INET6) or sock.type != socket.SOCK_STREAM:
        return None
    if not isinstance(address, tuple) or len(address) < 2 or type(address[1]) is not int:
        return None
    return address[1] if address[1] in ports else None


def _adopt(sock: socket.socket, fd: int) -> int:
    """Make `sock` the master's listener `fd`; return the listener's inode."""
    inheritable = sock.get_inheritable()
    os.dup2(fd, sock.fileno(), inheritable=inheritable)
    sock.settimeout(sock.gettimeout())  # O_NONBLOCK lives on the listener: set it as sock wants
    return os.fstat(fd).st_ino


def _socket_inodes() -> set[str]:
    """The inodes of this process's sockets, as /proc/net/tcp writes them."""
    inodes = set()
    for name in os.listdir("/proc/self/fd"):
        try:
            link = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            continue  # the listing's own fd, closed by now
        if link.startswith("socket:["):
            inodes.add(link[len("socket:[") : -1])
    return inodes


def serving(ports: set[int]) -> bool:
    """Whether this process still holds a connection (not a listener) on one of `ports`."""
    inodes = _socket_inodes()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table, encoding="latin-1") as f:
                lines = f.read().splitlines()[1:]
        except OSError:
            continue  # no IPv6 in this kernel
        for line in lines:
            cols = line.split()  # sl local remote st queues tr retrnsmt uid timeout inode
            if (
                len(cols) > 9
                and cols[9] in inodes
                and cols[3] != TCP_LISTEN_STATE
                and int(cols[1].rpartition(":")[2], 16) in ports
            ):
                return True
    return False


def stop_accepting(adopted: set[int]) -> None:
    """Put a placeholder listener over every fd of this process that holds an adopted one."""
    import socket
    import stat

    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        try:
            info = os.fstat(fd)
        except OSError:
            continue
        if not stat.S_ISSOCK(info.st_mode) or info.st_ino not in adopted:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as placeholder:
            placeholder.bind(PLACEHOLDER_ADDRESS)
            placeholder.listen(1)
            os.set_blocking(placeholder.fileno(), os.get_blocking(fd))
            os.dup2(placeholder.fileno(), fd, inheritable=os.get_inheritable(fd))


class Drain:
    """The SIGTERM handler of a process that adopted a listener (see "Stopping" above)."""

    def __init__(self, adopted: set[int], ports: set[int]) -> None:
        self.adopted = adopted  # listener inodes, filled in as the process adopts them
        self.ports = ports
        self.draining = False

    def install(self) -> None:
        """Handle SIGTERM and SIGINT, each unless the app already does (its handler is not
        Python's default), and only from the main thread."""
        import signal

        defaults = ((signal.SIGTERM, signal.SIG_DFL), (signal.SIGINT, signal.default_int_handler))
        for signum, default in defaults:
            if signal.getsignal(signum) is not default:
                continue
            try:
                signal.signal(signum, self.handle)
            except ValueError:
                return  # bind() outside the main thread (Django's autoreloader): left as it was

    def handle(self, signum: int, frame: object) -> None:
        """First stop signal: stop accepting and wait for the connections; then: what
        Python does without us (SIGTERM: die of it; SIGINT: KeyboardInterrupt)."""
        import signal

        if self.draining:
            if signum == signal.SIGINT:
                signal.signal(signum, signal.default_int_handler)
                raise KeyboardInterrupt
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        self.draining = True
        stop_accepting(self.adopted)
        import threading

        threading.Thread(target=self._wait, args=(signum,), daemon=True).start()

    def _wait(self, signum: int) -> None:
        import signal
        import threading
        import time

        deadline = time.monotonic() + drain_limit_s()
        while serving(self.ports) and time.monotonic() < deadline:
            time.sleep(DRAIN_POLL_S)
        main = threading.main_thread().ident
        if main is not None:
            signal.pthread_kill(main, signum)  # the main thread: its syscall is interrupted


def drain_limit_s() -> float:
    """How long a drain may take: $RUNTIME_DRAIN_MS, else DRAIN_LIMIT_S."""
    raw = os.environ.get(DRAIN_ENV, "")
    return int(raw) / 1000 if raw.isdigit() else DRAIN_LIMIT_S


def install(ports: dict[int, list[int]]) -> None:
    """Wrap socket.socket.bind and .listen so listed ports use the inherited listeners."""
    import socket

    original_bind = socket.socket.bind
    original_listen = socket.socket.listen
    adopted: set[int] = set()  # inodes of the master's listeners this process adopted
    drain = Drain(adopted, set())

    def bind(self: socket.socket, address: Any) -> None:
        """Adopt the master's listener for a listed port; bind as asked otherwise."""
        port = _listed_port(self, address, ports)
        found = _listeners(port, ports[port]) if port is not None else {}
        fd = found.get(self.family)
        if fd is None and self.family == socket.AF_INET6:
            fd = found.get(socket.AF_INET)
        if fd is not None:
            first = not adopted
            adopted.add(_adopt(self, fd))
            drain.ports.add(address[1])
            if first:
                drain.install()
        elif found:
            _warn(
                f"port {port} is pre-bound for IPv6 only; this IPv4 socket binds "
                f"127.0.0.1:0 instead and serves nothing (list an IPv4 address for port {port})"
            )
            original_bind(self, PARK_ADDRESS_V4)
        else:
            original_bind(self, address)

    def listen(self: socket.socket, *backlog: int) -> None:
        """Keep the master's backlog on an adopted listener; listen as asked otherwise."""
        if adopted and self.fileno() >= 0 and os.fstat(self.fileno()).st_ino in adopted:
            return
        original_listen(self, *backlog)

    # Class attributes, so every socket.socket (asyncio's, uvloop's, ssl's) binds this way;
    # typeshed types these methods on the C base class, hence the ignores.
    socket.socket.bind = bind  # type: ignore[method-assign, assignment]
    socket.socket.listen = listen  # type: ignore[method-assign, assignment]


def chain() -> ModuleType | None:
    """Run the sitecustomize that this directory shadows, if there is one, exactly once."""
    import importlib.machinery

    here = os.path.realpath(os.path.dirname(__file__))
    rest = [p for p in sys.path if not isinstance(p, str) or os.path.realpath(p or ".") != here]
    spec = importlib.machinery.PathFinder.find_spec(__name__, rest)
    if spec is None or spec.loader is None:
        return None
    import importlib.util

    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_asyncio_hooked = False


def _loop_started(loop: asyncio.AbstractEventLoop) -> None:
    """Hand a loop that starts running in the main thread to runtime_metrics; never raises."""
    try:
        import threading

        if threading.current_thread() is threading.main_thread():
            import runtime_metrics  # type: ignore[import-not-found]  # next to this file

            runtime_metrics.watch_loop(loop)
    except Exception:  # metrics are never worth breaking the app for
        pass


def hook_asyncio(module: Any) -> None:
    """Wrap `module` (asyncio)'s _set_running_loop so each loop that starts is seen."""
    global _asyncio_hooked
    if _asyncio_hooked:
        return
    events = module.events
    original = events._set_running_loop

    def _set_running_loop(loop: asyncio.AbstractEventLoop | None) -> None:
        original(loop)
        if loop is not None:
            _loop_started(loop)

    events._set_running_loop = module._set_running_loop = _set_running_loop
    _asyncio_hooked = True


class AsyncioFinder:
    """First on sys.meta_path until asyncio is imported; hooks it once it has run."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name != "asyncio":
            return None
        if self in sys.meta_path:
            sys.meta_path.remove(self)
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None)
            spec = find(name, path, target) if find is not None else None
            if spec is not None:
                break
        else:
            return None
        loader = spec.loader
        run = getattr(loader, "exec_module", None)
        if run is None:
            return spec

        def exec_module(module: ModuleType) -> None:
            if "exec_module" in vars(loader):
                del loader.exec_module  # the loader's own method again
            run(module)
            try:  # noqa: SIM105 - contextlib stays unimported in the user's worker
                hook_asyncio(module)
            except Exception:  # an asyncio of another shape: no loop metrics
                pass

        try:  # noqa: SIM105 - contextlib stays unimported in the user's worker
            loader.exec_module = exec_module
        except (AttributeError, TypeError):
            pass  # a loader that takes no attributes: no loop metrics
        return spec


def install_metrics() -> None:
    """Hook asyncio now if it is loaded, else when it is imported (see "Metrics" above)."""
    loaded = sys.modules.get("asyncio")
    try:
        if loaded is not None:
            hook_asyncio(loaded)
        else:
            sys.meta_path.insert(0, AsyncioFinder())
    except Exception:
        pass


# Only as site's `sitecustomize`: imported as runtime.preload.python.sitecustomize (a tool
# walking the package, say) it patches and chains nothing.
chained: ModuleType | None = None  # the sitecustomize this one shadows, once it has run
if __name__ == "sitecustomize":
    PORTS = parse_ports(os.environ.get("RUNTIME_PORTS", ""))
    if PORTS:
        install(PORTS)
    if os.environ.get("NOTIFY_SOCKET"):
        install_metrics()
    chained = chain()  # sys.modules["sitecustomize"] stays this module
