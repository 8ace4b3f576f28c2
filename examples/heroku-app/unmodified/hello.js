// The pm2 lesson's app, unmodified: a plain Node server on $PORT, a graceful stop on
// SIGINT (pm2's stop signal), and process.send('ready') for wait_ready. Nothing in it
// knows about the runtime: under pm2-runtime or `python -m runtime` it runs the same.
'use strict';
const http = require('http');

const server = http.createServer((req, res) => {
  res.writeHead(200, { 'Content-Type': 'application/json' });
  res.end(JSON.stringify({ app: 'hello-node', instance: process.env.NODE_APP_INSTANCE, pid: process.pid }) + '\n');
});

server.listen(process.env.PORT || 3000, () => {
  console.log(`listening on ${process.env.PORT || 3000}`);
  if (process.send) process.send('ready');
});

process.on('SIGINT', () => {
  console.log('SIGINT: finishing in-flight requests');
  server.close(() => process.exit(0));
});
