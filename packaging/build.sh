#!/usr/bin/env bash
# Builds the .deb (cargo-deb) and the .rpm (cargo-generate-rpm) from one
# release build, into target/packages/. Installs the two cargo tools if
# they are missing. Usage: packaging/build.sh [--deb-revision N]
set -euo pipefail
cd "$(dirname "$0")/.."
revision=1
if [ "${1:-}" = --deb-revision ]; then revision=$2; fi

for tool in cargo-deb:cargo-deb cargo-generate-rpm:cargo-generate-rpm; do
  crate=${tool%%:*}; bin=${tool##*:}
  command -v "$bin" >/dev/null 2>&1 || cargo install --locked "$crate"
done

target_dir=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
out="$target_dir/packages"
mkdir -p "$out"
cargo build --release --locked
strip "$target_dir/release/bootloader"
version=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"name":"bootloader","version":"\([^"]*\)".*/\1/p')
cargo deb --no-build --no-strip --deb-revision "$revision" -o "$out/bootloader_${version}-${revision}_amd64.deb"
cargo generate-rpm -o "$out/"
ls -l "$out"
echo "packages in $out"
