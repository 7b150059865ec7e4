#!/usr/bin/env bash
# Proves the README's set-up on a pristine Debian bookworm root, as a new user's fresh machine
# would run it: a machine where packages were installed earlier by hand hides a missing install
# step, a root made by mmdebstrap does not.
#
#   bash scripts/pristine-check.sh      # as root; run by .ci/run (set-up, build, quickstart)
#
# 1. A minimal bookworm root (`mmdebstrap --variant=apt`: essential packages and apt, nothing
#    else), cached as a tar under $SHOAL_PRISTINE_CACHE (default /var/cache/shoal-pristine), keyed
#    by a hash of everything that decides its contents; a fresh copy is unpacked for every run.
# 2. The committed and untracked (not ignored) files of this checkout are copied to /root/shoal in
#    it, as a fresh clone would be (no target/).
# 3. In a private mount and PID namespace, with that root as the root of a mount namespace of
#    its own (pivot_root, not chroot: see below) and a clean environment, the README's set-up,
#    the quickstart's build and the quickstart itself:
#      bash scripts/install-deps.sh
#      cargo build --locked --workspace --bins      (the build scripts/quickstart.sh does)
#      bash scripts/quickstart.sh && bash scripts/quickstart.sh stop   (own network namespace:
#                                                                      loopback only)
#    With --tests, then the README's test command, `bash scripts/test.sh` (several minutes more).
#    With --build-only, no quickstart. With --deps-only, only scripts/install-deps.sh.
#    Why pivot_root: under a chroot the mount namespace's root stays the host's `/`, and runc
#    exec joins a container's mount namespace at that root: an exec health check (`test -f
#    /tmp/ready` in the demo's db) then looked at the host's /tmp and failed, and the quickstart
#    never converged. On a real machine the root file system is the namespace's root.
#    The Rust toolchain comes from the host: $RUSTUP_HOME bound read-only, $CARGO_HOME bound with
#    its bin/ read-only and its registry read-write (crates downloaded once, shared with the
#    host's cargo and its lock); Debian's downloaded .deb files are kept in the cache directory.
#    The build itself is cold: nothing of target/ is cached.
# Everything it mounts is inside its own mount namespace, unmounted by path on exit, and gone with
# the namespace in any case; the unpacked root is deleted at the end (--keep keeps it).
#
# Fails with a message naming the step that failed and, where it can tell, the missing program or
# package. SHOAL_PRISTINE_OMIT=PKG removes PKG from the copied install list, to show that failure.
set -euo pipefail

if [ "${1:-}" = "--inside" ]; then
  inside=1
  shift
else
  inside=""
fi

log() { echo "pristine-check: $*" >&2; }

