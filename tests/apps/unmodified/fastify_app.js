// An unmodified Fastify app: fastify.listen({port}) (host 'localhost': 127.0.0.1 and ::1), answers its pid.
'use strict';
const fastify = require('fastify')();

fastify.get('/', async () => `${process.pid}\n`);
fastify.listen({ port: Number(process.env.PORT) }).then(
  (address) => console.log(`listening on ${address}`),
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
