#!/usr/bin/env bash
# Install Debian packages with apt-get (sudo when not root): `apt-install.sh WHAT PACKAGE...`.
# WHAT names what they are for in the messages. Exits 3 when there is no apt-get here.
set -euo pipefail
what=$1
shift
if ! command -v apt-get >/dev/null; then
  echo "$what: no apt-get here to install $*" >&2
  exit 3
fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "Installing $* with apt-get ($what)..." >&2
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null
