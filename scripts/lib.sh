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

# npm ci replaces node_modules: edits made in a patched package since the last install (work on
# a patch not yet written with `npx patch-package <pkg>`) would be lost. Copies such packages to
# .cache/node_modules-edits/<time>/ first and says so.
keep_patched_edits () {
  [ -f "$1" ] || return 0
  for patch in patches/*.patch; do
    [ -f "$patch" ] || continue
    name=$(basename "$patch" .patch)
    name=${name%+*}
    case "$name" in @*) name=$(echo "$name" | sed 's/+/\//') ;; esac
    [ -d "node_modules/$name" ] || continue
    if [ -n "$(find "node_modules/$name" -type f -newer "$1" -print -quit 2>/dev/null)" ]; then
      dest=".cache/node_modules-edits/$(date +%Y%m%d-%H%M%S)/$name"
      mkdir -p "$(dirname "$dest")"
      cp -a "node_modules/$name" "$dest"
      echo "setup: node_modules/$name was edited since the last install; copied to $dest before npm ci (npx patch-package $name writes such edits into patches/)" >&2
    fi
  done
}

# npm ci when node_modules is missing or older than package-lock.json.
ensure_node_modules () {
  stamp=node_modules/.mqgw-lock.sha256
  # The lock file and the patches (patch-package applies them at install): a new or changed
  # patch in an existing checkout reinstalls too.
  want=$(cat package-lock.json patches/*.patch 2>/dev/null | sha256sum | cut -d' ' -f1)
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    keep_patched_edits "$stamp"
    echo "setup: npm ci" >&2
    npm ci --no-audit --no-fund --loglevel=error >&2
    echo "$want" > "$stamp"
  fi
}

build () {
  rm -rf dist
  npx tsc -p tsconfig.json
}
