#!/usr/bin/env bash
# Revisited Oxford (Radenovic et al., CVPR 2018; revisitop): gnd_roxford5k.pkl + the original oxford5k images.
# Result: <root>/gnd_roxford5k.pkl and <root>/jpg/<imlist[i]>.jpg (flat; 4993 database images, 70 queries)
# Usage: data/download_roxford5k.sh [root]   (default: $DASR_DATA/roxford5k)
# The images are those of oxford5k: an existing $DASR_DATA/oxford5k/jpg is reused through a symlink,
# otherwise data/download_oxford5k.sh is run first.
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

ROOT="${1:-$(dasr_data_root roxford5k)}"
mkdir -p "$ROOT"
fetch "$ROOT/gnd_roxford5k.pkl" \
  https://cmp.felk.cvut.cz/revisitop/data/datasets/roxford5k/gnd_roxford5k.pkl \
  http://cmp.felk.cvut.cz/revisitop/data/datasets/roxford5k/gnd_roxford5k.pkl
SRC="$(dasr_data_root oxford5k)"
if [[ ! -e "$ROOT/jpg" ]]; then
  if [[ ! -d "$SRC/jpg" ]]; then
    bash "$(dirname "$0")/download_oxford5k.sh" "$SRC"
  fi
  ln -s "$SRC/jpg" "$ROOT/jpg"
fi
echo "roxford5k: ground truth and images ready in $ROOT"
