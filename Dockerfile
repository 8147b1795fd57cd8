# syntax=docker/dockerfile:1
# One image for every Kafkube service; the command picks the service:
#   docker run kafkube:latest serve aggregator      (see `kafkube serve --help`)
#   docker run -p 3000:3000 -p 3001:3001 -p 8080:8080 kafkube:latest up   (everything, embedded broker)

FROM rust:1.95-bookworm AS build
# What rdkafka-sys needs to build librdkafka from source (as in scripts/lib.sh).
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc g++ make perl python3 pkg-config zlib1g-dev libssl-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p kafkube \
 && install -m 0755 target/release/kafkube /usr/local/bin/kafkube

FROM debian:bookworm-slim
# The binary links only glibc, libgcc and zlib (librdkafka is built in).
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates zlib1g \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --home-dir /data --create-home kafkube
COPY --from=build /usr/local/bin/kafkube /usr/local/bin/kafkube
USER 10001:10001
# `up` keeps its SQLite files under ./data, so here under /data/data: mount a volume at /data.
WORKDIR /data
ENV LOG_FORMAT=json
# students API, hash gateway, log aggregator, restaurants, ops port of the consumers (/health,
# /ready, /metrics)
EXPOSE 3000 3001 5000 8080 9090
ENTRYPOINT ["kafkube"]
CMD ["up"]
