# memaudit: one image for the API, the worker and the scheduler.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 HF_HUB_OFFLINE=1
WORKDIR /app

# The default PyPI torch wheel on Linux carries CUDA: what a GPU worker needs in production.
ARG TORCH_SPEC="torch==2.13.0"
RUN pip install "${TORCH_SPEC}"

COPY pyproject.toml README.md alembic.ini ./
COPY app ./app
COPY core ./core
COPY worker ./worker
COPY frontend ./frontend
COPY migrations ./migrations
RUN pip install -e ".[gguf,mlflow,diffusion]" \
 && useradd --create-home --uid 10001 memaudit \
 && mkdir -p /data /models && chown memaudit /data

USER memaudit
EXPOSE 8000
CMD ["memaudit", "serve", "--no-worker", "--host", "0.0.0.0", "--port", "8000"]
