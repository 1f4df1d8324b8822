#!/usr/bin/env bash
# Oxford5k (Philbin et al., VGG Oxford Buildings): 5,063 images + gt_files_170407 (55 queries).
# Result: <root>/jpg/*.jpg and <root>/gt/<landmark>_<k>_{query,good,ok,junk}.txt
# Usage: data/download_oxford5k.sh [root]   (default: $DASR_DATA/oxford5k)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_download_lib.sh"

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
