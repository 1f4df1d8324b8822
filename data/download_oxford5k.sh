#!/usr/bin/env bash
# Oxford5k (Philbin et al., VGG Oxford Buildings): 5,063 images + gt_files_170407 (55 queries).
# Result: <root>/jpg/*.jpg and <root>/gt/<landmark>_<k>_{query,good,ok,junk}.txt
# Usage: data/download_oxford5k.sh [root]   (default: $DASR_DATA/oxford5k)
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

ROOT="${1:-$(dasr_data_root oxford5k)}"
mkdir -p "$ROOT/jpg" "$ROOT/gt" "$ROOT/_archives"
cd "$ROOT"
fetch _archives/oxbuild_images-v1.tgz \
  https://www.robots.ox.ac.uk/~vgg/data/oxbuildings/oxbuild_images-v1.tgz \
  https://thor.robots.ox.ac.uk/datasets/oxford-buildings/oxbuild_images-v1.tgz \
  https://www.robots.ox.ac.uk/~vgg/data/oxbuildings/oxbuild_images.tgz
fetch _archives/gt_files_170407.tgz \
  https://www.robots.ox.ac.uk/~vgg/data/oxbuildings/gt_files_170407.tgz \
  https://thor.robots.ox.ac.uk/datasets/oxford-buildings/gt_files_170407.tgz
tar -xzf _archives/oxbuild_images-v1.tgz -C jpg
# Some copies of the archive hold a top folder: flatten so that jpg/ holds the images directly.
find jpg -mindepth 2 -type f -name '*.jpg' -exec mv -n {} jpg/ \;
find jpg -mindepth 1 -type d -empty -delete
tar -xzf _archives/gt_files_170407.tgz -C gt
echo "oxford5k: $(ls jpg | wc -l) images, $(ls gt/*_query.txt | wc -l) queries in $ROOT"