# ---------------------------------------------------------------------------------------------
# Inside the private mount and PID namespace: mount, pivot into the root, run the steps.
# ---------------------------------------------------------------------------------------------
if [ -n "$inside" ]; then
  WORK=$1
  STEPS=$2
  R=$WORK/root
  export R
  CARGO_HOST=${CARGO_HOME:-$HOME/.cargo}
  RUSTUP_HOST=${RUSTUP_HOME:-$HOME/.rustup}
  mounted=()
  cleanup_mounts() {
    local i
    for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do
      umount -R "${mounted[i]}" 2>/dev/null || umount -R -l "${mounted[i]}" 2>/dev/null ||
        log "could not unmount ${mounted[i]}"
    done
  }
  trap cleanup_mounts EXIT
  # This shell is PID 1 of its namespace: without handlers it would ignore these. When it
  # exits, the kernel ends every process left in the namespace.
  trap 'exit 143' TERM INT HUP
  # Nothing mounted here propagates back to the host.
  mount --make-rprivate /
  mnt() { # mnt TARGET MOUNT-ARGS...: mount and remember the path for the unmount on exit
    local target=$1
    shift
    mkdir -p "$target"
    mount "$@" "$target"
    mounted+=("$target")
  }
  # The root is a mount point of its own: runc (the quickstart's containers) sets up a
  # container's root file system from there, which fails on a plain directory.
  mnt "$R" --bind "$R"
  mnt "$R/proc" -t proc proc
  mnt "$R/sys" --rbind /sys
  mnt "$R/dev" --rbind /dev
  mnt "$R/run" -t tmpfs -o mode=755 tmpfs
  mnt "$R/root/.rustup" --bind "$RUSTUP_HOST"
  mount -o remount,bind,ro "$R/root/.rustup"
  mnt "$R/root/.cargo" --bind "$CARGO_HOST"
  mnt "$R/root/.cargo/bin" --bind "$CARGO_HOST/bin"
  mount -o remount,bind,ro "$R/root/.cargo/bin"
  mkdir -p "$WORK/../apt-archives/partial"
  mnt "$R/var/cache/apt/archives" --bind "$WORK/../apt-archives"

  # The root becomes the root of a mount namespace of its own (pivot_root; the host's root is
  # detached), in a clean environment: nothing of the host's files, PATH or settings leaks in.
  in_root() {
    unshare --mount -- /bin/sh -c '
      cd "$1" && mkdir -p .oldroot && pivot_root . .oldroot && cd / || exit 125
      # The root has no umount before install-deps (package mount): the host'"'"'s, run once.
      if [ -x /usr/bin/umount ]; then /usr/bin/umount -l /.oldroot; else /.oldroot/usr/bin/umount -l /.oldroot; fi || exit 125
      exec env -i HOME=/root USER=root LOGNAME=root TERM=dumb LANG=C.UTF-8 \
        PATH=/root/.cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        CARGO_TERM_COLOR=never /bin/bash -c "cd /root/shoal && $2"' pristine-root "$R" "$1"
  }
  step() { # step NAME NETNS COMMAND: run COMMAND in the root, its output also in a log
    local name=$1 netns=$2 cmd=$3 start rc
    start=$(date +%s)
    log "step '$name': $cmd"
    set +e
    if [ "$netns" = own ]; then
      # A network namespace of its own: only loopback, no clash with ports used on the host.
      unshare --net -- bash -c "ip link set lo up && $(declare -f in_root); in_root $(printf %q "$cmd")" \
        2>&1 | tee "$WORK/$name.log"
    else
      in_root "$cmd" 2>&1 | tee "$WORK/$name.log"
    fi
    rc=${PIPESTATUS[0]}
    set -e
    log "step '$name': exit $rc after $(($(date +%s) - start)) s"
    if [ "$rc" != 0 ]; then
      explain "$name" "$cmd" "$WORK/$name.log"
      exit 1
    fi
  }
  explain() { # explain STEP COMMAND LOG: the failure, and what was probably missing
    local hints
    hints=$(grep -E -o "command not found|[A-Za-z0-9_./-]+: (command )?not found|Could not find .protoc.|google/protobuf/[a-z_]+\.proto: File not found|linker .cc. not found|cannot find (crt1\.o|-lc)|No such file or directory \(os error 2\)|Unable to locate package [^ ]+" "$3" |
      sort -u | head -n 8 || true)
    {
      echo
      echo "pristine-check: FAILED in a fresh Debian bookworm root at step '$1':"
      echo "    $2"
      echo "  A fresh machine that follows the README fails here. The usual cause is a Debian"
      echo "  package missing from scripts/install-deps.sh (or a program used without its package)."
      if [ -n "$hints" ]; then
        echo "  What the output says is missing:"
        sed 's/^/    /' <<<"$hints"
        if grep -q "protoc" <<<"$hints"; then echo "  protoc is in package protobuf-compiler."; fi
        if grep -q "google/protobuf" <<<"$hints"; then
          echo "  The google/protobuf include files are in package libprotobuf-dev."
        fi
        if grep -q -E "linker|crt1|-lc" <<<"$hints"; then
          echo "  A C compiler and libc headers: packages gcc and libc6-dev."
        fi
      fi
      echo "  Full output: the lines above (step log $3)."
    } >&2
  }

  step install-deps host "bash scripts/install-deps.sh"
  if [ "$STEPS" = deps ]; then
    log "install-deps passed in the pristine root (--deps-only: nothing built)"
    exit 0
  fi
  step build host "cargo build --locked --workspace --bins"
  if [ "$STEPS" != build ]; then
    step quickstart own "bash scripts/quickstart.sh && bash scripts/quickstart.sh stop"
  fi
  if [ "$STEPS" = tests ]; then
    step tests own "bash scripts/test.sh"
  fi
  log "every step passed in the pristine root"
  exit 0
fi

# ---------------------------------------------------------------------------------------------
# On the host: the cached root, a fresh copy of it, the source, then the namespace.
# ---------------------------------------------------------------------------------------------
cd "$(dirname "$0")/.."
REPO=$PWD
STEPS=quickstart
KEEP=""
for a in "$@"; do
  case "$a" in
    --tests) STEPS=tests ;;
    --build-only) STEPS=build ;;
    --deps-only) STEPS=deps ;;
    --keep) KEEP=1 ;;
    *) echo "usage: $0 [--tests | --build-only | --deps-only] [--keep]" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" = 0 ] || { log "must run as root (mmdebstrap, pivot_root, mounts)"; exit 1; }
if ! command -v mmdebstrap >/dev/null; then
  log "installing mmdebstrap (Debian package) on this machine"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends mmdebstrap >/dev/null
