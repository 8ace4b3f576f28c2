// A Node app written for pm2: listen(process.env.PORT), process.send('ready') once listening
// (after READY_DELAY_MS, default 0), drains on SIGINT (pm2's stop signal) and on the IPC
// message 'shutdown', and has NO SIGTERM handler (SIGTERM's default action kills it).
// GET / answers its pid; GET /slow answers its pid after SLOW_MS (default 2000).
'use strict';
const http = require('http');

const slowMs = Number(process.env.SLOW_MS || 2000);
let inFlight = 0;

const server = http.createServer((req, res) => {
  inFlight++;
  res.on('close', () => inFlight--);
  if (req.url === '/slow') {
    console.log(`slow request started (pid ${process.pid})`);
    setTimeout(() => res.end(`${process.pid}\n`), slowMs);
  } else {
    res.end(`${process.pid}\n`);
  }
});

function drain(why) {
  console.log(`got ${why}, draining ${inFlight} in-flight request(s)`);
  server.close(() => {
    console.log('drained, exiting 0');
    process.exit(0);
  });
}

process.on('SIGINT', () => drain('SIGINT'));
process.on('message', (message) => {
  if (message === 'shutdown') drain('shutdown message');
});

server.listen(process.env.PORT, () => {
  console.log(`listening on ${JSON.stringify(server.address())}`);
  setTimeout(() => process.send && process.send('ready'), Number(process.env.READY_DELAY_MS || 0));
});
