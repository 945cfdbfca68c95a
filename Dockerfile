# Multi-stage: build a wheel with its dependencies, then run as a non-root user.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY schemas ./schemas
COPY adapters ./adapters
COPY gateway ./gateway
RUN python -m pip install --no-cache-dir --upgrade pip \
 && python -m pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    EGW_HOST=0.0.0.0 EGW_PORT=8000 EGW_DATABASE_URL=sqlite:////data/emr-gateway.db
RUN useradd --create-home --uid 10001 egw && mkdir /data && chown egw /data
COPY --from=build /wheels /wheels
RUN python -m pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER egw
WORKDIR /data
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s --retries=3 \
  CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2).status == 200 else 1)"
ENTRYPOINT ["emr-gateway"]
CMD ["serve", "--migrate"]
