// An unmodified Node app with no signal handlers: listen(process.env.PORT); GET / answers its
// pid, GET /slow answers its pid after SLOW_MS (default 1500) and logs when it starts.
'use strict';
const http = require('http');

const server = http.createServer((req, res) => {
  if (req.url !== '/slow') return res.end(`${process.pid}\n`);
  console.log('slow request started');
  setTimeout(() => res.end(`${process.pid}\n`), Number(process.env.SLOW_MS || 1500));
});
server.listen(process.env.PORT, () => console.log('listening'));
