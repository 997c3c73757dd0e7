#!/usr/bin/env bash
# The fast layer (`make test-unit`) as an unprivileged user: proof that it needs neither
# root nor a lab. Run as root (as CI is), it copies the working tree to a directory of its
# own and runs the tests there as `nobody`, with a module and build cache of that user's
# (kept between runs, so a second run only compiles what changed). Run as anyone else, it
# simply runs `make test-unit`.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
	exec make test-unit
fi
work=${STRAIT_UNIT_DIR:-/var/tmp/strait-test-unit}
mkdir -p "$work"
rm -rf "$work/src"
mkdir -p "$work/src" "$work/home"
# Tracked and untracked (not ignored) files: what the developer has, committed or not.
git ls-files -z --cached --others --exclude-standard | xargs -0 cp --parents -t "$work/src" 2>/dev/null || true
chown -R nobody:nogroup "$work"
go=$(command -v go)
start=$(date +%s)
setpriv --reuid=nobody --regid=nogroup --clear-groups \
	env -i PATH="$(dirname "$go"):/usr/bin:/bin:/usr/sbin:/sbin" HOME="$work/home" \
	GOCACHE="$work/cache" GOMODCACHE="$work/mod" GOPATH="$work/go" GOTOOLCHAIN=local \
	bash -c "cd '$work/src' && go mod download && make test-unit"
echo "--- make test-unit as nobody: $(($(date +%s) - start)) s (module download and build included)"
