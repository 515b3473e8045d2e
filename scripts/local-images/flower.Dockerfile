# Stand-in for mher/flower:2.0.1, built by scripts/local-images.sh on machines that cannot pull: the
# Python stand-in with flower 2.0.1 (and the project's Celery and redis-py pins), run as `celery flower`.
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm
FROM ${PYTHON_IMAGE}

RUN pip install --no-cache-dir flower==2.0.1 "celery[redis]==5.7.0" redis==8.1.0 \
    && useradd --system --uid 10002 --no-create-home flower

ENV PYTHONUNBUFFERED=1
WORKDIR /tmp
EXPOSE 5555
USER flower
CMD ["celery", "flower"]
