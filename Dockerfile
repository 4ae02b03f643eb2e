# pmacct-kafka-vm: runs like the original tool, `docker run --env-file .env IMAGE`.
# Custom transforms: mount a folder and set TRANSFORM_PATH, e.g.
#   docker run --env-file .env -v $PWD/transforms:/transforms -e TRANSFORM_PATH=/transforms/my.wasm IMAGE
FROM rust:1.95-bookworm AS build
RUN rustup target add wasm32-wasip2
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p pmacct-kafka-vm \
 && cp target/release/pmacct-kafka-vm /pmacct-kafka-vm

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /app pmacct \
 && mkdir -p /app /transforms && chown pmacct /app
COPY --from=build /pmacct-kafka-vm /usr/local/bin/pmacct-kafka-vm
USER pmacct
WORKDIR /app
EXPOSE 9003
HEALTHCHECK --interval=30s --timeout=3s CMD curl -fsS "http://127.0.0.1:${PROMETHEUS_CLIENT_PORT:-9003}/health" || exit 1
ENTRYPOINT ["/usr/local/bin/pmacct-kafka-vm"]
