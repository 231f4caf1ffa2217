# syntax=docker/dockerfile:1
# The flashgate image: one static binary (the Lua scripts and the SQL
# migrations are embedded with go:embed), on a distroless base that has no
# shell, running as a non-root user. `make image` builds it; k8s/ runs it as
# gateway, worker, ws and the migration Job.
#
# Both bases are pinned to an exact version; pin their digests too when you
# build for production (docker buildx imagetools inspect <image>).
ARG GO_IMAGE=golang:1.26.8-bookworm
ARG BASE_IMAGE=gcr.io/distroless/static-debian12:nonroot

FROM ${GO_IMAGE} AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
	CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/flashgate .

FROM ${BASE_IMAGE}
COPY --from=build /out/flashgate /usr/local/bin/flashgate
# 65532 is distroless's nonroot user; k8s/ says so again in each pod's
# securityContext, so a base without the user still runs as non-root.
USER 65532:65532
WORKDIR /home/nonroot
EXPOSE 8080 8081 8082 9090 9091
ENTRYPOINT ["/usr/local/bin/flashgate"]
CMD ["help"]
