#!/usr/bin/env bash
# Install Debian's chromium for the MLflow UI test (tests/test_mlflow_ui.py drives it with
# Playwright through executable_path; Playwright's own browser download cannot run here).
set -euo pipefail
command -v chromium >/dev/null && exit 0
bash "$(dirname "$0")/apt-install.sh" "the MLflow UI test" chromium || {
  echo "install a Chromium and put it on PATH" >&2
  exit 1
}
