# taxi: multi-stage image, installed exactly from requirements/prod.txt, run as non-root.
# scripts/container-smoke runs these same steps without a container engine (CI).

FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY requirements/prod.txt requirements/prod.txt
COPY scripts/install-app scripts/install-app
COPY taxi taxi
RUN scripts/install-app /opt/venv

FROM python:3.11-slim
RUN useradd --system --uid 10001 --create-home --home-dir /app taxi && install -d -o taxi /app/media
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 MEDIA_ROOT=/app/media
WORKDIR /app
USER taxi
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4).status != 200)"]
CMD ["taxi", "serve", "--host", "0.0.0.0", "--port", "8000", "--workers", "2"]
