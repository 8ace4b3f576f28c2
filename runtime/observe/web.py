"""`--web [HOST:]PORT`: /health, /status, /metrics and a live dashboard, served by the master.

A deliberately small HTTP/1.1 server on asyncio streams (stdlib only, no thread, no
keep-alive): one request per connection, GET or HEAD (POST for `/api`). Every resource
is bounded, so whoever can reach the port cannot deny `/health` (the platform's probe):

- a request (line and headers, at most 16 KiB, and a body of at most 1 KiB:
  `runtime.observe.messages`) must arrive within REQUEST_TIMEOUT_S of the connection;
- at most MAX_PENDING connections may be still sending their request: one more evicts
  the oldest of them instead of being refused, so idle connections and slowloris
  clients make room for a probe rather than keep it out;
- `/health` is answered ahead of every cap (its reply is small and written at once);
- other replies being written (each within WRITE_TIMEOUT_S) are capped at MAX_REPLYING
  and `/events` streams at MAX_STREAMS: past those, 503 `too many connections`.

- `/health` is 200 `{"status": "ok"}` while every slot of every app is online and
  ready; otherwise 503 with the worst reason (`runtime.observe.health`). Never needs
  the token.
- `/status` is JSON: the rows of `list --json`, the apps with their state, the runtime
  and the host (`runtime.observe.host`).
- `/metrics` is the Prometheus text format (`runtime.observe.prom`).
- `/` is the dashboard page; `/events` streams it Server-Sent Events: `history` (the
  last minute of sparkline points, `runtime.observe.history`) and `backlog` (the last
  worker lines and runtime events) on connect, then a `status` snapshot every second
  and `logs` as lines and events come.
- `POST /api/apps/<name>/<verb>` runs a control verb (`runtime.observe.api`).

With a token, everything but `/health` needs `Authorization: Bearer <token>` or
`?token=<token>` (the page passes its own query token on to `/events`); the API takes
the header only.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import os
import socket
from typing import TYPE_CHECKING, Any

from runtime import __version__
from runtime.errors import RuntimeUserError
from runtime.logs import events
from runtime.observe import api
from runtime.observe.dashboard import CSP, PAGE
from runtime.observe.health import app_state, health, runtime_state
from runtime.observe.history import History
from runtime.observe.host import Host
from runtime.observe.messages import (
    BadRequest,
    Request,
    json_body,
    read_request,
    response_head,
    sse,
)
from runtime.observe.status import app_load, autoscale_range, process_rows
from runtime.observe.view import MasterView
from runtime.observe.webspec import parse_web_spec

if TYPE_CHECKING:
    from runtime.observe.prom import Metrics

MAX_LINE_BYTES = 8192
REQUEST_TIMEOUT_S = 3.0  # from accept to the blank line that ends the headers
WRITE_TIMEOUT_S = 10.0  # a client that stops reading is dropped, not buffered for
MAX_PENDING = 128  # connections still sending their request; one more evicts the oldest
MAX_REPLYING = 64  # replies other than /health and /events being written
MAX_STREAMS = 16  # open /events streams (dashboards)
CLOSE_TIMEOUT_S = 2.0
SNAPSHOT_EVERY_S = 1.0
SAMPLE_MAX_AGE_S = 0.5  # every client polling within this window shares one psutil sample
LOG_TAIL_LINES = 200
EVENT_TAIL = 100  # runtime events sent with the backlog on connect
LOG_BATCH_WAIT_S = 0.05  # gather lines this long before sending them as one event
LOG_BATCH_MAX = 500
BACKLOG = 128
ROUTES = ("/", "/status", "/metrics", "/events")
__all__ = ["WebError", "WebServer", "health"]


class WebError(RuntimeUserError):
    """The web server cannot start (address in use, unknown host): one line, exit 1."""


def _create_socket(host: str, port: int) -> socket.socket:
    """Bound and listening, resolved synchronously: asyncio's resolver would start a thread."""
    try:
        family, kind, proto, _, addr = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as exc:
        raise WebError(f"--web {host}:{port}: cannot resolve {host!r}: {exc.strerror}") from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
        sock.listen(BACKLOG)
    except OSError as exc:
        sock.close()
        raise WebError(f"--web {host}:{port}: {exc.strerror or exc}") from None
    sock.setblocking(False)
    return sock


