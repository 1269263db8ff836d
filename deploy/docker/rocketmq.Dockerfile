# The rocketmq-rust name server and broker 1.0.0, built from crates.io.
FROM rust:1.95-bookworm AS build
RUN cargo install --locked --root /opt/rocketmq rocketmq-namesrv@1.0.0 rocketmq-broker@1.0.0

FROM debian:bookworm-slim
COPY --from=build /opt/rocketmq/bin/ /usr/local/bin/
ENV ROCKETMQ_HOME=/var/lib/rocketmq
RUN mkdir -p /var/lib/rocketmq/conf /var/lib/rocketmq/store
WORKDIR /var/lib/rocketmq
