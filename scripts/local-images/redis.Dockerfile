# Stand-in for redis:7.2.11-alpine, built by scripts/local-images.sh on machines that cannot pull:
# Debian's redis-server (7.0) and redis-cli on PATH, data in /data, run as the redis user; like the
# official image, protected mode is off (the compose network is the boundary; --requirepass works).
ARG ROOTFS=fer-local/bookworm-rootfs
FROM ${ROOTFS}

RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends redis-server \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir /data && chown redis:redis /data

COPY redis-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
WORKDIR /data
VOLUME /data
EXPOSE 6379
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["redis-server"]
