# One image with every binary: the cloud-controller-manager, the node agent
# and baremetal-config. deploy/ chooses the binary with `command:`.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# The version stamp from git (`make image` passes hack/version.sh's output;
# the build context has no .git). Without it the binaries say v0.0.0-unknown.
ARG LDFLAGS="-X k8s.io/component-base/version.gitVersion=v0.0.0-unknown"
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w ${LDFLAGS}" -o /out/ \
      ./cmd/baremetal-cloud-controller-manager \
      ./cmd/baremetal-node-agent \
      ./cmd/baremetal-config

# Static binaries; no shell. The CCM runs as an unprivileged user and the
# agent as root with only NET_ADMIN and NET_RAW (see deploy/base).
FROM gcr.io/distroless/static-debian12
COPY --from=build /out/ /usr/local/bin/
ENTRYPOINT ["/usr/local/bin/baremetal-cloud-controller-manager"]
