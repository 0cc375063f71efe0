#!/usr/bin/env bash
# Installs the Debian packages herald's build and tests need, when missing.
# `make test` and `make generate` call it; it is a no-op on a machine that
# has them. One package list, so every test's real peer is installed here.
set -euo pipefail

packages=(
  protobuf-compiler   # protoc, for make generate / the generated-code check
  bsdutils            # logger, a real syslog sender for the e2e tests
  postgresql          # a real PostgreSQL server for the postgres sink's tests (started by actors/sink/postgres/pgtest)
  rsyslog             # a real syslog collector for the syslog sink's tests (started by actors/sink/syslog/rsyslogtest)
  rsyslog-relp        # its RELP listener (imrelp)
  rsyslog-gnutls      # its TLS listener (imtcp with the gtls stream driver)
  prosody             # a real XMPP server for the xmpp publisher's tests (started by actors/xmpp/prosodytest; certificates made in Go)
  tmux                # a real terminal to drive `herald top` in (e2e/top_test.go)
  # syslog-ng conflicts with rsyslog as a package; `make bench` (services/loadgen/compare.sh)
  # unpacks syslog-ng-core with apt-get download + dpkg -x and needs its libraries:
  libivykis0 libnet1 libwrap0 libglib2.0-0 libpcre3 libjson-c5 libcap2 libssl3 libsystemd0
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "deps: missing Debian packages: ${missing[*]}; install them (apt-get install ${missing[*]}) or run as root" >&2
  exit 1
fi
echo "deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
# Services from these packages must not start on install: tests start their own.
policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod +x "$policy" && created_policy=1
fi
trap '[ $created_policy -eq 1 ] && rm -f "$policy"' EXIT
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
