// Node hello-world for the cluster benchmarks. One file, three ways to run:
//
// - under this runtime: LISTEN_FDS is set and LISTEN_PID is our pid -> server.listen({fd: 3}),
//   then process.send('ready') on the IPC channel the runtime gives every node worker
//   (pm2's wait_ready message);
// - under pm2 / pm2-runtime cluster mode (pm_id in env): listen($PORT) through the cluster
//   module, then process.send('ready') for pm2's wait_ready;
// - bare: listen($HOST:$PORT) with reusePort when this Node has it (>= 22.12 / 23.1).
//
// Answers `<instance>\n` so a client can tally which worker served it; keep-alive unless
// the request says `Connection: close`. Prints `served <instance> <n>` on SIGTERM.
'use strict';
const http = require('http');

const instance = process.env.RUNTIME_INSTANCE ?? process.env.NODE_APP_INSTANCE ?? process.env.INSTANCE ?? '0';
const body = `${instance}\n`;
let served = 0;
let stopping = false;

const server = http.createServer((req, res) => {
  served++;
  const headers = { 'Content-Type': 'text/plain', 'Content-Length': body.length };
  if (stopping) headers.Connection = 'close';
  res.writeHead(200, headers);
  res.end(body);
});
server.keepAliveTimeout = 65000;

function notifyReady() {
  // pm2's readiness message, read by pm2 and by this runtime alike; bare, there is no channel
  if (process.send) process.send('ready');
}

if (process.env.LISTEN_FDS && process.env.LISTEN_PID === String(process.pid)) {
  server.listen({ fd: 3 }, notifyReady);
} else if (process.env.pm_id !== undefined) {
  server.listen(Number(process.env.PORT), process.env.HOST || '127.0.0.1', notifyReady);
} else {
  server.listen({ port: Number(process.env.PORT), host: process.env.HOST || '127.0.0.1', reusePort: true }, notifyReady);
}

function stop() {
  // Graceful: keep answering for a moment, each answer with `Connection: close`, so a
  // keep-alive client never sends into a socket we are closing. Node >= 19's
  // server.close() also closes idle keep-alive connections at once, which races with a
  // client's next request: switched off here.
  if (stopping) return;
  stopping = true;
  const exit = () => { console.log(`served ${instance} ${served}`); process.exit(0); };
  server.closeIdleConnections = () => {};
  setTimeout(() => server.close(exit), 200);
  setTimeout(exit, 1500).unref();
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop); // pm2 stops with SIGINT
