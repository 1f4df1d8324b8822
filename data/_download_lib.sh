# Shared by data/download_*.sh (sourced, not run).
# shellcheck shell=bash

dasr_data_root() {
  # Same default as dasr.eval.datasets.default_root: $DASR_DATA/<name>, DASR_DATA defaults to ~/dasr-data.
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
