// An unmodified https app on process.env.PORT (key and certificate files named by TLS_KEY, TLS_CERT).
'use strict';
const fs = require('fs');
const https = require('https');

const tls = { key: fs.readFileSync(process.env.TLS_KEY), cert: fs.readFileSync(process.env.TLS_CERT) };
https.createServer(tls, (req, res) => res.end(`${process.pid}\n`)).listen(process.env.PORT, () => console.log('listening'));
