/**
 * Preload for node cluster workers: `server.listen(PORT)` on a port the master pre-bound
 * serves on the inherited listener instead of binding (which would fail with EADDRINUSE).
 *
 * Contract. The master binds each cluster app's TCP listeners before any worker starts,
 * hands them to every worker at fd 3, 4, ... (systemd LISTEN_FDS) and sets:
 *   NODE_OPTIONS="... --require /abs/path/runtime/preload/node.cjs"  (appended to the user's)
 *   RUNTIME_PORTS="3000=3" or "3000=3,3000=4,8443=5"  (PORT=FD; two fds on one port are an
 *                 IPv4 and an IPv6 listener; Unix-socket listeners are not listed)
 * RUNTIME_PORTS unset or empty: nothing is patched.
 *
 * What changes. net.Server.prototype.listen (so http, https, net, Express, Koa, Fastify,
 * Nest...) is wrapped: listen(port), listen(port, host), listen(port, host, backlog, cb),
 * listen(port, cb), listen({port, host}) and listen("3000") on a listed port become the
 * original listen({fd: FD}, cb). The host is not used: the master chose the address. With
 * two fds on the port, an IPv6 host literal takes the IPv6 one, anything else the first.
 * Untouched: a port that is not listed (binds as usual), port 0, listen({fd}), listen(path),
 * listen(handle); a listen({fd}) on a listed fd is only noted, for "Covering" below and the
 * 'listening' announcement.
 *
 * Children (npm start, yarn start...). Node marks the fds it inherits close-on-exec at start
 * (uv_disable_stdio_inheritance), so npm would not pass fd 3 on. Until a process serves on
 * one of them, child_process.spawn (exec, execFile, fork...) therefore hands the fds of
 * LISTEN_FDS and RUNTIME_PORTS to the child at the same numbers, where stdio leaves them
 * free; the app node under npm gets fd 3 and this preload (NODE_OPTIONS) again. LISTEN_PID is
 * not checked: under npm it is npm's pid.
 *
 * Stopping. The runtime stops a worker with its app's kill_signal (SIGINT for node, as pm2).
 * Node's default action for SIGINT and SIGTERM ends the process at once, resetting the
 * connections it has accepted and not answered yet, so a rolling reload would fail a few
 * requests of an app that sets no handler. Once a process serves on an inherited fd, a
 * SIGINT or SIGTERM that the app has no listener of its own for therefore drains first:
 * every server on an inherited fd stops accepting (net.Server's close(); the connections
 * still queued on the listener are served by the other workers, which share it), responses
 * say `Connection: close` (a busy keep-alive client reconnects, to another worker, after its
 * next answer), keep-alive connections still idle after IDLE_GRACE_MS are closed, and once
 * the last connection has ended the listener is removed and the same signal is raised
 * again, so the process dies of it as it would have. A second signal raises it at once;
 * the runtime's kill_timeout bounds the drain. An app with its own listener for that
 * signal is left to it.
 *
 * Covering (reuseport mode). When a sibling worker dies, the connections the kernel queued
 * on its slot's socket before the master saw the exit would wait there for the slot's next
 * worker (node takes 50-150 ms to be ready). Instead, while a slot has no ready worker,
 * the master passes its socket to the ready workers over the IPC channel, as node passes a
 * server (a NODE_HANDLE message with {cmd: 'NODE_RUNTIME_COVER', slot, port} inside, which
 * node delivers to process.on('internalMessage'), never to the app's 'message' listeners).
 * Each accepts on it and emits every connection it takes as 'connection' on the app's
 * server for that port, the documented way to inject a connection into an http, https or
 * net server. New connections are steered away from that slot, so only what was queued
 * arrives. When the slot's own worker is ready, {cmd: 'NODE_RUNTIME_UNCOVER', slot} closes
 * the covering server here (the socket stays open in the master); so does the master
 * before it closes the socket (a reload, a scale-down): node's loop would otherwise spin
 * on the shut-down listener, whose failing accept libuv does not report. A process that
 * serves no server on that port, or is draining, closes what it is given at once. A
 * covering server is unref'd, so it never keeps a stopping process alive; it is drained
 * with the app's servers on a stop signal, and closed once the app's own server stops
 * listening. An injected connection is counted as the app server's own (its close(cb) and
 * getConnections() wait for it); its maxConnections is not applied to it.
 *
 * Checks. Before use, /proc/self/fd and /proc/net/tcp{,6} must show the fd as a TCP socket
 * listening on that port; otherwise one line on stderr and the normal bind.
 *
 * Limits.
 * - Each inherited fd serves one server per process: libuv closes the fd with the server, so
 *   a second server on the same listed port, or a listen() after close(), gets EADDRINUSE
 *   (Fastify's extra `::1` server for host 'localhost' does, and Fastify ignores it).
 * - Node calls listen(2) again on the fd with the app's backlog or 511, which replaces the
 *   master's backlog on that socket.
 * - spawnSync/execSync children, and a fork() whose 'ipc' channel takes fd 3, get no fds.
 * - Linux only (/proc); a port given as a service name is not recognised.
 *
 * Metrics (any exec_mode: the runtime requires this file for every node worker that has its
 * IPC channel, RUNTIME_PORTS or not). With RUNTIME_IPC=1 (the channel leads to the runtime),
 * every REPORT_MS an unref'd timer sends
 *   {type: 'runtime:loop', data: {loop_delay_p50_ms, loop_delay_p99_ms, active_handles,
 *                                 active_requests}}
 * with process.send: the event-loop delay over the last interval (perf_hooks'
 * monitorEventLoopDelay at DELAY_RESOLUTION_MS, minus that resolution, reset each time),
 * process.getActiveResourcesInfo() less the requests (ref'd handles and timers; else
 * _getActiveHandles()) and _getActiveRequests(). RUNTIME_IPC is deleted from process.env at
 * once, so a child the app forks (whose channel leads to the app) never reports to it. Under
 * a package manager (npm, npx, yarn, pnpm, corepack) nothing is sent: the app is its child
 * and has no channel to the runtime. At most one report is in flight; a closed channel, a
 * send error or a missing API skips the report, never throws into the app. The app's own
 * metrics go straight from the app (docs/metrics.md).
 */
