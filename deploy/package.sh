#!/bin/bash
# Build the Debian package with cargo-deb: the release binary, then from the binary
# itself the man pages, shell completions and the packaged turnmail.toml
# (`turnmail generate`, hidden), the unit with /usr/bin paths, then `cargo deb
# --no-build` (metadata in Cargo.toml [package.metadata.deb], maintainer scripts in
# deploy/debian/). Prints the path of the .deb last.
#
#     deploy/package.sh                        # needs: cargo install --locked cargo-deb
#     sudo dpkg -i target/debian/turnmail_*.deb
#
# Options:
#   --binary PATH  package this binary instead of building the release one (the test
#                  packages the debug build it already has: tests/package.rs)
#   --output DIR   where the .deb goes (default: TARGET_DIR/debian)
#   -- ARGS        more arguments for cargo deb (e.g. --maintainer, --fast, --dbgsym)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

binary=""
output=""
extra=()
while [ $# -gt 0 ]; do
    case "$1" in
        --binary) binary=${2:?--binary needs a path}; shift ;;
        --output) output=${2:?--output needs a directory}; shift ;;
        --) shift; extra=("$@"); break ;;
        -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
        *) echo "package.sh: unknown argument: $1" >&2; exit 2 ;;
    esac
    shift
done

if ! cargo deb --version >/dev/null 2>&1; then
    echo "package.sh: cargo-deb is missing: cargo install --locked cargo-deb" >&2
    exit 1
fi

target_dir=${CARGO_TARGET_DIR:-target}
case "$target_dir" in /*) ;; *) target_dir="$PWD/$target_dir" ;; esac
output=${output:-$target_dir/debian}
mkdir -p "$output"

stage=""
trap '[ -z "$stage" ] || rm -rf "$stage"' EXIT
if [ -z "$binary" ]; then
    cargo build --release --locked
    binary="$target_dir/release/turnmail"
else
    # cargo-deb takes built files from TARGET_DIR/release: give it a directory of its
    # own holding this binary, so no build directory is touched (or locked).
    stage=$(mktemp -d)
    mkdir "$stage/release"
    cp "$binary" "$stage/release/turnmail"
    binary="$stage/release/turnmail"
fi

# Everything generated comes from the binary being packaged, so it matches it. The
# unit has one source, deploy/turnmail.service (install.sh's, /usr/local/bin).
assets=target/assets
rm -rf "$assets"
"$binary" generate man "$assets/man" >/dev/null
for shell in bash zsh fish; do
    "$binary" generate completions "$shell" "$assets/completions" >/dev/null
done
"$binary" generate config "$assets/turnmail.toml" --user turnmail >/dev/null
sed 's|/usr/local/bin/turnmail|/usr/bin/turnmail|g' deploy/turnmail.service >"$assets/turnmail.service"
grep -q '^ExecStart=/usr/bin/turnmail serve$' "$assets/turnmail.service"

deb_env=()
[ -z "$stage" ] || deb_env=(env "CARGO_TARGET_DIR=$stage")
# --strip: [profile.release] keeps line tables for benchmarks; a host needs none
# (pass -- --dbgsym for a separate symbols package).
deb=$("${deb_env[@]}" cargo deb --no-build --locked --strip --output "$output" "${extra[@]}" | tail -n 1)
[ -f "$deb" ] || { echo "package.sh: cargo deb made no package ($deb)" >&2; exit 1; }
echo "$deb"
