# shellcheck shell=bash
# Helpers shared by scripts/test and .ci/run. Source it; it does nothing on its own.
# Installing and starting things assumes Debian (apt, postgresql-common) and root;
# without root, or with KAFKUBE_SKIP_PROVISION=1, the helpers only check and explain.

KAFKUBE_DEFAULT_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/postgres

# rdkafka-sys builds the bundled librdkafka with its own ./configure (perl, python3) and
# make, compiles C and C++, and links zlib and OpenSSL found through pkg-config.
KAFKUBE_BUILD_PACKAGES=(gcc g++ make perl python3 pkg-config zlib1g-dev libssl-dev)

log() { printf '==> %s\n' "$*" >&2; }
warn() { printf 'warning: %s\n' "$*" >&2; }
die() {
  printf 'error: %s\n' "$*" >&2
  exit 1
}

is_root() { [ "$(id -u)" = 0 ]; }
skip_provision() { [ "${KAFKUBE_SKIP_PROVISION:-0}" = 1 ]; }

# ensure_apt_packages pkg...: install those of the given Debian packages that are missing.
ensure_apt_packages() {
  local pkg missing=()
  if ! command -v dpkg-query >/dev/null 2>&1; then
    warn "not a Debian system, not checking for: $*"
    return 0
  fi
  for pkg in "$@"; do
    # Like `dpkg -s`, but a removed package whose config files remain does not count.
    # shellcheck disable=SC2016 # ${...} is dpkg-query's format syntax, not the shell's
    if [ "$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null)" != installed ]; then
      missing+=("$pkg")
    fi
  done
  if [ "${#missing[@]}" -eq 0 ]; then
    return 0
  fi
  if skip_provision; then
    warn "KAFKUBE_SKIP_PROVISION=1, not installing missing packages: ${missing[*]}"
    return 0
  fi
  is_root || die "missing Debian packages: ${missing[*]}; install them with: sudo apt-get install -y ${missing[*]}"
  log "installing ${missing[*]}"
  # At most one `apt-get update` per run; exported so that scripts/test, started by
  # .ci/run, does not repeat it.
  if [ -z "${_KAFKUBE_APT_UPDATED:-}" ]; then
    apt-get update -q </dev/null >&2
    export _KAFKUBE_APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" </dev/null >&2
}

ensure_build_deps() {
  log "ensuring build prerequisites (${KAFKUBE_BUILD_PACKAGES[*]})"
  ensure_apt_packages "${KAFKUBE_BUILD_PACKAGES[@]}"
}

# What the tests talk to besides the databases and Kafka: a real SMTP server (aiosmtpd, which
# the restaurants mailer tests start on a free port of their own), and a real browser for the
# restaurants page test (headless Chromium driven through chromedriver, which it starts itself).
# gdb: scripts/test prints the threads of a test binary that hangs before it stops it.
KAFKUBE_TEST_PACKAGES=(python3-aiosmtpd chromium chromium-driver gdb)

ensure_test_tools() {
  log "ensuring test tools (${KAFKUBE_TEST_PACKAGES[*]})"
  ensure_apt_packages "${KAFKUBE_TEST_PACKAGES[@]}"
}

# schemathesis (PyPI), which the `openapi` leg of scripts/test runs against every app's OpenAPI
# document: pinned, in a private virtualenv under target/tools (nothing system-wide). Exports
# KAFKUBE_SCHEMATHESIS, the command the test runs.
KAFKUBE_SCHEMATHESIS_VERSION=4.32.5
ensure_schemathesis() {
  local venv="$PWD/target/tools/schemathesis"
  export KAFKUBE_SCHEMATHESIS="$venv/bin/schemathesis"
  if "$KAFKUBE_SCHEMATHESIS" --version 2>/dev/null | grep -qF "$KAFKUBE_SCHEMATHESIS_VERSION"; then
    return 0
  fi
  if skip_provision; then
    warn "KAFKUBE_SKIP_PROVISION=1, not installing schemathesis into target/tools"
    return 1
  fi
  command -v python3 >/dev/null 2>&1 || ensure_apt_packages python3
  log "installing schemathesis $KAFKUBE_SCHEMATHESIS_VERSION into target/tools/schemathesis (PyPI)"
  rm -rf "$venv"
  if ! python3 -m venv "$venv" >&2; then
    # Debian's python3 keeps venv in a package of its own.
    ensure_apt_packages python3-venv
    python3 -m venv "$venv" >&2 || return 1
  fi
  "$venv/bin/pip" install -q --disable-pip-version-check "schemathesis==$KAFKUBE_SCHEMATHESIS_VERSION" >&2
}