class WebServer:
    """Owns the listening socket and one task per open connection (cancelled on close)."""

    def __init__(
        self, sup: MasterView, spec: str, token: str | None, act: api.Act | None = None
    ) -> None:
        self.sup = sup
        self._act = act  # the control verbs, for POST /api (none: every /api path is 404)
        self.host, self.port = parse_web_spec(spec)
        self._token = token.encode() if token else None
        self._server: asyncio.Server | None = None
        self._clients: set[asyncio.Task[Any]] = set()
        # connections still sending their request, oldest first (dicts keep order)
        self._pending: dict[asyncio.Task[Any], asyncio.StreamWriter] = {}
        self._replying = 0
        self._streams = 0
        self.evicted = 0
        self._metrics: Metrics | None = None
        self.started_at = sup.loop.time()
        self.host_facts = Host(sup.loop)
        self.history = History()
        self._recorder: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    async def start(self) -> None:
        sock = _create_socket(self.host, self.port)
        self.port = sock.getsockname()[1]
        self._server = await asyncio.start_server(self._accept, sock=sock, limit=MAX_LINE_BYTES)
        self._recorder = self.sup.loop.create_task(self._record())
        self._recorder.add_done_callback(self._finished)
        events.logger().info("web_started", url=self.url, auth=self._token is not None)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        if self._recorder is not None:
            self._recorder.cancel()
            await asyncio.wait([self._recorder], timeout=CLOSE_TIMEOUT_S)
            self._recorder = None
        self.host_facts.node.close()
        clients = list(self._clients)
        for task in clients:
            task.cancel()
        if clients:
            await asyncio.wait(clients, timeout=CLOSE_TIMEOUT_S)
        if self._server is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(CLOSE_TIMEOUT_S):
                    await self._server.wait_closed()
            self._server = None

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """A new connection: its task is ours to cancel (on eviction, at close) and await.

        Not a coroutine on purpose: the task `start_server` would wrap one in reports
        its cancellation as an error on Python 3.11.
        """
        while len(self._pending) >= MAX_PENDING:
            oldest = next(iter(self._pending))
            self._pending.pop(oldest).transport.abort()
            oldest.cancel()
            self.evicted += 1
        task = self.sup.loop.create_task(self._serve(reader, writer))
        self._clients.add(task)
        self._pending[task] = writer
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._clients.discard(task)
        self._pending.pop(task, None)
        if not task.cancelled() and (exc := task.exception()) is not None:
            events.logger().error("web_error", error=repr(exc))

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        try:
            try:
                async with asyncio.timeout(REQUEST_TIMEOUT_S):
                    req = await read_request(reader)
            except BadRequest as exc:
                self._reply(writer, exc.code, {"error": exc.message})
                return
            except (ValueError, UnicodeError):
                self._reply(writer, 400, {"error": "bad request"})
                return
            finally:
                self._pending.pop(task, None)
            if req is not None:
                await self._route(req, writer)
        except (TimeoutError, ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def _route(self, req: Request, writer: asyncio.StreamWriter) -> None:
        """/health at once, whatever the load; everything else within its own cap."""
        head_only = req.method == "HEAD"
        if req.path == "/health" and req.method in ("GET", "HEAD"):
            code, body = health(self.sup.apps.values(), self.sup.draining or self.sup.stopping)
            self._reply(writer, code, body, head_only=head_only)
            return
        streaming = req.path == "/events" and req.method == "GET" and self._authorized(req)
        full = self._streams >= MAX_STREAMS if streaming else self._replying >= MAX_REPLYING
        if full:
            self._reply(writer, 503, {"error": "too many connections"}, head_only=head_only)
            await self._drain(writer)
            return
        if streaming:
            self._streams += 1
        else:
            self._replying += 1
        try:
            await self._respond(req, writer)
            await self._drain(writer)
        finally:
            if streaming:
                self._streams -= 1
            else:
                self._replying -= 1

    @staticmethod
    async def _drain(writer: asyncio.StreamWriter) -> None:
        async with asyncio.timeout(WRITE_TIMEOUT_S):
            await writer.drain()

    def _authorized(self, req: Request) -> bool:
        """The token in the Authorization header or the query (no token set: anyone)."""
        return self._bearer_ok(req, query=True)

    def _bearer_ok(self, req: Request, *, query: bool = False) -> bool:
        if self._token is None:
            return True
        scheme, _, credential = req.headers.get("authorization", "").partition(" ")
        offered = [credential.strip()] if scheme.lower() == "bearer" else []
        if query:
            offered += req.query.get("token", [])[:1]
        return any(
            hmac.compare_digest(o.encode("utf-8", "surrogateescape"), self._token) for o in offered
        )

    async def _respond(self, req: Request, writer: asyncio.StreamWriter) -> None:
        head_only = req.method == "HEAD"
        if req.path.startswith(api.PREFIX):
            await self._api(req, writer)
        elif req.method not in ("GET", "HEAD"):
            self._reply(writer, 405, {"error": "method not allowed"}, extra="Allow: GET, HEAD\r\n")
        elif req.path not in ROUTES:
            self._reply(writer, 404, {"error": "not found"}, head_only=head_only)
        elif not self._authorized(req):
            extra = 'WWW-Authenticate: Bearer realm="runtime"\r\n'
            self._reply(writer, 401, {"error": "unauthorized"}, extra=extra, head_only=head_only)
        elif req.path == "/status":
            self._reply(writer, 200, self.status(), head_only=head_only)
        elif req.path == "/metrics":
            from runtime.observe.prom import CONTENT_TYPE

            text = self._render_metrics()
            writer.write(response_head(200, CONTENT_TYPE, len(text)))
            if not head_only:
                writer.write(text)
        elif req.path == "/":
            extra = f"Content-Security-Policy: {CSP}\r\nReferrer-Policy: no-referrer\r\n"
            writer.write(response_head(200, "text/html; charset=utf-8", len(PAGE), extra))
            if not head_only:
                writer.write(PAGE)
        elif head_only:
            writer.write(response_head(200, "text/event-stream", None))
        else:
            await self._events(writer)

    def _reply(
        self,
        writer: asyncio.StreamWriter,
        code: int,
        value: Any,
        *,
        extra: str = "",
        head_only: bool = False,
    ) -> None:
        body = json_body(value)
        writer.write(response_head(code, "application/json", len(body), extra))
        if not head_only:
            writer.write(body)

    async def _api(self, req: Request, writer: asyncio.StreamWriter) -> None:
        """POST /api/apps/<name>/<verb>: checked in the order of runtime.observe.api."""
        if req.method != "POST":
            body = {"ok": False, "error": "method not allowed: the API takes POST"}
            self._reply(writer, 405, body, extra="Allow: POST\r\n", head_only=req.method == "HEAD")
            return
        try:
            api.check_origin(req.headers, token_set=self._token is not None, bound_host=self.host)
            if not self._bearer_ok(req):
                extra = 'WWW-Authenticate: Bearer realm="runtime"\r\n'
                self._reply(writer, 401, {"ok": False, "error": "unauthorized"}, extra=extra)
                return
            if self._act is None:
                raise api.ApiError(404, "not found")
            call = api.parse_call(req.path, req.raw_query, self.sup.apps)
        except api.ApiError as exc:
            self._reply(writer, exc.code, {"ok": False, "error": exc.message})
            return
        code, body = api.reply_body(call, await self._act(call.verb, call.app, call.args))
        self._reply(writer, code, body)

    def _render_metrics(self) -> bytes:
        if self._metrics is None:
            from runtime.observe.prom import (
                Metrics,  # prometheus_client only once /metrics is asked
            )

            self._metrics = Metrics(self.sup)
        return self._metrics.render()

    # ----- /status and /events ------------------------------------------------------

    def _snapshot(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
        """The process rows, the apps and the runtime, as /status and the dashboard get them."""
        sup = self.sup
        now = sup.loop.time()
        load = sup.read_load()
        rows = process_rows(sup.apps.values(), sup.sample(SAMPLE_MAX_AGE_S), now, load)
        stopping = sup.draining or sup.stopping
        code, report = health(sup.apps.values(), stopping)
        problems = report.get("apps", {})
        apps = [
            {
                "name": name,
                "exec_mode": app.spec.exec_mode,
                "instances": len(app.slots),
                "autoscale": autoscale_range(app.spec),
                "reloading": app.reloading,
                "health": problems.get(name, "ok" if code == 200 else report["status"]),
                "state": app_state(app),
                "load": app_load(load, app),
            }
            for name, app in sup.apps.items()
        ]
        states = [a["state"] for a in apps]
        runtime = {
            "version": __version__,
            "pid": os.getpid(),
            "uptime_s": round(now - self.started_at, 3),
            "health": report["status"],
            "state": runtime_state(states, draining=sup.draining, stopping=sup.stopping),
            "draining": sup.draining,
            "stopping": sup.stopping,
        }
        return rows, apps, runtime

    def status(self) -> dict[str, Any]:
        """The /status document (and each dashboard snapshot)."""
        rows, apps, runtime = self._snapshot()
        return {
            "runtime": runtime,
            "host": self.host_facts.facts(),
            "apps": apps,
            "processes": rows,
        }

    async def _record(self) -> None:
        """A point of history every SNAPSHOT_EVERY_S, whether a dashboard is open or not."""
        loop = self.sup.loop
        next_at = loop.time()
        while True:
            rows, apps, _runtime = self._snapshot()
            self.history.record(rows, apps)
            next_at = max(next_at + SNAPSHOT_EVERY_S, loop.time())
            await asyncio.sleep(next_at - loop.time())

    def _backlog(self) -> list[dict[str, Any]]:
        """The last worker lines and runtime events, merged in time order."""
        ring = self.sup.log_ring
        merged = [*ring.tail(LOG_TAIL_LINES), *ring.events(EVENT_TAIL)]
        merged.sort(key=lambda r: str(r.get("timestamp", "")))
        return merged

    async def _events(self, writer: asyncio.StreamWriter) -> None:
        """Status every SNAPSHOT_EVERY_S and log lines as they come, until the client goes."""
        writer.write(response_head(200, "text/event-stream", None, "X-Accel-Buffering: no\r\n"))
        writer.write(b"retry: 1000\n\n")
        ring = self.sup.log_ring
        queue = ring.subscribe(None, events=True)
        try:
            writer.write(sse("history", self.history.as_json()))
            writer.write(sse("backlog", self._backlog()))
            loop = self.sup.loop
            while True:
                writer.write(sse("status", self.status()))
                await self._drain(writer)
                deadline = loop.time() + SNAPSHOT_EVERY_S
                while (left := deadline - loop.time()) > 0:
                    try:
                        async with asyncio.timeout(left):
                            first = await queue.get()
                    except TimeoutError:
                        break
                    await asyncio.sleep(LOG_BATCH_WAIT_S)
                    batch = [first]
                    while len(batch) < LOG_BATCH_MAX and not queue.empty():
                        batch.append(queue.get_nowait())
                    writer.write(sse("logs", batch))
                    await self._drain(writer)
        finally:
            ring.unsubscribe(queue)
