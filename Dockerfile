# One image for every app process of the Procfile (web, worker, beat, flower, oneroster).
# docker-compose.yml picks the process by running its Procfile line; see docs/runbook.md.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    CB_LOG_FORMAT=json

# The Procfile lines run from the repository root, so the image keeps the same layout.
WORKDIR /app
COPY pyproject.toml README.md Procfile ./
COPY core ./core
COPY tasks ./tasks
COPY worker ./worker
RUN pip install . \
    && useradd --create-home --uid 10001 app

USER app
EXPOSE 8000 5555 8765
# Without a command the image serves the API, as the Procfile's web line does.
CMD ["sh", "-c", "exec python -m worker.serve --host 0.0.0.0 --port ${PORT:-8000}"]
