"""WSGI app for gunicorn: answers `<instance> <pid> <ppid> gunicorn`.

Under the runtime, gunicorn finds the listener by systemd socket activation
(LISTEN_FDS=1, LISTEN_PID = the gunicorn master's pid), so no --bind is needed:

    gunicorn -w 1 wsgi_app:app

The pid is the gunicorn worker's, its ppid the gunicorn master (the runtime's worker).
"""

import os


def app(environ, start_response):
    body = f"{os.environ.get('RUNTIME_INSTANCE')} {os.getpid()} {os.getppid()} gunicorn\n"
    data = body.encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(data)))])
    return [data]
