#!/usr/bin/env bash
# Makes the TLS material of the secured test servers (scripts/kafka.sh start
# --secure, scripts/redis.sh start --secure) with openssl, in DIR:
#
#   ca.pem, ca.key                  the CA that signs the server certificates
#   server.pem, server.key          the server's certificate: CN localhost,
#                                   SAN DNS:localhost and IP:127.0.0.1
#   server-bundle.pem               server.key then server.pem (Kafka's PEM
#                                   keystore wants both in one file)
#   wrong-host.pem, wrong-host.key  signed by the same CA but for another host
#                                   name only (DNS:wrong-host.invalid): a
#                                   client that dials 127.0.0.1 must refuse it
#   wrong-host-bundle.pem           its key then its certificate
#   other-ca.pem, other-ca.key      a second CA that signed nothing the servers
#                                   present: a client that trusts only it must
#                                   refuse the servers ("unknown CA")
#
#   scripts/certs.sh DIR
#
# Idempotent: existing files are kept while they stay valid for another 7
# days; otherwise everything is made again. Keys are EC P-256, unencrypted,
# PKCS#8, readable by their owner only. For tests and local development only.
set -euo pipefail

(($# == 1)) || {
  echo "usage: $0 DIR" >&2
  exit 2
}
readonly DIR=$1
readonly DAYS=825

log() { printf 'certs: %s\n' "$*" >&2; }

command -v openssl >/dev/null 2>&1 || {
  log "error: openssl is missing (Debian: apt-get install openssl)"
  exit 1
}

fresh() { # every file exists and every certificate stays valid for 7 days
  local f
  for f in ca.pem ca.key server.pem server.key server-bundle.pem wrong-host.pem wrong-host.key \
    wrong-host-bundle.pem other-ca.pem other-ca.key; do
    [[ -s $DIR/$f ]] || return 1
  done
  for f in ca.pem server.pem wrong-host.pem other-ca.pem; do
    openssl x509 -in "$DIR/$f" -noout -checkend $((7 * 86400)) >/dev/null 2>&1 || return 1
  done
}

mkdir -p "$DIR"
chmod 700 "$DIR"
if fresh; then
  exit 0
fi

umask 077
tmp=$(mktemp -d "$DIR/.new.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

newkey() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

ca() { # NAME CN
  newkey "$tmp/$1.key"
  openssl req -x509 -new -key "$tmp/$1.key" -sha256 -days "$DAYS" -subj "/CN=$2" \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
    -out "$tmp/$1.pem" 2>/dev/null
}

leaf() { # NAME CN SAN
  newkey "$tmp/$1.key"
  openssl req -new -key "$tmp/$1.key" -subj "/CN=$2" -out "$tmp/$1.csr" 2>/dev/null
  printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=%s\n' "$3" >"$tmp/$1.ext"
  openssl x509 -req -in "$tmp/$1.csr" -CA "$tmp/ca.pem" -CAkey "$tmp/ca.key" -CAcreateserial \
    -days "$DAYS" -sha256 -extfile "$tmp/$1.ext" -out "$tmp/$1.pem" 2>/dev/null
  cat "$tmp/$1.key" "$tmp/$1.pem" >"$tmp/$1-bundle.pem"
  rm -f "$tmp/$1.csr" "$tmp/$1.ext"
}

ca ca "Sluice test CA"
ca other-ca "Sluice other test CA"
leaf server localhost "DNS:localhost,IP:127.0.0.1"
leaf wrong-host wrong-host.invalid "DNS:wrong-host.invalid"
rm -f "$tmp"/*.srl
chmod 600 "$tmp"/*
chmod 644 "$tmp"/*.pem
chmod 600 "$tmp"/*-bundle.pem
mv -f "$tmp"/* "$DIR/"
log "made a CA, a server certificate for localhost/127.0.0.1, one for wrong-host.invalid and a second CA in $DIR"