'use strict';

const childProcess = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');

const TAG = 'runtime preload:';
const TCP_LISTEN_STATE = '0A'; // the `st` column of /proc/net/tcp for a listening socket
const EADDRINUSE_UV = -98; // the errno libuv reports for EADDRINUSE on Linux
const FIRST_FD = 3; // LISTEN_FDS start here
const STOP_SIGNALS = ['SIGINT', 'SIGTERM']; // the kill_signal values whose default is to die
const IDLE_GRACE_MS = 500; // draining: a keep-alive connection idle this long is a quiet client
const IDLE_CLOSE_MS = 50; // then: how often idle keep-alive connections are closed
const COVER_CMD = 'NODE_RUNTIME_COVER'; // runtime/proc/ipc.py
const UNCOVER_CMD = 'NODE_RUNTIME_UNCOVER';

/** `3000=3,3000=4` as Map {3000 => [3, 4]}; a malformed entry is reported and skipped. */
function parsePorts(text) {
  const ports = new Map();
  for (const entry of text.split(',')) {
    const match = /^\s*(\d{1,5})=(\d{1,9})\s*$/.exec(entry);
    const port = match ? Number(match[1]) : 0;
    if (port >= 1 && port <= 65535) {
      if (!ports.has(port)) ports.set(port, []);
      ports.get(port).push(Number(match[2]));
    } else if (entry.trim()) {
      console.error(`${TAG} ignoring RUNTIME_PORTS entry ${JSON.stringify(entry)} (want PORT=FD)`);
    }
  }
  return ports;
}

/** What listen() was asked for, as {port, host, backlog, signal}; null for fd, path, handle. */
function requested(args) {
  const first = args[0];
  let options;
  if (first !== null && typeof first === 'object') {
    if (first._handle || first.handle || typeof first.fd === 'number') return null;
    options = first;
  } else if (typeof first === 'number' || typeof first === 'string') {
    const host = typeof args[1] === 'string' ? args[1] : undefined;
    const backlog = [args[1], args[2]].find((a) => typeof a === 'number');
    options = { port: first, host, backlog };
  } else {
    return null;
  }
  const raw = options.port;
  if (typeof raw !== 'number' && (typeof raw !== 'string' || raw.trim() === '')) return null;
  const port = Number(raw);
  if (!Number.isInteger(port)) return null;
  return { port, host: options.host, backlog: options.backlog, signal: options.signal };
}

