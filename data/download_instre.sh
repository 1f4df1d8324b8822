#!/usr/bin/env bash
# INSTRE (Wang & Jiang, TOMM 2015) with the 1,250-query protocol of Iscen et al. (gnd_instre.mat).
# Result: <root>/gnd_instre.mat and <root>/INSTRE-S1, INSTRE-S2, INSTRE-M
# Usage: data/download_instre.sh [root]   (default: $DASR_DATA/instre)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_download_lib.sh"

ROOT="${1:-$(dasr_data_root instre)}"
mkdir -p "$ROOT/_archives"
cd "$ROOT"
fetch gnd_instre.mat \
  ftp://ftp.irisa.fr/local/texmex/corpus/instre/gnd_instre.mat
fetch _archives/instre.tar.gz \
  ftp://ftp.irisa.fr/local/texmex/corpus/instre/instre.tar.gz
tar -xzf _archives/instre.tar.gz
# gnd_instre.mat paths start with INSTRE-S1/, INSTRE-S2/, INSTRE-M/: lift them out of a top folder if any.
if [[ ! -d INSTRE-S1 ]]; then
  top="$(dirname "$(find . -maxdepth 3 -type d -name INSTRE-S1 | head -n 1)")"
  [[ -n "$top" && "$top" != "." ]] && mv "$top"/INSTRE-* .
fi
echo "instre: $(find INSTRE-* -name '*.jpg' | wc -l) images in $ROOT"
