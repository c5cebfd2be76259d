FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p api --bin tickets

FROM debian:bookworm-slim
RUN useradd --system --home /data tickets && mkdir /data && chown tickets /data
COPY --from=build /src/target/release/tickets /usr/local/bin/tickets
USER tickets
ENV TICKETS_DATA_DIR=/data TICKETS_LISTEN=0.0.0.0:8080
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/tickets"]
CMD ["serve"]
