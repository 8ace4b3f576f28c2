// The lesson's unmodified Node hello app for the #11 benchmarks: http.createServer(...)
// .listen(process.env.PORT) and nothing else (no LISTEN_FDS, no ready message, no signal
// handler). It answers NODE_APP_INSTANCE, which pm2 and this runtime both set, so wrk can
// tally which worker served each request.
'use strict';
const http = require('http');

const body = `${process.env.NODE_APP_INSTANCE ?? '0'}\n`;
const headers = { 'Content-Type': 'text/plain', 'Content-Length': body.length };
http.createServer((req, res) => {
  res.writeHead(200, headers);
  res.end(body);
}).listen(process.env.PORT);