# helm, for the chart's checks (scripts/check-deploy, scripts/render-k8s): built from its Go module
# through the Go module proxy into target/tools/bin (no download from anywhere else). Sets HELM.
KAFKUBE_HELM_VERSION=v3.19.5
ensure_helm() {
  export HELM="$PWD/target/tools/bin/helm"
  # `go install` leaves the version out of the binary; a stamp beside it says which it is.
  if [ -x "$HELM" ] && [ "$(cat "$HELM.version" 2>/dev/null)" = "$KAFKUBE_HELM_VERSION" ]; then
    return 0
  fi
  ensure_go || die "install Go, or set KAFKUBE_SKIP_HELM=1 to skip the chart's checks"
  log "building helm $KAFKUBE_HELM_VERSION into target/tools/bin (go install, Go module proxy; a few minutes the first time)"
  GOBIN="$PWD/target/tools/bin" GOFLAGS=-mod=mod go install "helm.sh/helm/v3/cmd/helm@$KAFKUBE_HELM_VERSION" >&2 ||
    die "cannot build helm $KAFKUBE_HELM_VERSION with go install"
  echo "$KAFKUBE_HELM_VERSION" > "$HELM.version"
}

# Prometheus and promtool, for the alerting rules' checks (scripts/check-deploy) and the scrape
# test (crates/kafkube/tests/prometheus.rs): built from their Go module through the Go module
# proxy into target/tools/bin, with DNS service discovery (compose's Prometheus finds replicas with
# it) and without the cloud ones, which Kafkube's configs do not use and which would triple the
# build. Sets PROMETHEUS and PROMTOOL.
KAFKUBE_PROMETHEUS_VERSION=v0.316.0 # Prometheus 3.16
KAFKUBE_PROMETHEUS_TAGS=remove_all_sd,enable_dns_sd
ensure_prometheus() {
  export PROMETHEUS="$PWD/target/tools/bin/prometheus" PROMTOOL="$PWD/target/tools/bin/promtool"
  if [ -x "$PROMETHEUS" ] && [ -x "$PROMTOOL" ] &&
    [ "$(cat "$PROMETHEUS.version" 2>/dev/null)" = "$KAFKUBE_PROMETHEUS_VERSION $KAFKUBE_PROMETHEUS_TAGS" ]; then
    return 0
  fi
  ensure_go || return 1
  log "building prometheus and promtool $KAFKUBE_PROMETHEUS_VERSION into target/tools/bin (go install, Go module proxy; a few minutes the first time)"
  GOBIN="$PWD/target/tools/bin" GOFLAGS=-mod=mod go install -tags "$KAFKUBE_PROMETHEUS_TAGS" \
    "github.com/prometheus/prometheus/cmd/prometheus@$KAFKUBE_PROMETHEUS_VERSION" \
    "github.com/prometheus/prometheus/cmd/promtool@$KAFKUBE_PROMETHEUS_VERSION" >&2 || {
    warn "cannot build prometheus $KAFKUBE_PROMETHEUS_VERSION with go install"
    return 1
  }
  echo "$KAFKUBE_PROMETHEUS_VERSION $KAFKUBE_PROMETHEUS_TAGS" > "$PROMETHEUS.version"
}

# Puts Go on PATH (the official tarball's place is often not on it in non-login shells, e.g. in
# CI); fails with what to do when there is none.
ensure_go() {
  if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
    PATH="/usr/local/go/bin:$PATH"
  fi
  command -v go >/dev/null 2>&1 && return 0
  warn "Go (1.24 or newer) is not installed: helm, prometheus and promtool are built with it"
  return 1
}

