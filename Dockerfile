# syntax=docker/dockerfile:1
# The flashgate image: one static binary (the Lua scripts and the SQL
# migrations are embedded with go:embed) on scratch, with only the CA
# certificates beside it (for Kafka, Redis and MySQL over TLS): no shell, no
# packages, no base image tag that moves. It runs as a non-root user.
# `make image` builds it; k8s/ runs it as gateway, worker, ws and the
# migration Job.
#
# The build image is pinned to an exact version; pin its digest too when
# you build for production (docker buildx imagetools inspect <image>).
ARG GO_IMAGE=golang:1.26.8-bookworm

FROM ${GO_IMAGE} AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
	CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/flashgate .

FROM scratch
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /out/flashgate /usr/local/bin/flashgate
# A numeric user: scratch has no /etc/passwd. k8s/ says so again in each
# pod's securityContext (runAsNonRoot, runAsUser 65532).
USER 65532:65532
EXPOSE 8080 8081 8082 9090 9091
ENTRYPOINT ["/usr/local/bin/flashgate"]
CMD ["help"]
