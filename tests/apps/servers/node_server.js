// Node http server on the inherited listener: server.listen({fd: 3}).
// Answers `<instance> <pid> <ppid> node`. On SIGINT (the runtime's stop signal for node
// apps, as pm2's) or SIGTERM it stops accepting, finishes the requests in flight and exits 0
// (the master keeps the listener open for the others).
'use strict';
const http = require('http');

const body = `${process.env.RUNTIME_INSTANCE} ${process.pid} ${process.ppid} node\n`;

const server = http.createServer((req, res) => {
  res.writeHead(200, {
    'Content-Type': 'text/plain',
    'Content-Length': Buffer.byteLength(body),
  });
  res.end(body);
});

server.listen({ fd: 3 }, () => {
  console.log(`serving instance ${process.env.RUNTIME_INSTANCE}`);
});

function stop() {
  server.close(() => process.exit(0));
  // keep-alive clients must not hold the exit (Node >= 18.2; Node 19+ does it in close())
  if (server.closeIdleConnections) server.closeIdleConnections();
}
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
