# The image installs the same wheel, built by the same command, that tests/packaging/test_install.py builds and
# installs into a fresh virtualenv without extras; that test also runs this file's CMD and HEALTHCHECK.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY schemas ./schemas
COPY adapters ./adapters
COPY gateway ./gateway
RUN python -m pip wheel --no-cache-dir --no-deps --wheel-dir dist .

FROM python:3.11-slim AS runtime
# No EGW_DATABASE_URL here: the default (sqlite:///./emr-gateway.db) lands in WORKDIR /data, and compose.yaml can
# pass EGW_DATABASE_URL_FILE (a secret) without fighting an image default.
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 EGW_HOST=0.0.0.0 EGW_PORT=8000
RUN useradd --create-home --uid 10001 egw && mkdir /data && chown egw /data
COPY --from=build /src/dist/ /tmp/dist/
RUN python -m pip install --no-cache-dir /tmp/dist/*.whl && rm -rf /tmp/dist
USER egw
WORKDIR /data
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --retries=3 CMD ["emr-gateway", "healthcheck"]
ENTRYPOINT ["emr-gateway"]
CMD ["serve", "--migrate"]
