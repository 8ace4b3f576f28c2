// An unmodified raw net server on process.env.PORT: one HTTP/1.0 answer (its pid) per connection.
'use strict';
const net = require('net');

const body = `${process.pid}\n`;
const server = net.createServer((conn) => {
  conn.once('data', () => conn.end(`HTTP/1.0 200 OK\r\nContent-Length: ${body.length}\r\n\r\n${body}`));
});
server.listen(Number(process.env.PORT), '0.0.0.0', () => console.log('listening'));
