#!/usr/bin/env bash
# Paris6k (Philbin et al., VGG Paris Buildings): 6,412 images (20 corrupt, removed) + paris_120310 (55 queries).
# Result: <root>/jpg/*.jpg (flat) and <root>/gt/<landmark>_<k>_{query,good,ok,junk}.txt
# Usage: data/download_paris6k.sh [root]   (default: $DASR_DATA/paris6k)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_download_lib.sh"

ROOT="${1:-$(dasr_data_root paris6k)}"
mkdir -p "$ROOT/jpg" "$ROOT/gt" "$ROOT/_archives" "$ROOT/_tmp"
cd "$ROOT"
for part in 1 2; do
  fetch "_archives/paris_${part}-v1.tgz" \
    "https://www.robots.ox.ac.uk/~vgg/data/parisbuildings/paris_${part}-v1.tgz" \
    "https://thor.robots.ox.ac.uk/datasets/paris-buildings/paris_${part}-v1.tgz" \
    "https://www.robots.ox.ac.uk/~vgg/data/parisbuildings/paris_${part}.tgz"
  tar -xzf "_archives/paris_${part}-v1.tgz" -C _tmp
done
fetch _archives/paris_120310.tgz \
  https://www.robots.ox.ac.uk/~vgg/data/parisbuildings/paris_120310.tgz \
  https://thor.robots.ox.ac.uk/datasets/paris-buildings/paris_120310.tgz
# The archives file images by landmark (paris/<landmark>/*.jpg); the loader wants them flat.
find _tmp -type f -name '*.jpg' -exec mv -n {} jpg/ \;
rm -rf _tmp
# The 20 corrupt files listed by VGG cannot be decoded; remove them (the loader then drops
# them from the ground truth with a warning).
if fetch _archives/corrupt.txt https://www.robots.ox.ac.uk/~vgg/data/parisbuildings/corrupt.txt; then
  while read -r line || [[ -n "$line" ]]; do
    [[ -n "$line" ]] && rm -f "jpg/$(basename "$line")"
  done < _archives/corrupt.txt
fi
tar -xzf _archives/paris_120310.tgz -C gt
echo "paris6k: $(ls jpg | wc -l) images, $(ls gt/*_query.txt | wc -l) queries in $ROOT"
