// A Node app that already speaks LISTEN_FDS: server.listen({fd: 3}), answers its pid.
'use strict';
const http = require('http');

http.createServer((req, res) => res.end(`${process.pid}\n`)).listen({ fd: 3 }, () => console.log('listening'));