fi
for tool in mmdebstrap unshare pivot_root git; do
  command -v "$tool" >/dev/null || { log "needs $tool (Debian packages mmdebstrap, util-linux, coreutils, git)"; exit 1; }
done
CARGO_HOST=${CARGO_HOME:-$HOME/.cargo}
RUSTUP_HOST=${RUSTUP_HOME:-$HOME/.rustup}
[ -x "$CARGO_HOST/bin/cargo" ] && [ -d "$RUSTUP_HOST/toolchains" ] ||
  { log "no rustup toolchain in $CARGO_HOST and $RUSTUP_HOST (set CARGO_HOME, RUSTUP_HOME)"; exit 1; }
started=$(date +%s)

CACHE=${SHOAL_PRISTINE_CACHE:-/var/cache/shoal-pristine}
mkdir -p "$CACHE"
# The machine's own Debian sources (the same mirror apt uses here).
if [ -f /etc/apt/sources.list.d/debian.sources ]; then
  SOURCES=/etc/apt/sources.list.d/debian.sources
else
  SOURCES=/etc/apt/sources.list
fi
# The host's apt date checks go into the root too: a snapshot mirror's Release files have
# expired Valid-Until dates, which apt on this machine is told to accept.
aptopts=()
if apt-config dump | grep -q '^Acquire::Check-Valid-Until "false"'; then
  aptopts+=(--aptopt='Acquire::Check-Valid-Until "false"' --aptopt='Acquire::Check-Date "false"')
fi
mmargs=(--variant=apt --mode=root --format=tar "${aptopts[@]}"
        --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*'
        --dpkgopt='path-exclude=/usr/share/locale/*' bookworm)
key=$( { mmdebstrap --version; printf '%s\n' "${mmargs[@]}"; cat "$SOURCES"; } | sha256sum | cut -c1-16)
TAR=$CACHE/bookworm-apt-$key.tar
if [ ! -s "$TAR" ]; then
  log "building the pristine root $TAR (cached for later runs)"
  mmdebstrap --quiet "${mmargs[@]}" "$TAR.tmp" "$SOURCES"
  mv "$TAR.tmp" "$TAR"
fi

WORK=$(mktemp -d "$CACHE/run.XXXXXX")
finish() {
  local rc=$?
  # The mounts lived in the namespace, which is gone; never follow into another file system.
  if grep -q " $WORK/" /proc/self/mounts; then
    log "mounts under $WORK are still there; not deleting it"
  elif [ -z "$KEEP" ]; then
    rm -rf --one-file-system "$WORK"
  else
    log "kept $WORK"
  fi
  log "total $(($(date +%s) - started)) s, exit $rc"
}
trap finish EXIT
mkdir -p "$WORK/root"
tar -xf "$TAR" -C "$WORK/root"
# What the Debian installer writes on every real machine and a bare root lacks (the agent binds
# the host's /etc/hosts and /etc/resolv.conf into host-network containers).
cp /etc/resolv.conf "$WORK/root/etc/resolv.conf"
printf '127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' >"$WORK/root/etc/hosts"
mkdir -p "$WORK/root/root/shoal"
git -C "$REPO" ls-files -z --cached --others --exclude-standard |
  (cd "$REPO" && tar --null --ignore-failed-read -T - -cf - 2>/dev/null) | tar -xf - -C "$WORK/root/root/shoal"
if [ -n "${SHOAL_PRISTINE_OMIT:-}" ]; then
  log "SHOAL_PRISTINE_OMIT: leaving ${SHOAL_PRISTINE_OMIT} out of the copied scripts/install-deps.sh"
  sed -i -E "/^(build|run|tests)=\(/ s/(\(| )${SHOAL_PRISTINE_OMIT}( |\))/\1\2/" \
    "$WORK/root/root/shoal/scripts/install-deps.sh"
  grep -E "^(build|run|tests)=\(" "$WORK/root/root/shoal/scripts/install-deps.sh" >&2
fi
log "root unpacked in $WORK/root ($(($(date +%s) - started)) s)"

unshare --mount --pid --fork --kill-child -- \
  env CARGO_HOME="$CARGO_HOST" RUSTUP_HOME="$RUSTUP_HOST" bash "$REPO/scripts/pristine-check.sh" --inside "$WORK" "$STEPS" &
inner=$!
# unshare ignores TERM and INT while it waits: pass them to the namespace's first process.
forward() {
  local child
  child=$(cat "/proc/$inner/task/$inner/children" 2>/dev/null || true)
  [ -n "$child" ] && kill -TERM $child 2>/dev/null
  wait "$inner"
  exit 143
}
trap forward TERM INT HUP
wait "$inner"