/** The TCP listener behind `fd` as {port, v6}, or a string saying why it is not one. */
function describeFd(fd) {
  let link;
  try {
    link = fs.readlinkSync(`/proc/self/fd/${fd}`);
  } catch (err) {
    return err.code === 'ENOENT' ? 'not open (EBADF)' : err.message;
  }
  const inode = /^socket:\[(\d+)\]$/.exec(link);
  if (!inode) return `not a socket (${link})`;
  for (const [file, v6] of [['/proc/net/tcp', false], ['/proc/net/tcp6', true]]) {
    let table = '';
    try {
      table = fs.readFileSync(file, 'latin1');
    } catch {
      continue; // no IPv6 in this kernel, say
    }
    for (const line of table.split('\n')) {
      const cols = line.trim().split(/\s+/); // sl local rem st queues tr retr uid timeout inode
      if (cols[9] !== inode[1]) continue;
      if (cols[3] !== TCP_LISTEN_STATE) return 'a TCP socket that is not listening';
      return { port: parseInt(cols[1].split(':')[1], 16), v6 };
    }
  }
  return 'not a TCP socket';
}

/** The fd to serve `want` on, 'in-use' when this process already holds them all, or null. */
function pickFd(want, fds, held) {
  const usable = [];
  let inUse = false;
  for (const fd of fds) {
    if (held.has(fd)) {
      inUse = true;
      continue;
    }
    const found = describeFd(fd);
    const why = typeof found === 'string' ? found : `listening on port ${found.port}`;
    if (typeof found === 'object' && found.port === want.port) {
      usable.push({ fd, v6: found.v6 });
    } else {
      const outcome = fds.length > 1 ? 'ignored' : `binding port ${want.port} normally`;
      console.error(`${TAG} RUNTIME_PORTS ${want.port}=${fd}: fd ${fd} is ${why}; ${outcome}`);
    }
  }
  if (usable.length === 0) return inUse ? 'in-use' : null;
  const wantV6 = typeof want.host === 'string' && net.isIPv6(want.host);
  return ((wantV6 && usable.find((u) => u.v6)) || usable[0]).fd;
}

/** An EADDRINUSE error shaped like the one Node itself emits from listen(). */
function inUseError(want) {
  const err = new Error(
    `listen EADDRINUSE: address already in use ${want.host || ''}:${want.port} ` +
      `(${TAG} the inherited listeners for this port serve another server in this process)`,
  );
  return Object.assign(err, {
    code: 'EADDRINUSE',
    errno: EADDRINUSE_UV,
    syscall: 'listen',
    address: want.host,
    port: want.port,
  });
}

/** The fds to hand on to children: LISTEN_FDS's 3.. and the listed ones, if still open. */
function inheritedFds(ports) {
  const count = Number(process.env.LISTEN_FDS) || 0;
  const fds = new Set(Array.from({ length: count }, (_, i) => FIRST_FD + i));
  for (const listed of ports.values()) listed.forEach((fd) => fds.add(fd));
  return [...fds].sort((a, b) => a - b).filter((fd) => {
    try {
      return fs.fstatSync(fd).isSocket();
    } catch {
      return false;
    }
  });
}

/** `options` with `fds` added to its stdio at their own numbers, where those are free. */
function withFds(options, fds) {
  const stdio = options.stdio === undefined ? 'pipe' : options.stdio;
  if (typeof stdio !== 'string' && !Array.isArray(stdio)) return options;
  const slots = typeof stdio === 'string' ? [stdio, stdio, stdio] : stdio.slice();
  for (const fd of fds) {
    if (slots[fd] !== undefined && slots[fd] !== null) continue; // the caller's ('ipc', say)
    for (let i = Math.max(slots.length, FIRST_FD); i < fd; i++) slots[i] = 'ignore';
    slots[fd] = fd;
  }
  return { ...options, stdio: slots };
}

/**
 * Drain `servers` (the ones on inherited fds, and covering ones) on a stop signal the app
 * does not handle, then die of that signal (see "Stopping" above); installed once, at the
 * first adoption. Returns {serve(server), cover(server), draining()}.
 */
