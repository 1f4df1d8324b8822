#!/usr/bin/env bash
# INRIA Holidays (Jegou et al., ECCV 2008): 1,491 images, 500 queries (jpg1 + jpg2 archives).
# Result: <root>/jpg/NNNNNN.jpg
# Usage: data/download_holidays.sh [root]   (default: $DASR_DATA/holidays)
# Note: some images are stored sideways; the official protocol uses them as they are.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_download_lib.sh"

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
