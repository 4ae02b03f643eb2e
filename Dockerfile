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
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl libssl3 tzdata \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /app pmacct \
 && mkdir -p /app /transforms && chown pmacct /app
COPY --from=build /dist/bin/pmacct-kafka-vm /usr/local/bin/pmacct-kafka-vm
# The example modules, to copy or point TRANSFORM_PATH at.
COPY --from=build /dist/transforms/ /usr/local/share/pmacct-kafka-vm/transforms/
USER pmacct
WORKDIR /app
EXPOSE 9003
HEALTHCHECK --interval=30s --timeout=3s CMD curl -fsS "http://127.0.0.1:${PROMETHEUS_CLIENT_PORT:-9003}/health/live" || exit 1
ENTRYPOINT ["/usr/local/bin/pmacct-kafka-vm"]
