// An unmodified Express app: app.listen(process.env.PORT), answers its pid.
'use strict';
const express = require('express');

const app = express();
app.get('/', (req, res) => res.send(`${process.pid}\n`));
app.listen(process.env.PORT, () => console.log('listening'));
