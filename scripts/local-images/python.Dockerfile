# Stand-in for python:3.11.14-slim-bookworm, built by scripts/local-images.sh on machines that cannot
# pull from Docker Hub. Debian bookworm's own Python 3.11, with `python`, `pip` and site-packages
# where the official image has them (/usr/local/bin, /usr/local/lib/python3.11/site-packages): a
# virtual environment at /usr/local. Never pushed; the published Dockerfiles keep their real FROM.
ARG ROOTFS=fer-local/bookworm-rootfs
FROM ${ROOTFS}

# Only this local image, never a published one: the build machine's CA bundle and pip's index settings
# (outbound TLS may be inspected by a proxy), written by scripts/local-images.sh at run time.
COPY host-ca.crt /etc/ssl/certs/host-ca.crt
COPY pip.conf /etc/pip.conf

# Debian's Python is 3.11.2, and redis-py needs async-timeout below 3.11.3 (`pip check` in the
# project's Dockerfiles fails without it); the official 3.11.14 image needs none.
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /usr/local \
    && /usr/local/bin/pip --version \
    && /usr/local/bin/pip install --no-cache-dir async-timeout==5.0.1

ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin \
    LANG=C.UTF-8
CMD ["python3"]
