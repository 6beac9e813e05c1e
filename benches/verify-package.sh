#!/usr/bin/env bash
# Times `appattach inspect` verifying a signed package of SIZE MiB (default 512): wall
# time and peak RSS, from /usr/bin/time. Needs python3, openssl, osslsigncode and the
# release binary (cargo build --release). Works in a temporary folder it prints.
set -euo pipefail
size_mib=${1:-512}
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin=${APPATTACH_BIN:-${CARGO_TARGET_DIR:-$repo/target}/release/appattach}
work=$(mktemp -d)
cd "$work"
echo "working in $work with $bin"
python3 "$repo/benches/signed-package.py" $((size_mib * 1024 * 1024))
openssl req -x509 -newkey rsa:2048 -nodes -keyout key.pem -out cert.pem -days 30 \
  -subj "/C=US/O=Contoso/CN=Contoso Bench" -addext "extendedKeyUsage=codeSigning" 2>/dev/null
osslsigncode sign -certs cert.pem -key key.pem -h sha256 -in bench.msix -out signed.msix >/dev/null
for run in 1 2 3; do
  /usr/bin/time -f "run $run: %e s wall, %M KiB peak RSS" "$bin" inspect signed.msix \
    --trust cert.pem --location westeurope --image-path '\\fs\apps\bench.vhdx' \
    2> >(grep -E "verified|run [0-9]" >&2) > /dev/null
done
