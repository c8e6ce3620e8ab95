# One image for every Whistle service; the command picks the service:
#   docker run whistle                              -> whistle serve intake
#   docker run whistle whistle serve ledger
#   docker run whistle whistle migrate
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Install from a throw-away copy of the source so that only the installed package is imported.
COPY pyproject.toml README.md /tmp/src/
COPY services /tmp/src/services
COPY contracts /tmp/src/contracts
COPY reference /tmp/src/reference
RUN pip install /tmp/src && rm -rf /tmp/src

# County reference data (deploy/config); Kubernetes mounts its own copy over WHISTLE_CONFIG_DIR.
COPY deploy/config /app/deploy/config

# WHISTLE_HOME holds development keys; owned by the service user so that a named volume
# mounted there starts out writable by it.
RUN groupadd --system --gid 10001 whistle \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/whistle --no-create-home \
       --shell /usr/sbin/nologin whistle \
    && mkdir -p /var/lib/whistle \
    && chown 10001:10001 /var/lib/whistle

ENV WHISTLE_HOME=/var/lib/whistle \
    WHISTLE_CONFIG_DIR=/app/deploy/config \
    WHISTLE_HOST=0.0.0.0

WORKDIR /app
USER 10001:10001
EXPOSE 8001 8002 8003 8004

CMD ["whistle", "serve", "intake"]
