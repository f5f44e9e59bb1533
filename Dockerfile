# echowatch: a small runtime image that runs as an unprivileged user and
# needs no capability to read capture files, and exactly NET_RAW to capture.
#
#   docker build -t echowatch .
#   docker run --rm --cap-drop ALL -v "$PWD/pcaps:/pcaps:ro" echowatch -r /pcaps/demo.pcap
#   docker run --rm --cap-drop ALL --cap-add NET_RAW --network host echowatch -i eth1
#
# Behind a corporate proxy or a TLS-inspecting gateway:
#   docker build --build-arg GOPROXY=https://goproxy.example.org \
#       --build-arg EXTRA_CA_CERT="$(cat corp-ca.pem)" -t echowatch .
#
# The base images are named by tag: pin them by digest where you build
# (--build-arg GO_IMAGE=golang:1.26-bookworm@sha256:... and RUNTIME_IMAGE=...).
ARG GO_IMAGE=golang:1.26-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

FROM ${GO_IMAGE} AS build
# A PEM bundle of extra certificate authorities for apt and the module
# proxy, and the module proxy itself.
ARG EXTRA_CA_CERT=""
ARG GOPROXY=""
RUN if [ -n "$EXTRA_CA_CERT" ]; then \
        printf '%s\n' "$EXTRA_CA_CERT" >/usr/local/share/ca-certificates/extra.crt && update-ca-certificates; \
    fi \
    && apt-get update && apt-get install -y --no-install-recommends libpcap-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY go.mod go.sum ./
RUN GOPROXY="${GOPROXY:-$(go env GOPROXY)}" go mod download
COPY . .
ARG VERSION=dev
RUN go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/echowatch ./cmd/echowatch

FROM ${RUNTIME_IMAGE}
ARG EXTRA_CA_CERT=""
COPY --from=build /out/echowatch /usr/local/bin/echowatch
# Capture needs raw sockets (promiscuous mode is a membership of the
# capture's socket, nothing more). The binary holds CAP_NET_RAW as a
# permitted file capability, without the effective bit: the kernel runs it
# wherever the capability is not granted (--cap-drop ALL, a Kubernetes pod
# that drops ALL), and where it is (--cap-add NET_RAW) echowatch puts it in
# effect only to open the capture. An effective file capability would make
# exec fail outright where the capability is not in the bounding set.
# cmd/echowatch's TestLiveFileCapabilities and TestNoCapabilities test it.
RUN if [ -n "$EXTRA_CA_CERT" ]; then \
        printf '%s\n' "$EXTRA_CA_CERT" >/usr/local/share/ca-certificates/extra.crt; \
    fi \
    && apt-get update && apt-get install -y --no-install-recommends libpcap0.8 ca-certificates libcap2-bin \
    && setcap cap_net_raw=p /usr/local/bin/echowatch \
    && apt-get purge -y libcap2-bin && apt-get autoremove -y && rm -rf /var/lib/apt/lists/* \
    && useradd --system --no-create-home --shell /usr/sbin/nologin echowatch
USER echowatch
ENTRYPOINT ["/usr/local/bin/echowatch"]
CMD ["--help"]
