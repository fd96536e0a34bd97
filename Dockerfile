# The hookbus image: the one static binary, as a non-root user, on a base
# with no shell and no package manager. Its entrypoint is the binary, so
# the Kubernetes manifests give only arguments (`serve registry`).
#
#   make image                      # docker build -t hookbus:$(VERSION) .
#   docker run --rm hookbus:dev config
#
# The build runs what `make build` runs: CGO_ENABLED=0, -trimpath.

FROM golang:1.26 AS build
WORKDIR /src
# Modules first: a change to the code does not download them again.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 GOFLAGS=-buildvcs=false \
    go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/hookbus ./cmd/hookbus

# Static binaries only: CA certificates, /etc/passwd with user nonroot
# (65532), time zones; no shell.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/hookbus /hookbus
# Numeric, so that Kubernetes can verify runAsNonRoot from the image alone.
USER 65532:65532
# The all-in-one (`hookbus serve` without HOOKBUS_NATS_URL) keeps its data
# in ./data: the user's home is writable.
WORKDIR /home/nonroot
# NATS clients of the all-in-one; the HTTP gateway; the ops endpoint (/livez,
# /readyz, /metrics).
EXPOSE 4222 8080 8090
ENTRYPOINT ["/hookbus"]
