# syntax=docker/dockerfile:1
# Multi-stage: build a virtualenv with the project, then copy it into a slim runtime image that
# has Tesseract (with Korean) and runs as an unprivileged user. PostgreSQL and the providers'
# broker (RabbitMQ with its MQTT plugin, docs/scaling.md) run outside the image: give the
# container CARMILEAGE_DATABASE_URL and CARMILEAGE_BROKER_URL (every node, comma-separated).

FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
COPY pyproject.toml README.md ./
COPY ingest ingest
COPY ocr ocr
COPY telematics telematics
COPY prorate prorate
COPY storage storage
RUN pip install --upgrade pip && pip install .

FROM python:3.11-slim-bookworm AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends tesseract-ocr tesseract-ocr-kor libgl1 libglib2.0-0 tzdata ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --home-dir /var/lib/carmileage --create-home carmileage
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    CARMILEAGE_DATA_DIR=/var/lib/carmileage \
    CARMILEAGE_HTTP_HOST=0.0.0.0 \
    CARMILEAGE_HTTP_PORT=8080
USER carmileage
WORKDIR /var/lib/carmileage
VOLUME ["/var/lib/carmileage"]
EXPOSE 8080
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=5s CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=3)"]
ENTRYPOINT ["carmileage"]
CMD ["serve"]
