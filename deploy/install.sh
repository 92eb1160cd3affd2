#!/bin/bash
# Install turnmail on a Debian-style host: the `turnmail` system user, the release
# binary in /usr/local/bin, the turnmail-checkpassword link, the systemd unit, and a
# starting turnmail.toml in the mail root when there is none yet.
#
# Run from a checkout after `cargo build --release`:
#     sudo deploy/install.sh --dry-run     # print what would be done
#     sudo deploy/install.sh
#
# Safe to run again (upgrades replace the binary and the unit; an existing
# turnmail.toml, mail root or user is never touched). It does not start anything:
# see the last lines it prints.
set -euo pipefail

usage() {
    cat <<'EOF'
usage: install.sh [--dry-run] [--binary PATH] [--root DIR] [--user NAME] [--prefix DIR]
  --dry-run      print the commands instead of running them
  --binary PATH  the turnmail binary (default: target/release/turnmail of this checkout)
  --root DIR     the mail root (default: /var/lib/turnmail)
  --user NAME    the mail user to create (default: turnmail)
  --prefix DIR   where the binary goes (default: /usr/local; binary in PREFIX/bin)
EOF
}

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
dry_run=0
binary="$here/../target/release/turnmail"
root=/var/lib/turnmail
user=turnmail
prefix=/usr/local
unit_dir=/etc/systemd/system

while [ $# -gt 0 ]; do
    case "$1" in
        --dry-run) dry_run=1 ;;
        --binary) binary=${2:?--binary needs a path}; shift ;;
        --root) root=${2:?--root needs a directory}; shift ;;
        --user) user=${2:?--user needs a name}; shift ;;
        --prefix) prefix=${2:?--prefix needs a directory}; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "install.sh: unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done

bindir="$prefix/bin"

# Run a command, or only show it under --dry-run.
run() {
    if [ "$dry_run" = 1 ]; then
        printf '+'
        printf ' %q' "$@"
        printf '\n'
    else
        "$@"
    fi
}

note() {
    printf 'install.sh: %s\n' "$*"
}

if [ "$dry_run" = 0 ] && [ "$(id -u)" != 0 ]; then
    echo "install.sh: run as root (or try --dry-run)" >&2
    exit 1
fi
if [ ! -x "$binary" ]; then
    if [ "$dry_run" = 1 ]; then
        note "warning: $binary is missing (cargo build --release first)"
    else
        echo "install.sh: $binary not found; run 'cargo build --release' first or pass --binary" >&2
        exit 1
    fi
fi
case "$root" in
    /*) ;;
    *) echo "install.sh: --root must be an absolute path" >&2; exit 2 ;;
esac

# 1. The system user: no login shell, no password, its own group, home = the root.
if getent passwd "$user" >/dev/null; then
    note "user $user exists"
else
    nologin=/usr/sbin/nologin
    [ -x "$nologin" ] || nologin=/bin/false
    # useradd comes with Debian's essential passwd package (adduser may be absent).
    run useradd --system --user-group --home-dir "$root" --no-create-home \
        --shell "$nologin" --comment "turnmail mail owner" "$user"
fi

# 2. The binary (replaced atomically by install(1)) and the checkpassword name.
run install -d -m 0755 "$bindir"
run install -m 0755 "$binary" "$bindir/turnmail"
run ln -sfn turnmail "$bindir/turnmail-checkpassword"

# 3. The mail root: created if missing, owned by the mail user. Mode 0755 so that
#    root can read turnmail.toml before the daemon drops to the mail user; the
#    directories below it that hold mail are 0700.
if [ -d "$root" ]; then
    note "mail root $root exists"
else
    run install -d -m 0755 -o "$user" -g "$user" "$root"
fi
if [ -e "$root/turnmail.toml" ]; then
    note "$root/turnmail.toml exists; left as it is (compare with deploy/turnmail.toml.example)"
else
    run install -m 0644 -o "$user" -g "$user" "$here/turnmail.toml.example" "$root/turnmail.toml"
    if [ "$user" != turnmail ]; then
        run sed -i "s/^user = \"turnmail\"/user = \"$user\"/" "$root/turnmail.toml"
    fi
fi

# 4. The systemd unit (replaced on upgrade; local changes belong in a drop-in).
if [ -d /run/systemd/system ] || [ "$dry_run" = 1 ]; then
    unit="$here/turnmail.service"
    if [ "$root" != /var/lib/turnmail ] || [ "$prefix" != /usr/local ]; then
        tmp=$(mktemp)
        trap 'rm -f "$tmp"' EXIT
        sed -e "s|/var/lib/turnmail|$root|g" -e "s|/usr/local/bin/turnmail|$bindir/turnmail|g" \
            "$unit" >"$tmp"
        unit=$tmp
    fi
    run install -d -m 0755 "$unit_dir"
    run install -m 0644 "$unit" "$unit_dir/turnmail.service"
    run systemctl daemon-reload
else
    note "systemd is not running here: $unit_dir/turnmail.service not installed"
fi

cat <<EOF

next steps:
  - TLS for POP3S (995) and STARTTLS: put cert.pem and key.pem in $root/tls/
    (readable by $user), or set [tls] cert/key in $root/turnmail.toml; without
    them, drop listen_tls from [pop3].
  - Add domains and mailboxes (turnmail --root $root domain add ..., user add ...),
    or adopt an existing qmail host: contrib/MIGRATING.md.
  - TURNMAIL_ROOT=$root $bindir/turnmail check
  - systemctl enable --now turnmail
EOF