function drainOnStop(servers) {
  let draining = false;
  const handlers = new Map();
  const timers = [];
  const closeIdle = () => {
    for (const server of servers) server.closeIdleConnections?.();
  };
  const die = (sig) => {
    timers.forEach(clearTimeout);
    for (const [name, handler] of handlers) process.removeListener(name, handler);
    process.kill(process.pid, sig); // no listener left: the default action, as without us
  };
  const drain = (sig) => {
    if (process.listenerCount(sig) > 1) return; // the app's own listener decides
    if (draining) return die(sig);
    draining = true;
    let open = servers.size;
    const closed = () => {
      open -= 1;
      if (open <= 0) die(sig);
    };
    if (open === 0) return die(sig);
    // net's close, not http's: it stops accepting without closing idle keep-alive
    // connections at once, whose client may be sending its next request right now
    for (const server of [...servers]) net.Server.prototype.close.call(server, closed);
    timers.push(setTimeout(() => timers.push(setInterval(closeIdle, IDLE_CLOSE_MS)), IDLE_GRACE_MS));
  };
  for (const name of STOP_SIGNALS) {
    handlers.set(name, () => drain(name));
    process.on(name, handlers.get(name));
  }
  const track = (server) => {
    servers.add(server);
    server.once('close', () => servers.delete(server));
  };
  return {
    serve(server) {
      track(server);
      server.prependListener('request', (req, res) => {
        if (draining) res.setHeader('Connection', 'close'); // no new request on it after this one
      });
    },
    cover: track,
    draining: () => draining,
  };
}

/**
 * Hand a connection the covering server accepted to the app's server, counted as its own
 * (what net's accept does: `_connections`, `socket._server`), so that the app's
 * server.close(cb) and getConnections() wait for it as for any other, then 'connection'.
 */
function adoptConnection(cover, target, socket) {
  if (typeof target._connections === 'number' && socket._server === cover) {
    cover._connections -= 1;
    target._connections += 1;
    socket._server = target;
    socket.server = target;
  }
  target.emit('connection', socket);
}

/** Serve dead siblings' sockets on the master's word (see "Covering" above). */
function coverSlots(served, stops) {
  const covers = new Map(); // slot -> Set of the covering servers for it
  const uncover = (slot) => {
    for (const server of covers.get(slot) || []) server.close();
    covers.delete(slot);
  };
  process.on('internalMessage', (message, server) => {
    if (message === null || typeof message !== 'object') return;
    if (message.cmd === UNCOVER_CMD) return uncover(message.slot);
    if (message.cmd !== COVER_CMD || !(server instanceof net.Server)) return; // node's own
    const target = served.get(message.port);
    const drain = stops();
    if (target === undefined || !target.listening || drain?.draining()) return server.close();
    server.unref(); // never what keeps the process alive (its connections are, while open)
    server.on('error', () => server.close()); // an accept error libuv reports: let it go
    server.on('connection', (socket) => {
      adoptConnection(server, target, socket);
      if (!target.listening) server.close(); // the app closed its server: take no more
    });
    if (!covers.has(message.slot)) covers.set(message.slot, new Set());
    covers.get(message.slot).add(server);
    server.once('close', () => covers.get(message.slot)?.delete(server));
    drain?.cover(server);
  });
}

/**
 * Tell the master a server serves on its socket, as pm2's cluster mode takes a worker's
 * 'listening' as its cue: without `wait_ready`, that is when the worker counts as up.
 * Only over the runtime's IPC channel; never throws into the app.
 */
function announceListening() {
  if (!TO_RUNTIME || typeof process.send !== 'function' || !process.connected) return;
  try {
    process.send({ type: 'runtime:listening' });
  } catch (_) {
    // the channel closed meanwhile: the master's min_uptime applies instead
  }
}

