// One http server listening with the listen() call form named by argv[2] (see FORMS); answers its pid.
'use strict';
const http = require('http');

const port = process.env.PORT;
const host = process.env.HOST || '127.0.0.1';
const ready = () => console.log(`listening on ${JSON.stringify(server.address())}`);
const FORMS = {
  'port': (s) => s.listen(Number(port)).on('listening', ready),
  'string-port': (s) => s.listen(port).on('listening', ready),
  'port-cb': (s) => s.listen(Number(port), ready),
  'port-host': (s) => s.listen(Number(port), host).on('listening', ready),
  'port-host-backlog-cb': (s) => s.listen(Number(port), host, 100, ready),
  'options': (s) => s.listen({ port: Number(port), host }, ready),
  'options-string-port': (s) => s.listen({ port }, ready),
};
const server = http.createServer((req, res) => res.end(`${process.pid}\n`));
server.on('error', (err) => {
  console.error(`listen failed: ${err.code} ${err.message}`);
  process.exit(1);
});
FORMS[process.argv[2]](server);
