#!/usr/bin/env bash
# Revisited Oxford (Radenovic et al., CVPR 2018; revisitop): gnd_roxford5k.pkl + the original oxford5k images.
# Result: <root>/gnd_roxford5k.pkl and <root>/jpg/<imlist[i]>.jpg (flat; 4993 database images, 70 queries)
# Usage: data/download_roxford5k.sh [root]   (default: $DASR_DATA/roxford5k)
# The images are those of oxford5k: an existing $DASR_DATA/oxford5k/jpg is reused through a symlink,
# otherwise data/download_oxford5k.sh is run first.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_download_lib.sh"

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
