# syntax=docker/dockerfile:1
# dtp-console, headless, as a container. Two stages: the first builds a virtualenv
# with the package and its dependencies, the second copies only that venv onto a
# fresh slim Python and runs it as an unprivileged user.
#
#   docker build -t dtp-console:0.1.0 .
#   docker run --rm --read-only --tmpfs /tmp \
#     -v "$PWD/console.yaml:/etc/dtp-console/console.yaml:ro" \
#     --env-file dtp-console.env -v dtp-console-state:/var/lib/dtp-console \
#     dtp-console:0.1.0
#
# Config: mounted read-only at /etc/dtp-console/console.yaml (secrets come from the
# environment through its ${VAR} references, never baked into the image).
# State (var/ spools, SQLite stores, blobs): the volume /var/lib/dtp-console.
# Validated structurally by tests/unit/test_deploy.py; never built in CI (no Docker engine).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/dtp-console
# Only what the package needs to build (.dockerignore keeps the rest out of the context).
COPY pyproject.toml README.md ./
COPY dtp_console ./dtp_console
RUN /opt/dtp-console/bin/pip install --no-compile . \
 && /opt/dtp-console/bin/python -m compileall -q /opt/dtp-console/lib

FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="dtp-console" \
      org.opencontainers.image.description="Operations console for the factory digital-twin platform (headless)"
RUN groupadd --system --gid 10001 dtp-console \
 && useradd --system --uid 10001 --gid dtp-console --no-create-home \
      --home-dir /var/lib/dtp-console --shell /usr/sbin/nologin dtp-console \
 && install -d -o dtp-console -g dtp-console -m 0750 /var/lib/dtp-console \
 && install -d -m 0755 /etc/dtp-console
COPY --from=build /opt/dtp-console /opt/dtp-console
ENV PATH=/opt/dtp-console/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
# Relative paths in the config (var/platform.sqlite3, var/spool/...) land in the volume.
WORKDIR /var/lib/dtp-console
VOLUME ["/var/lib/dtp-console"]
USER 10001:10001
# The HTTP API's /healthz on its default loopback listen (127.0.0.1:8470); python's
# urllib, so the image needs no curl. A non-200 answer raises, and the check fails.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8470/healthz', timeout=4).status == 200 else 1)"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["dtp-console"]
CMD ["run", "--no-ui", "--config", "/etc/dtp-console/console.yaml"]
