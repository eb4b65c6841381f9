# The Quarry server and worker image: `quarry serve` by default, `quarry worker` for workers.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app

COPY clients/python /app/clients/python
RUN pip install /app/clients/python

COPY pyproject.toml /app/
COPY server /app/server
COPY workers /app/workers
COPY migrations /app/migrations
RUN pip install /app

RUN useradd --system --uid 10001 quarry
USER quarry

EXPOSE 50051 9464 9465
CMD ["quarry", "serve"]
