# echowatch: a small runtime image that captures without root.
#
#   docker build -t echowatch .
#   docker run --rm --network host echowatch -i eth1
#   docker run --rm -v "$PWD/pcaps:/pcaps:ro" echowatch -r /pcaps/demo.pcap

FROM golang:1.26-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends libpcap-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/echowatch ./cmd/echowatch

FROM debian:bookworm-slim
COPY --from=build /out/echowatch /usr/local/bin/echowatch
# Capture needs raw sockets (promiscuous mode is a membership of the
# capture's socket, nothing more): grant exactly that to the binary (here,
# where no COPY can drop the file capability) so that it runs as an
# unprivileged user. cmd/echowatch's TestLiveFileCapabilities tests it.
RUN apt-get update && apt-get install -y --no-install-recommends libpcap0.8 ca-certificates libcap2-bin \
    && setcap cap_net_raw+ep /usr/local/bin/echowatch \
    && apt-get purge -y libcap2-bin && apt-get autoremove -y && rm -rf /var/lib/apt/lists/* \
    && useradd --system --no-create-home --shell /usr/sbin/nologin echowatch
USER echowatch
ENTRYPOINT ["/usr/local/bin/echowatch"]
CMD ["--help"]
