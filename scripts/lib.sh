# Shared by scripts/*.sh: idempotent setup steps. POSIX sh.

# Runs apt-get as root (directly, or through sudo when not root).
apt_install () {
  if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
  echo "setup: installing Debian packages: $*" >&2
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null 2>&1 || {
    $SUDO apt-get update -q >/dev/null 2>&1
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null
  }
}

# npm ci when node_modules is missing or older than package-lock.json.
ensure_node_modules () {
  stamp=node_modules/.mqgw-lock.sha256
  # The lock file and the patches (patch-package applies them at install): a new or changed
  # patch in an existing checkout reinstalls too.
  want=$(cat package-lock.json patches/*.patch 2>/dev/null | sha256sum | cut -d' ' -f1)
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "setup: npm ci" >&2
    npm ci --no-audit --no-fund --loglevel=error >&2
    echo "$want" > "$stamp"
  fi
}

build () {
  rm -rf dist
  npx tsc -p tsconfig.json
}
