// A pm2 ecosystem file as pm2 users write it: `pm2-runtime start ecosystem.config.js`
// and `python -m runtime start ecosystem.config.js` run it the same way.
module.exports = {
  apps: [
    {
      name: 'hello-node',
      script: 'hello.js',
      instances: 2,            // no exec_mode: cluster, as pm2 infers it
      wait_ready: true,        // process.send('ready')
      listen_timeout: 5000,
      kill_timeout: 5000,      // SIGINT (pm2's stop signal), SIGKILL 5 s later
      env: { PORT: 3001 },
    },
    {
      name: 'hello-python',
      script: 'hello.py',
      instances: 2,            // pm2 would run two copies fighting over the port; here, cluster
      env: { PORT: 3002 },
    },
  ],
};
