# The sluice-enrich container: a static binary on a distroless base, run as
# a non-root user. Build from the repository root:
#
#   docker build -t sluice-enrich:dev .
#   docker build --build-arg VERSION=v1.2.3 -t sluice-enrich:v1.2.3 .
#
# The image also carries sluice-replay and sluice-verify (examples/replay
# and examples/verify), so that a one-off Job can replay dead letters or
# check a run with the same image. See docs/operations.md.

ARG GO_VERSION=1.26

FROM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
# Dependencies first, so that a change of code reuses this layer.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=""
# Static: no cgo, so the binaries need no libc and run on distroless/static.
RUN CGO_ENABLED=0 GOOS=linux go build -trimpath -ldflags="-s -w -X main.version=${VERSION}" -o /out/sluice-enrich ./examples/enrich-service && \
    CGO_ENABLED=0 GOOS=linux go build -trimpath -ldflags="-s -w" -o /out/sluice-replay ./examples/replay && \
    CGO_ENABLED=0 GOOS=linux go build -trimpath -ldflags="-s -w" -o /out/sluice-verify ./examples/verify

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/ /usr/local/bin/
# distroless's "nonroot" user; numeric, so that Kubernetes' runAsNonRoot
# can check it.
USER 65532:65532
# The service binds 127.0.0.1:8080 by default; in a container the probes and
# Prometheus come from outside, so bind every interface.
ENV SLUICE_HEALTH_ADDR=0.0.0.0:8080 \
    SLUICE_LOG_FORMAT=json
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/sluice-enrich"]
