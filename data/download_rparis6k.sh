#!/usr/bin/env bash
# Revisited Paris (Radenovic et al., CVPR 2018; revisitop): gnd_rparis6k.pkl + the original paris6k images.
# Result: <root>/gnd_rparis6k.pkl and <root>/jpg/<imlist[i]>.jpg (flat; 6322 database images, 70 queries)
# Usage: data/download_rparis6k.sh [root]   (default: $DASR_DATA/rparis6k)
# The images are those of paris6k: an existing $DASR_DATA/paris6k/jpg is reused through a symlink,
# otherwise data/download_paris6k.sh is run first.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_download_lib.sh"

ROOT="${1:-$(dasr_data_root rparis6k)}"
mkdir -p "$ROOT"
fetch "$ROOT/gnd_rparis6k.pkl" \
  https://cmp.felk.cvut.cz/revisitop/data/datasets/rparis6k/gnd_rparis6k.pkl \
  http://cmp.felk.cvut.cz/revisitop/data/datasets/rparis6k/gnd_rparis6k.pkl
SRC="$(dasr_data_root paris6k)"
if [[ ! -e "$ROOT/jpg" ]]; then
  if [[ ! -d "$SRC/jpg" ]]; then
    bash "$(dirname "$0")/download_paris6k.sh" "$SRC"
  fi
  ln -s "$SRC/jpg" "$ROOT/jpg"
fi
echo "rparis6k: ground truth and images ready in $ROOT"
