# keywatch: one image for the anomaly worker and the leak scanner.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md constraints.txt ./
COPY worker ./worker
COPY detectors ./detectors
COPY scanners ./scanners
COPY geoip ./geoip
# constraints.txt: the exact versions CI tested (bash .ci/lock regenerates it)
RUN pip install --no-cache-dir --prefix=/install -c constraints.txt ".[postgres]"

FROM python:3.11-slim
RUN useradd --system --uid 10001 --home-dir /var/lib/keywatch --create-home keywatch
COPY --from=build /install /usr/local
USER keywatch
WORKDIR /var/lib/keywatch
ENV KEYWATCH_DATA_DIR=/var/lib/keywatch/state \
    KEYWATCH_WEB_HOST=0.0.0.0 \
    KEYWATCH_BROKER_WAIT_S=0 \
    PYTHONUNBUFFERED=1
EXPOSE 6066 6067
# `keywatch health` reads KEYWATCH_WEB_PORT / KEYWATCH_SCANNER_WEB_PORT like the processes do, so
# the check cannot look at another port than the server listens on (compose narrows it per role).
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 CMD ["keywatch", "health"]
ENTRYPOINT ["keywatch"]
CMD ["worker"]
