#!/usr/bin/env bash
# The fast layer (`make test-unit`) with every test binary run as an unprivileged user:
# proof that it needs neither root nor a lab. Run as root (as CI is), it compiles with
# root's build cache and runs each test binary as `nobody` (go test -exec); where `nobody`
# cannot read the working tree (a clone under /root), it first copies the tree to a
# directory it can. Run as anyone else, it simply runs the fast layer. Arguments name the
# packages (default ./...).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
	exec go test -short -count=1 "${@:-./...}"
fi
work=${STRAIT_UNIT_DIR:-/var/tmp/strait-test-unit}
as_nobody=(setpriv --reuid=nobody --regid=nogroup --clear-groups)
rm -rf "$work"
mkdir -p "$work/home" "$work/bin"
src=$PWD
if ! "${as_nobody[@]}" test -r "$src/go.mod"; then
	src=$work/src
	mkdir -p "$src"
	# Tracked and untracked (not ignored) files: what the developer has, committed or not.
	git ls-files -z --cached --others --exclude-standard | xargs -0 cp --parents -t "$src"
fi
# go test builds test binaries in a directory only root may enter: the runner copies each
# one where nobody can run it.
cat >"$work/run-as-nobody" <<SCRIPT
#!/bin/sh
bin=\$(mktemp -p "$work/bin" test.XXXXXX)
cp "\$1" "\$bin" && chmod 755 "\$bin"
shift
${as_nobody[*]} env HOME="$work/home" "\$bin" "\$@"
status=\$?
rm -f "\$bin"
exit \$status
SCRIPT
chmod 755 "$work/run-as-nobody"
chown nobody:nogroup "$work/home"
chmod -R a+rX "$work"
start=$(date +%s)
cd "$src"
go test -short -count=1 -exec "$work/run-as-nobody" "${@:-./...}"
echo "--- the fast layer, every test binary run as nobody: $(($(date +%s) - start)) s"
