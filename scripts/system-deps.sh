#!/usr/bin/env bash
# Install the system programs the tests use (kcat, PostgreSQL server, Chromium) from
# Debian packages, only when they are missing.
set -euo pipefail

need=()
command -v kcat >/dev/null || need+=(kcat)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
command -v java >/dev/null || need+=(openjdk-17-jre-headless)
# headless Chromium + its WebDriver: the device verification page is signed in with a real browser
command -v chromium >/dev/null || need+=(chromium)
command -v chromedriver >/dev/null || need+=(chromium-driver)

[ ${#need[@]} -eq 0 ] && exit 0
if ! command -v apt-get >/dev/null; then
    echo "error: missing ${need[*]} and no apt-get here; install them with your package manager" >&2
    exit 1
fi
sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
echo "installing ${need[*]} from Debian packages"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
