#!/usr/bin/env bash
# INRIA Holidays (Jegou et al., ECCV 2008): 1,491 images, 500 queries (jpg1 + jpg2 archives).
# Result: <root>/jpg/NNNNNN.jpg
# Usage: data/download_holidays.sh [root]   (default: $DASR_DATA/holidays)
# Note: some images are stored sideways; the official protocol uses them as they are.
set -euo pipefail
dasr_data_root() {
  # Same default as dasr.datasets.default_root: $DASR_DATA/<name>, DASR_DATA defaults to ~/dasr-data.
  echo "${DASR_DATA:-$HOME/dasr-data}/$1"
}

fetch() {
  # fetch OUT URL [URL...]: download OUT from the first URL that works; keeps an existing OUT.
  local out="$1"; shift
  if [[ -s "$out" ]]; then echo "  already there: $out"; return 0; fi
  local url
  for url in "$@"; do
    echo "  trying $url"
    if command -v curl >/dev/null 2>&1; then
      if curl -fL --retry 3 --retry-delay 5 -o "$out.part" "$url"; then mv "$out.part" "$out"; return 0; fi
    elif wget -O "$out.part" "$url"; then
      mv "$out.part" "$out"; return 0
    fi
    rm -f "$out.part"
  done
  echo "ERROR: could not download $(basename "$out") from any of: $*" >&2
  return 1
}

ROOT="${1:-$(dasr_data_root holidays)}"
mkdir -p "$ROOT/_archives"
cd "$ROOT"
for part in 1 2; do
  fetch "_archives/jpg${part}.tar.gz" \
    "ftp://ftp.inrialpes.fr/pub/lear/douze/data/jpg${part}.tar.gz"
  tar -xzf "_archives/jpg${part}.tar.gz"   # both archives unpack into jpg/
done
# The evaluation script of the authors (holidays_map.py) is in eval_holidays.tgz; optional.
fetch _archives/eval_holidays.tgz https://lear.inrialpes.fr/~jegou/code/eval_holidays.tgz || true
echo "holidays: $(ls jpg | wc -l) images in $ROOT"
