# The strait image that config/manager deploys: docker build -t ghcr.io/strait-io/strait .
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o /strait ./cmd/strait

FROM gcr.io/distroless/static:nonroot
COPY --from=build /strait /strait
USER 65532:65532
ENTRYPOINT ["/strait"]
