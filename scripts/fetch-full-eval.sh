#!/usr/bin/env bash
# Fetch the full-size Chinese (zh) benchmark files for `dft eval` (the bundled ../shared/data/eval holds
# samples and dev slices), from the public GitHub repositories and commits below, each checked by sha256.
#
# Usage: scripts/fetch-full-eval.sh [DEST]          (default: ./data/full-eval)
#        dft eval --tasks all --lang zh --data-dir DEST
# DFT_FULL_EVAL_BASE overrides https://raw.githubusercontent.com (a mirror laid out as
# BASE/<owner>/<repo>/<commit>/<path>; file:// works too). Files already present with the right sha256
# are kept; a file with another sha256 is an error (never overwritten). Prints DEST on stdout.
#
# Splits (as lm-eval evaluates them): XQuAD validation (1,190 QAs), MKQA as the MIA-2022 shared task's
# dev subset (1,758), Okapi m_TruthfulQA validation (788), XNLI validation (2,490), XCOPA test (500),
# XStoryCloze eval (1,511). MLQA test (5,137) and Okapi m_MMLU test (≈ 13.7k) have no pinned public
# GitHub copy; their full dev / val splits stand in (504 and 1,421 items; `dft eval` records which file
# each score came from). Licenses: see ../shared/data/SOURCES.md (most are research-only).
set -euo pipefail
dest="${1:-$(cd "$(dirname "$0")/.." && pwd)/data/full-eval}"
base="${DFT_FULL_EVAL_BASE:-https://raw.githubusercontent.com}"

# dest file | owner/repo | commit | path in the repo (zip::member for a file inside a zip) | sha256
files='
xquad/xquad.zh.json|google-deepmind/xquad|7d30520c717524000f0d9d2f9c10a069acd9d285|xquad.zh.json|691d0b3359bc6b8faa8de931dfdfe21d50a65861ae348e32a0d1a0190b0c8835
mlqa/dev-context-zh-question-zh.json|GautamGupta17/MESH|68f82e29e71a4e425069ff398a61387c24c0f30d|data/mlqa/MLQA_V1/dev/dev-context-zh-question-zh.json|8fad23a8bb5618361209c04313218eff96139682006ff533f8533eb3f2691486
mkqa/mkqa-zh_cn.jsonl|mia-workshop/MIA-Shared-Task-2022|ea2491a3e3a588e270b2dd30ce7e044584c3eeb5|data/eval/mkqa_dev.zip::mkqa_dev/mkqa-zh_cn.jsonl|b5781cc1f17822d47ffc391a7ab7f7d7d7ea86831ce26155d10d797a86a5d914
truthfulqa/m_truthfulqa/zh_validation.json|laiviet/lm-evaluation-harness|10cb5292748e882c22db7eed49a380089645c4c2|datasets/m_truthfulqa/zh_validation.json|4ea84e6915f931d4c1259686b81994d8d77ed824c16965f9ccb84a4cad8d796d
xnli/dev-zh.tsv|GautamGupta17/MESH|8325b2bc0c537c553864742ce6aec6b6fded2964|data/xnli/dev-zh.tsv|1fc62e08fea927012d639006e3efc893e17cae2439776d9f51fcd9c41dc383e6
xcopa/test.zh.jsonl|cambridgeltl/xcopa|e2e9d7f105a758ee869cd13e0fe251ef93a29840|data/zh/test.zh.jsonl|c9b42590399214b9f066adacac2465d7286f5e590181fe6bfd7f6139531b83d4
xstorycloze/spring2016.val.zh.tsv.split_20_80_eval.tsv|juletx/self-translate|27979d688d4d7324d294e9ca421b0d96ce9f4030|datasets/XStoryCloze/spring2016.val.zh.tsv.split_20_80_eval.tsv|1eb47d1da6f9ab25a72e6242659c9be1555a2dffef0f46aa4d9db64b8e031023
mmlu/m_mmlu/zh_val.json|laiviet/lm-evaluation-harness|10cb5292748e882c22db7eed49a380089645c4c2|datasets/m_mmlu/zh_val.json|35e2714ce83f5aeb6bb785b315feccdee1def9a565c676df3ca1e8469e3abbbc
'

tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
py=$(command -v python3 || command -v python || true)
while IFS='|' read -r file repo commit path sha; do
  [ -n "$file" ] || continue
  out="$dest/$file"
  if [ -f "$out" ]; then
    got=$(sha256sum "$out" | cut -d' ' -f1)
    [ "$got" = "$sha" ] && continue
    echo "fetch-full-eval: $out exists with sha256 $got, not the pinned $sha; move it away first" >&2
    exit 1
  fi
  mkdir -p "$(dirname "$out")"
  src="${path%%::*}"
  echo "fetch-full-eval: $repo@${commit:0:7} $path" >&2
  curl -fsSL --retry 3 -o "$tmp/download" "$base/$repo/$commit/$src"
  if [ "$src" != "$path" ]; then
    [ -n "$py" ] || { echo "fetch-full-eval: python3 is needed to unpack $src" >&2; exit 1; }
    "$py" -c 'import sys,zipfile; sys.stdout.buffer.write(zipfile.ZipFile(sys.argv[1]).read(sys.argv[2]))' \
      "$tmp/download" "${path#*::}" > "$tmp/member"
    mv "$tmp/member" "$tmp/download"
  fi
  got=$(sha256sum "$tmp/download" | cut -d' ' -f1)
  if [ "$got" != "$sha" ]; then
    echo "fetch-full-eval: sha256 mismatch for $repo@$commit:$path: got $got, want $sha" >&2
    exit 1
  fi
  mv "$tmp/download" "$out.part" && mv "$out.part" "$out"
done <<< "$files"
echo "$dest"
