// Two http servers on the same process.env.PORT: the first serves, the second reports its listen error.
'use strict';
const http = require('http');

const handler = (req, res) => res.end(`${process.pid}\n`);
const first = http.createServer(handler);
first.listen(Number(process.env.PORT), '127.0.0.1', () => {
  const second = http.createServer(handler);
  second.on('error', (err) => console.log(`second server: ${err.code}`));
  second.listen(Number(process.env.PORT), '::1', () => console.log('second server: listening'));
});
