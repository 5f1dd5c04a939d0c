#!/usr/bin/env bash
# Install Debian's chromium for the MLflow UI test (tests/test_mlflow_ui.py drives it with
# Playwright through executable_path; Playwright's own browser download cannot run here).
set -euo pipefail
if command -v chromium >/dev/null; then
  exit 0
fi
if ! command -v apt-get >/dev/null; then
  echo "chromium is missing and there is no apt-get here: install a Chromium and put it on PATH" >&2
  exit 1
fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "Installing chromium with apt-get..." >&2
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >/dev/null
