# linqwatch in a container. Build: docker build -t linqwatch .
# Run it as docs/install.md shows: the config mounted at
# /etc/linqwatch/config.yaml, secrets from --env-file, state in a volume.
# tests/test_packaging.py runs this file's build and install steps without
# Docker, and checks the paths and ports below against the daemon's defaults.

# Builder: the wheel, from the sources only (.dockerignore keeps the rest out).
FROM python:3.11.14-slim-bookworm AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
WORKDIR /src
COPY pyproject.toml README.md ./
COPY daemon/ daemon/
RUN pip wheel --no-deps --no-cache-dir -w /dist .

# Runtime: the wheel and its dependencies in a venv at /opt/linqwatch, the
# same layout as the systemd install.
FROM python:3.11.14-slim-bookworm
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
RUN groupadd --system --gid 10001 linqwatch \
 && useradd --system --uid 10001 --gid linqwatch --no-create-home \
      --home-dir /var/lib/linqwatch --shell /usr/sbin/nologin linqwatch \
 && install -d -o linqwatch -g linqwatch -m 0700 /var/lib/linqwatch \
 && install -d -m 0755 /etc/linqwatch
COPY --from=builder /dist/ /tmp/dist/
RUN python -m venv /opt/linqwatch \
 && /opt/linqwatch/bin/pip install --no-cache-dir /tmp/dist/linqwatch-*.whl \
 && rm -rf /tmp/dist
COPY config.example.yaml /etc/linqwatch/config.example.yaml
ENV PATH=/opt/linqwatch/bin:$PATH

USER 10001:10001
WORKDIR /var/lib/linqwatch
# The SQLite state (storage: /var/lib/linqwatch/state.db): line state, alerts
# and the outbox of undelivered notifications. Keep it across upgrades.
VOLUME /var/lib/linqwatch
# listen: 0.0.0.0:8080 (the default): webhooks, /healthz, /readyz, /metrics.
EXPOSE 8080
# SIGTERM starts a graceful shutdown that takes up to shutdown_grace (10s by
# default): give `docker stop` more than that (--stop-timeout 30).
STOPSIGNAL SIGTERM
# Liveness, with Python's own urllib (slim images have no curl); assumes the
# default port. urlopen raises, and so exits 1, on anything but a 2xx.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4)"]
ENTRYPOINT ["/opt/linqwatch/bin/linqwatch"]
CMD ["run", "-c", "/etc/linqwatch/config.yaml"]
