# The framestream workers (ingest, detect, alert, persist) for the production stack.
FROM python:3.11-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY framestream ./framestream
COPY streams ./streams
COPY processors ./processors
COPY schemas ./schemas
COPY infra/clickhouse ./infra/clickhouse
COPY samples ./samples
RUN pip install --no-cache-dir .
USER nobody
ENTRYPOINT ["framestream"]
