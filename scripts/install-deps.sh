#!/usr/bin/env bash
# Installs what the full test suite needs when it is missing: the real peers (Dovecot, Postfix,
# Cyrus SASL, swaks, msmtp, openssl) from Debian's packages, and cargo-fuzz / cargo-nextest from crates.io.
# Idempotent: a machine that already has everything is left untouched.
set -euo pipefail

need_apt=()
for pkg in dovecot-core dovecot-pop3d postfix sasl2-bin libsasl2-modules libsasl2-modules-db \
           swaks libauthen-ntlm-perl libnet-ssleay-perl libio-socket-ssl-perl openssl fetchmail msmtp; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || need_apt+=("$pkg")
done

if [ ${#need_apt[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO="sudo"
  # Package post-install scripts try to start system services; refuse that (only if no policy
  # exists yet, and leave it in place for later installs).
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod +x /usr/sbin/policy-rc.d
  fi
  echo "postfix postfix/main_mailer_type select No configuration" | $SUDO debconf-set-selections
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
fi

if ! cargo nextest --version >/dev/null 2>&1; then
  cargo install --locked cargo-nextest
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install --locked cargo-fuzz
fi
