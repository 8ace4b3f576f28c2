// An unmodified Koa app: app.listen(process.env.PORT), answers its pid.
'use strict';
const Koa = require('koa');

const app = new Koa();
app.use((ctx) => {
  ctx.body = `${process.pid}\n`;
});
app.listen(process.env.PORT, () => console.log('listening'));
