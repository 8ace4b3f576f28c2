// Node's own cluster module as the bare supervisor for the chaos benchmark: WORKERS (2)
// workers of hello.js on PORT, each forked again the moment it dies, with nothing else
// in between (no restart delay, no readiness wait, no logs). This is the floor a
// supervisor of node workers can reach on a machine: what is left is node's own start.
//
//   NODE_CLUSTER_SCHED_POLICY=none  the workers accept from one shared listener
//   NODE_CLUSTER_SCHED_POLICY=rr    the primary accepts and hands connections round-robin
//                                   (node's default, and pm2's cluster mode)
//
// The workers run hello.js's bare branch (listen($PORT) through the cluster module).
// SIGTERM or SIGINT stops the workers and exits.
'use strict';
const cluster = require('cluster');
const path = require('path');

const workers = Number(process.env.WORKERS || 2);
let stopping = false;

cluster.setupPrimary({ exec: path.join(__dirname, 'hello.js') });

function start(instance) {
  const worker = cluster.fork({ INSTANCE: String(instance) });
  worker.on('exit', () => {
    if (!stopping) start(instance);
  });
}

for (let i = 0; i < workers; i++) start(i);

function stop() {
  stopping = true;
  for (const worker of Object.values(cluster.workers)) worker.process.kill('SIGTERM');
  setTimeout(() => process.exit(0), 2000).unref();
  cluster.on('exit', () => {
    if (Object.keys(cluster.workers).length === 0) process.exit(0);
  });
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
