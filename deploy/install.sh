#!/bin/bash
# Install turnmail on a Debian-style host: the `turnmail` system user, the release
# binary in /usr/local/bin, the turnmail-checkpassword link, the systemd unit, and an
# empty mail root (`turnmail setup`) when there is none yet. (A Debian package does
# the same: deploy/package.sh.)
#
# Run from a checkout after `cargo build --release`:
#     sudo deploy/install.sh --dry-run     # print what would be done
#     sudo deploy/install.sh
#
# Safe to run again (upgrades replace the binary and the unit; an existing mail root,
# turnmail.toml or user is never touched). It does not start anything: the last lines
# it prints are the next three commands.
set -euo pipefail

usage() {
    cat <<'EOF'
usage: install.sh [--dry-run] [--binary PATH] [--root DIR] [--user NAME] [--prefix DIR]
                  [--unit-dir DIR]
  --dry-run       print the commands instead of running them
  --binary PATH   the turnmail binary (default: target/release/turnmail of this checkout)
  --root DIR      the mail root (default: /var/lib/turnmail)
  --user NAME     the mail user to create (default: turnmail)
  --prefix DIR    where the binary goes (default: /usr/local; binary in PREFIX/bin)
  --unit-dir DIR  where the unit goes (default: /etc/systemd/system, when systemd runs)
EOF
}

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
dry_run=0
binary="$here/../target/release/turnmail"
root=/var/lib/turnmail
user=turnmail
prefix=/usr/local
system_unit_dir=/etc/systemd/system
unit_dir=$system_unit_dir

while [ $# -gt 0 ]; do
    case "$1" in
        --dry-run) dry_run=1 ;;
        --binary) binary=${2:?--binary needs a path}; shift ;;
        --root) root=${2:?--root needs a directory}; shift ;;
        --user) user=${2:?--user needs a name}; shift ;;
        --prefix) prefix=${2:?--prefix needs a directory}; shift ;;
        --unit-dir) unit_dir=${2:?--unit-dir needs a directory}; shift ;;
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

# turnmail setup without the "next:" lines it ends with: this script ends with them.
setup_root() {
    if [ "$dry_run" = 1 ]; then
        run "$bindir/turnmail" setup "$root" --user "$user"
    else
        "$bindir/turnmail" setup "$root" --user "$user" | sed '/^next:$/,$d'
    fi
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

# 3. The mail root: an empty one, made by `turnmail setup` when there is none yet
#    (owned by the mail user; the production settings of turnmail.toml.example with
#    POP3S off until there is a certificate; this host's name in control/me). An
#    existing root is left as it is.
if [ -d "$root/control" ]; then
    note "mail root $root exists; left as it is"
elif [ -f "$root/turnmail.toml" ] && [ "$(ls -A "$root")" = turnmail.toml ]; then
    # What an earlier install.sh left: only a turnmail.toml, perhaps edited. Keep it
    # in force, and make the rest of the root around it (setup refuses a directory
    # holding one, so it steps aside meanwhile).
    note "keeping $root/turnmail.toml; setup's own is left in $root/turnmail.toml.setup"
    run mv "$root/turnmail.toml" "$root/turnmail.toml.kept"
    setup_root
    run mv "$root/turnmail.toml" "$root/turnmail.toml.setup"
    run mv "$root/turnmail.toml.kept" "$root/turnmail.toml"
else
    # Anything else of a mail root already there makes setup refuse, naming it.
    if ! setup_root; then
        echo "install.sh: $root was left as it is; see above ('turnmail setup --force' writes over it)" >&2
        exit 1
    fi
fi

# 4. The systemd unit (replaced on upgrade; local changes belong in a drop-in).
if [ -d /run/systemd/system ] || [ "$dry_run" = 1 ] || [ "$unit_dir" != "$system_unit_dir" ]; then
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
    if [ "$unit_dir" = "$system_unit_dir" ]; then
        run systemctl daemon-reload
    fi
else
    note "systemd is not running here: $unit_dir/turnmail.service not installed"
fi

# The next three commands; turnmail by its name where it is on root's PATH.
tm="$bindir/turnmail"
case "$bindir" in /usr/local/bin|/usr/bin) tm=turnmail ;; esac
if [ -d /run/systemd/system ] || [ "$unit_dir" != "$system_unit_dir" ]; then
    start="systemctl enable --now turnmail"
else
    start="$tm --root $root serve      # no systemd here: under your supervisor"
fi
cat <<EOF

Certificates for POP3S (995) and STARTTLS: [tls] in $root/turnmail.toml, readable by
$user (deploy/README.md). After an upgrade: systemctl restart turnmail. Adopting an
existing qmail host instead: contrib/MIGRATING.md.

next:
  $tm --root $root domain add example.net
  $tm --root $root user add joe@example.net
  $start
EOF
