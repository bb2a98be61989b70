# Berth: the registry server (and the berth client) on a slim Python base, as a non-root user.
#   docker build -t berth .
#   docker run -p 127.0.0.1:5000:5000 -v berth-data:/var/lib/berth berth
# The image serves examples/filesystem.yml (mounted over /etc/berth/config.yml to change it);
# every key can also be set with REGISTRY_<SECTION>_<KEY> variables. See docs/operations.md.

FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY registry ./registry
COPY storage_backends ./storage_backends
COPY auth ./auth
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    BERTH_HEALTHCHECK_URL=http://127.0.0.1:5000/healthz
COPY --from=build /wheels /tmp/wheels
RUN pip install --no-cache-dir /tmp/wheels/*.whl \
 && rm -rf /tmp/wheels \
 && groupadd --system --gid 10001 berth \
 && useradd --system --uid 10001 --gid berth --home-dir /var/lib/berth --shell /usr/sbin/nologin berth \
 && mkdir -p /var/lib/berth /etc/berth \
 && chown berth:berth /var/lib/berth
COPY examples/filesystem.yml /etc/berth/config.yml
USER 10001:10001
WORKDIR /var/lib/berth
VOLUME ["/var/lib/berth"]
EXPOSE 5000
# Liveness on /healthz. With TLS on the main listener, point BERTH_HEALTHCHECK_URL at
# http.debug.addr (plain HTTP) instead.
HEALTHCHECK --interval=30s --timeout=5s --start-period=15s --retries=3 \
  CMD ["python", "-c", "import os, sys, urllib.request; sys.exit(0 if urllib.request.urlopen(os.environ['BERTH_HEALTHCHECK_URL'], timeout=4).status == 200 else 1)"]
# SIGTERM drains: requests in flight get http.draintimeout (30s) to finish. Give `docker stop`
# more than that: docker stop -t 60 (compose: stop_grace_period).
STOPSIGNAL SIGTERM
ENTRYPOINT ["berth"]
CMD ["serve", "--config", "/etc/berth/config.yml"]
