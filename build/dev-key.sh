#!/usr/bin/env bash
# Development update key (Ed25519), made once per build folder. The private key stays in build/out (ignored by
# git); the public key goes into the image. A release build supplies its own key pair instead.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
keys="$top/build/out/${ARCH:-amd64}/keys"
mkdir -p "$keys"
if [ ! -f "$keys/update-key.pem" ]; then
  (umask 077 && openssl genpkey -algorithm ed25519 -out "$keys/update-key.pem")
  openssl pkey -in "$keys/update-key.pem" -pubout -out "$keys/update-pub.pem"
  echo "generated development update key in $keys"
fi
