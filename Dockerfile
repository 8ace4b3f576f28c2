# The example app (examples/heroku-app) under the runtime, the runtime as PID 1.
#
#   docker build -t runtime-example .
#   docker run --rm -p 127.0.0.1:3000:3000 runtime-example
#
# BASE: any Debian-like image with Python >= 3.11 and the venv module. Where no
# registry is reachable, ../shared/docker/make-base-image.sh builds local/python-base
# (Debian bookworm, Python 3.11): docker build --build-arg BASE=local/python-base .
ARG BASE=python:3.12-slim
FROM ${BASE}

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

# The user the apps run as: numeric in USER, so Kubernetes runAsNonRoot can check it.
RUN groupadd --gid 10001 app \
 && useradd --uid 10001 --gid app --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin app \
 && python -m venv "$VIRTUAL_ENV"

# Dependencies in their own layer: rebuilt only when pyproject.toml or the app's
# requirements change, not when the code does.
WORKDIR /srv/runtime
COPY pyproject.toml ./
COPY examples/heroku-app/requirements.txt examples/heroku-app/requirements.txt
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt \
 && pip install -r /tmp/requirements.txt -r examples/heroku-app/requirements.txt "setuptools>=68" \
 && rm /tmp/requirements.txt

# The code (root-owned, read-only to the app user), installed without touching the network.
COPY README.md ./
COPY runtime ./runtime
RUN pip install --no-deps --no-build-isolation . \
 && rm -rf build ./*.egg-info
COPY examples/heroku-app ./examples/heroku-app

USER 10001:10001
WORKDIR /srv/runtime/examples/heroku-app
# The app's port (Heroku-style $PORT), on every interface of the container.
ENV PORT=3000 \
    HOST=0.0.0.0
EXPOSE 3000
# docker stop sends this to PID 1 (the runtime), which stops every worker gracefully
# within kill_timeout (5 s), inside docker stop's 10 s.
STOPSIGNAL SIGTERM
# --web below serves /health on loopback inside the container: 200 when every app is
# online, 503 while starting, draining or errored. Slim images have no curl.
HEALTHCHECK --interval=10s --timeout=3s --start-period=15s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request as u\ntry:\n    sys.exit(u.urlopen('http://127.0.0.1:9615/health', timeout=2).status != 200)\nexcept Exception as e:\n    sys.exit(f'unhealthy: {e}')"]
CMD ["python", "-m", "runtime", "ecosystem.config.yml", "--web", "127.0.0.1:9615"]
