// An unmodified Node app: http.createServer(...).listen(process.env.PORT), answers its pid.
'use strict';
const http = require('http');

const server = http.createServer((req, res) => res.end(`${process.pid}\n`));
server.listen(process.env.PORT, () => console.log(`listening on ${JSON.stringify(server.address())}`));