# The Rust toolchain comes from rustup (rust-toolchain.toml pins it); Debian's cargo is too old.
ensure_cargo() {
  # rustup's default location is often not on PATH in non-login shells, e.g. in CI.
  if ! command -v cargo >/dev/null 2>&1 && [ -x "${HOME:-}/.cargo/bin/cargo" ]; then
    PATH="$HOME/.cargo/bin:$PATH"
  fi
  command -v cargo >/dev/null 2>&1 ||
    die "cargo not found; install rustup (https://rustup.rs), rust-toolchain.toml selects the toolchain"
}

# pg_login_ok URL: can psql log in there and run a query? (-w: never prompt for a password)
pg_login_ok() {
  command -v psql >/dev/null 2>&1 &&
    PGCONNECT_TIMEOUT=5 psql -X -w -q -A -t -d "$1" -c 'select 1' >/dev/null 2>&1
}

# Newest PostgreSQL server version installed by the Debian packages, e.g. "15" (empty if none).
pg_server_version() {
  local bin v
  for bin in /usr/lib/postgresql/*/bin/postgres; do
    if [ -x "$bin" ]; then
      v=${bin#/usr/lib/postgresql/}
      echo "${v%%/*}"
    fi
  done | sort -V | tail -n 1
}

# Make sure the tests can reach PostgreSQL and export KAFKUBE_TEST_POSTGRES_URL for them.
ensure_postgres() {
  if [ -n "${KAFKUBE_TEST_POSTGRES_URL:-}" ]; then
    # The URL may hold a password, so it is never printed.
    log "checking PostgreSQL at \$KAFKUBE_TEST_POSTGRES_URL"
    command -v psql >/dev/null 2>&1 || ensure_apt_packages postgresql-client
    pg_login_ok "$KAFKUBE_TEST_POSTGRES_URL" ||
      die "cannot log in to PostgreSQL at \$KAFKUBE_TEST_POSTGRES_URL with psql"
    export KAFKUBE_TEST_POSTGRES_URL
    return 0
  fi

  log "ensuring PostgreSQL on 127.0.0.1:5432"
  export KAFKUBE_TEST_POSTGRES_URL=$KAFKUBE_DEFAULT_POSTGRES_URL
  if pg_login_ok "$KAFKUBE_TEST_POSTGRES_URL"; then
    log "PostgreSQL is up, using $KAFKUBE_TEST_POSTGRES_URL"
    return 0
  fi
  if skip_provision; then
    warn "KAFKUBE_SKIP_PROVISION=1 and no PostgreSQL accepts $KAFKUBE_TEST_POSTGRES_URL; tests that need it will fail"
    return 0
  fi
  is_root || die "no PostgreSQL accepts $KAFKUBE_TEST_POSTGRES_URL and we are not root to set one up." \
    "Install and start it (sudo apt-get install -y postgresql postgresql-client)," \
    "put 'host all all 127.0.0.1/32 trust' first in its pg_hba.conf and reload," \
    "or point KAFKUBE_TEST_POSTGRES_URL at an existing server"
  provision_postgres
}

# Install (if needed), configure and start the local Debian cluster <newest version>/main so that
# it listens on 127.0.0.1:5432 and trusts TCP logins from 127.0.0.1 and ::1. Root only.
provision_postgres() {
  # Docker images have no locale set (the new cluster would be SQL_ASCII), and a locale
  # forwarded by ssh but not generated here makes initdb fail; C.UTF-8 always exists.
  local -x LC_ALL=C.UTF-8
  local v conf hba port current listen action restart=0 deadline

  if ! command -v pg_ctlcluster >/dev/null 2>&1 || [ -z "$(pg_server_version)" ]; then
    ensure_apt_packages postgresql postgresql-client
  fi
  v=$(pg_server_version)
  [ -n "$v" ] || die "no PostgreSQL server under /usr/lib/postgresql even after installing it"
  conf=/etc/postgresql/$v/main

  if [ ! -e "$conf/postgresql.conf" ]; then
    log "creating PostgreSQL $v cluster main"
    pg_createcluster -p 5432 "$v" main >&2
  fi
  if pg_isready -q -h 127.0.0.1 -p 5432 &&
    ! pg_ctlcluster --skip-systemctl-redirect "$v" main status >/dev/null 2>&1; then
    die "a PostgreSQL other than cluster $v/main answers on 127.0.0.1:5432 but refuses" \
      "$KAFKUBE_TEST_POSTGRES_URL; allow it or set KAFKUBE_TEST_POSTGRES_URL"
  fi

  # A cluster created earlier may use another port (pg_createcluster takes the next free
  # one) or not listen on localhost. A conf.d drop-in wins over postgresql.conf and over
  # earlier drop-ins; other addresses it listened on are kept.
  port=$(pg_conftool -s "$v" main show port 2>/dev/null || true)
  current=$(pg_conftool -s "$v" main show listen_addresses 2>/dev/null || echo localhost)
  current=${current// /}
  case ",$current," in
    *,localhost,* | *,127.0.0.1,* | *,0.0.0.0,* | *,\*,*) listen=$current ;;
    *) listen=${current:+$current,}localhost ;;
  esac
  if [ "${port:-5432}" != 5432 ] || [ "$listen" != "$current" ]; then
    log "making cluster $v/main listen on 127.0.0.1:5432 ($conf/conf.d/99-kafkube-test.conf)"
    mkdir -p "$conf/conf.d"
    printf '%s\n' "# written by kafkube scripts/lib.sh: the tests expect 127.0.0.1:5432" \
      "port = 5432" "listen_addresses = '$listen'" >"$conf/conf.d/99-kafkube-test.conf"
    restart=1
  fi

  hba=$(pg_conftool -s "$v" main show hba_file 2>/dev/null || echo "$conf/pg_hba.conf")
  ensure_hba_trust "$hba"

  if pg_ctlcluster --skip-systemctl-redirect "$v" main status >/dev/null 2>&1; then
    if [ "$restart" = 1 ]; then action=restart; else action=reload; fi
  else
    action=start
  fi
  # --skip-systemctl-redirect: run pg_ctl directly, which also works where systemd is not PID 1.
  log "pg_ctlcluster $v main $action"
  pg_ctlcluster --skip-systemctl-redirect "$v" main "$action" >&2 ||
    die "pg_ctlcluster $v main $action failed; see /var/log/postgresql/postgresql-$v-main.log"

  # Also covers the moment between a reload and the server applying the new pg_hba.conf.
  deadline=$((SECONDS + 30))
  until pg_login_ok "$KAFKUBE_TEST_POSTGRES_URL"; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      pg_isready -q -h 127.0.0.1 -p 5432 ||
        die "PostgreSQL not ready on 127.0.0.1:5432 after 30 s; see /var/log/postgresql/postgresql-$v-main.log"
      die "PostgreSQL is up but refuses $KAFKUBE_TEST_POSTGRES_URL; check $hba"
    fi
    sleep 1
  done
  log "PostgreSQL $v is up, using $KAFKUBE_TEST_POSTGRES_URL"
}

# ensure_hba_trust FILE: put trust rules for TCP logins from 127.0.0.1 and ::1 at the top of
# FILE unless it has them already. pg_hba.conf is first-match, hence at the top.
ensure_hba_trust() {
  local hba=$1 rule tmp missing=()
  for rule in 'host all all 127.0.0.1/32 trust' 'host all all ::1/128 trust'; do
    # `$1 = $1` squeezes the whitespace of each line so that the rule compares as a string.
    awk -v rule="$rule" '{ $1 = $1 } $0 == rule { found = 1 } END { exit !found }' "$hba" ||
      missing+=("$rule")
  done
  if [ "${#missing[@]}" -eq 0 ]; then
    return 0
  fi
  log "trusting TCP logins from localhost in $hba"
  tmp=$(mktemp)
  { printf '%s\n' "# added by kafkube scripts/lib.sh for the test suite" "${missing[@]}"; cat "$hba"; } >"$tmp"
  cat "$tmp" >"$hba" # rewrite in place, keeping the file's owner and mode
  rm -f "$tmp"
}

# Drop the per-test databases (kt_*) that earlier runs left behind: each test creates its own
# database and cannot drop it itself while its pool is open. Do not run two suites at once
# against the same server.
drop_stale_test_databases() {
  local url=${KAFKUBE_TEST_POSTGRES_URL:-$KAFKUBE_DEFAULT_POSTGRES_URL} db
  command -v psql >/dev/null 2>&1 || return 0
  while read -r db; do
    [ -n "$db" ] || continue
    psql -w -q "$url" -c "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null 2>&1 || true
  done < <(psql -w -At "$url" -c "SELECT datname FROM pg_database WHERE datname LIKE 'kt\_%'" 2>/dev/null || true)
  # The same on the test MariaDB started by scripts/mariadb.
  if [ -z "${KAFKUBE_TEST_MYSQL_URL:-}" ] || [ "$KAFKUBE_TEST_MYSQL_URL" = "$(bash scripts/mariadb url)" ]; then
    while read -r db; do
      [ -n "$db" ] || continue
      bash scripts/mariadb sql -e "DROP DATABASE IF EXISTS \`$db\`" >/dev/null 2>&1 || true
    done < <(bash scripts/mariadb sql -N -e "SHOW DATABASES LIKE 'kt\\_%'" 2>/dev/null || true)
  fi
}

# Java 17+ and Maven, which scripts/kafka needs to fetch and run Apache Kafka. Installs Debian's
# packages when missing (root only). Prints why and returns 1 when they are still missing.
ensure_java_maven() {
  local missing=()
  command -v java >/dev/null 2>&1 || [ -x "${JAVA_HOME:-/nonexistent}/bin/java" ] || missing+=(openjdk-17-jre-headless)
  command -v mvn >/dev/null 2>&1 || [ -n "${KAFKA_HOME:-}" ] || missing+=(maven)
  if [ "${#missing[@]}" -eq 0 ]; then
    return 0
  fi
  if is_root && ! skip_provision; then
    ensure_apt_packages "${missing[@]}"
    return 0
  fi
  warn "real Kafka needs ${missing[*]} (Java 17+ to run it, Maven to fetch it from Maven Central);" \
    "install them (sudo apt-get install -y ${missing[*]}) or set KAFKA_HOME to an unpacked Kafka"
  return 1
}

# A private MariaDB for the ETL tests: its own data directory (target/mariadb), its own port
# (KAFKUBE_TEST_MARIADB_PORT, default 23306) and socket, the binary log on in ROW format (what
# the CDC service reads), a user kafkube/kafkube with every privilege. Exports
# KAFKUBE_TEST_MYSQL_URL (mysql://kafkube:kafkube@127.0.0.1:PORT) for the tests. With
# KAFKUBE_TEST_MYSQL_URL already set, that server is used as it is (only checked).
# Installs mariadb-server when missing (root only). Stop it with: scripts/mariadb stop
ensure_mariadb() {
  if [ -n "${KAFKUBE_TEST_MYSQL_URL:-}" ]; then
    log "using MariaDB/MySQL at \$KAFKUBE_TEST_MYSQL_URL"
    export KAFKUBE_TEST_MYSQL_URL
    return 0
  fi
  if ! command -v mariadbd >/dev/null 2>&1 && ! [ -x /usr/sbin/mariadbd ]; then
    if skip_provision || ! is_root; then
      warn "no MariaDB server (mariadbd) installed; the ETL tests that need it will fail." \
        "Install it with: sudo apt-get install -y mariadb-server mariadb-client"
      return 0
    fi
    ensure_apt_packages mariadb-server mariadb-client
  fi
  bash scripts/mariadb start >&2 || die "MariaDB did not start; see target/mariadb/error.log"
  KAFKUBE_TEST_MYSQL_URL=$(bash scripts/mariadb url)
  export KAFKUBE_TEST_MYSQL_URL
}
