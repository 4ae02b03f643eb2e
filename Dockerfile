# pmacct-kafka-vm: runs like the original tool, `docker run --env-file .env IMAGE`.
# Custom transforms: mount a folder and set TRANSFORM_PATH (hot reload on change), e.g.
#   docker run --env-file .env -v $PWD/transforms:/transforms -e TRANSFORM_PATH=/transforms/my.wasm IMAGE
# The build is scripts/build.sh, the same script CI runs (scripts/test.sh).
FROM rust:1.95-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends pkg-config libssl-dev binutils \
 && rm -rf /var/lib/apt/lists/* \
 && rustup target add wasm32-wasip2
WORKDIR /src
COPY . .
RUN scripts/build.sh /dist

FROM debian:bookworm-slim
LABEL org.opencontainers.image.title="pmacct-kafka-vm" \
      org.opencontainers.image.description="pmacct flow records from Kafka to VictoriaMetrics or Prometheus remote write, through a hot-reloadable WASM transform" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.documentation="README.md"
# ca-certificates: TLS to Kafka and the store; libssl3: librdkafka's TLS;
# tzdata: STAMP_TIMEZONE. No shell tool is needed: the health check is the
# binary itself.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libssl3 tzdata \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/cache/debconf/*-old /usr/share/doc/* /usr/share/man/* \
 && useradd --system --uid 10001 --home-dir /app pmacct \
 && mkdir -p /app/.cache/pmacct-kafka-vm/modules /transforms \
 && chown -R pmacct /app && chmod -R 700 /app/.cache
COPY --from=build /dist/bin/pmacct-kafka-vm /usr/local/bin/pmacct-kafka-vm
# The example modules, to copy or point TRANSFORM_PATH at.
COPY --from=build /dist/transforms/ /usr/local/share/pmacct-kafka-vm/transforms/
USER pmacct
WORKDIR /app
# Compiled modules are kept in /app/.cache/pmacct-kafka-vm/modules (the
# user's cache folder); with a read-only root, mount a volume there to keep
# them, or the host runs without a cache (a warning says so).
EXPOSE 9003
HEALTHCHECK --interval=30s --timeout=3s CMD ["/usr/local/bin/pmacct-kafka-vm", "health"]
ENTRYPOINT ["/usr/local/bin/pmacct-kafka-vm"]