function install(ports) {
  const originalListen = net.Server.prototype.listen;
  const originalSpawn = childProcess.ChildProcess.prototype.spawn;
  const held = new Set(); // fds handed to a server of this process (libuv owns them now)
  const served = new Map(); // port -> the server on an inherited fd for it (covers go there)
  const portOfFd = new Map([...ports].flatMap(([port, fds]) => fds.map((fd) => [fd, port])));
  let drained = null; // the servers drained on a stop signal, once installed
  const note = (server, port) => {
    if (!served.has(port)) {
      served.set(port, server);
      server.once('close', () => served.get(port) === server && served.delete(port));
    }
    server.once('listening', announceListening);
  };

  childProcess.ChildProcess.prototype.spawn = function spawn(options) {
    const fds = held.size === 0 && options ? inheritedFds(ports) : [];
    return originalSpawn.call(this, fds.length ? withFds(options, fds) : options);
  };

  net.Server.prototype.listen = function listen(...args) {
    const cb = typeof args[args.length - 1] === 'function' ? args[args.length - 1] : undefined;
    const want = requested(cb ? args.slice(0, -1) : args);
    const fds = want && ports.get(want.port);
    const fd = fds ? pickFd(want, fds, held) : null;
    if (fd === null) {
      const result = originalListen.apply(this, args);
      const first = args[0];
      const ownFd = first !== null && typeof first === 'object' ? first.fd : undefined;
      if (portOfFd.has(ownFd)) note(this, portOfFd.get(ownFd)); // its own listen({fd: 3})
      return result;
    }
    if (fd === 'in-use') {
      if (cb) this.once('listening', cb); // as Node does: cb waits for a 'listening' that never comes
      process.nextTick(() => this.emit('error', inUseError(want)));
      return this;
    }
    const handle = want.signal ? { fd, signal: want.signal } : { fd };
    const rest = want.backlog !== undefined ? [want.backlog] : [];
    const result = originalListen.call(this, handle, ...rest, ...(cb ? [cb] : []));
    held.add(fd);
    drained = drained || drainOnStop(new Set());
    drained.serve(this);
    note(this, want.port);
    return result;
  };
  if (TO_RUNTIME) coverSlots(served, () => drained);
}

const REPORT_MS = 1000;
const DELAY_RESOLUTION_MS = 50; // its timer costs ~1 ms of CPU a second here (10 ms, the default: 6)
const IPC_ENV = 'RUNTIME_IPC';
const LAUNCHER = /^(npm|npx|yarn|yarnpkg|pnpm|pnpx|corepack)(-cli)?(\.c?js)?$/;

/** The loop's figures since the last call (see "Metrics" above); resets the histogram. */
function loopFigures(delay) {
  const data = {};
  if (delay !== null && delay.count > 0) {
    const ms = (q) => {
      const late = Math.max(0, delay.percentile(q) / 1e6 - DELAY_RESOLUTION_MS);
      return Math.round(late * 1000) / 1000;
    };
    data.loop_delay_p50_ms = ms(50);
    data.loop_delay_p99_ms = ms(99);
  }
  if (delay !== null) delay.reset();
  const requests =
    typeof process._getActiveRequests === 'function'
      ? process._getActiveRequests().length
      : undefined;
  if (typeof process.getActiveResourcesInfo === 'function') {
    data.active_handles = Math.max(0, process.getActiveResourcesInfo().length - (requests || 0));
  } else if (typeof process._getActiveHandles === 'function') {
    data.active_handles = process._getActiveHandles().length;
  }
  if (requests !== undefined) data.active_requests = requests;
  return data;
}

/** Report the loop's figures to the runtime every REPORT_MS, if this process is its worker. */
function reportMetrics() {
  const flag = process.env[IPC_ENV];
  delete process.env[IPC_ENV];
  const main = (process.argv[1] || '').split('/').pop();
  if (flag !== '1' || typeof process.send !== 'function' || LAUNCHER.test(main)) return;
  let delay = null;
  try {
    delay = require('node:perf_hooks').monitorEventLoopDelay({ resolution: DELAY_RESOLUTION_MS });
    delay.enable();
  } catch {
    delay = null; // an older node: handles only
  }
  let sending = false;
  const done = () => {
    sending = false;
  };
  const timer = setInterval(() => {
    if (sending || !process.connected) return;
    try {
      const data = loopFigures(delay);
      sending = true;
      process.send({ type: 'runtime:loop', data }, done); // an error goes to done, not to the app
    } catch {
      sending = false;
    }
  }, REPORT_MS);
  timer.unref();
}

// read before reportMetrics deletes it: whether process.send reaches the runtime
const TO_RUNTIME = process.env[IPC_ENV] === '1';
const ports = parsePorts(process.env.RUNTIME_PORTS || '');
if (ports.size > 0) install(ports);
try {
  reportMetrics();
} catch {
  // metrics are never worth breaking the app for
}
