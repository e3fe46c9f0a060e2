# keywatch: one image for the anomaly worker and the leak scanner.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY worker ./worker
COPY detectors ./detectors
COPY scanners ./scanners
COPY geoip ./geoip
RUN pip install --no-cache-dir --prefix=/install ".[postgres]"

FROM python:3.11-slim
RUN useradd --system --uid 10001 --home-dir /var/lib/keywatch --create-home keywatch
COPY --from=build /install /usr/local
USER keywatch
WORKDIR /var/lib/keywatch
ENV KEYWATCH_DATA_DIR=/var/lib/keywatch/state \
    KEYWATCH_WEB_HOST=0.0.0.0 \
    PYTHONUNBUFFERED=1
EXPOSE 6066 6067
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
  CMD python -c "import os,sys,urllib.request; p=os.environ.get('KEYWATCH_HEALTH_PORT','6066'); sys.exit(0 if urllib.request.urlopen(f'http://127.0.0.1:{p}/health', timeout=2).status == 200 else 1)"
ENTRYPOINT ["keywatch"]
CMD ["worker"]
