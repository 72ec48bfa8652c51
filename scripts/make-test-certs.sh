#!/usr/bin/env bash
# Makes a test PKI in DIR with openssl: a CA, a server certificate for localhost/127.0.0.1,
# a client certificate (subject O=Sluice, CN=client), and a second, unrelated CA with its
# own client certificate. Keys are EC P-256 (fast to make), unencrypted, valid 30 days.
# *-keystore.pem files hold the key then the certificate, as ssl.keystore.location takes.
set -euo pipefail
dir="${1:?usage: make-test-certs.sh DIR}"
mkdir -p "$dir"
cd "$dir"
ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)

ca() { # name subject
  openssl req -x509 "${ec[@]}" -keyout "$1.key" -out "$1.pem" -days 30 -subj "$2" \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
}

leaf() { # name subject ca serial extensions
  openssl req "${ec[@]}" -keyout "$1.key" -out "$1.csr" -subj "$2" 2>/dev/null
  printf '%s\n' "$5" > "$1.ext"
  openssl x509 -req -in "$1.csr" -CA "$3.pem" -CAkey "$3.key" -set_serial "$4" -days 30 \
    -extfile "$1.ext" -out "$1.pem" 2>/dev/null
  cat "$1.key" "$1.pem" > "$1-keystore.pem"
  rm -f "$1.csr" "$1.ext"
}

ca ca "/O=Sluice/CN=Sluice Test CA"
ca other-ca "/O=Elsewhere/CN=Unrelated CA"
leaf server "/O=Sluice/CN=localhost" ca "$RANDOM$RANDOM" \
  "$(printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth')"
leaf client "/O=Sluice/CN=client" ca "$RANDOM$RANDOM" "extendedKeyUsage=clientAuth"
leaf other-client "/O=Elsewhere/CN=intruder" other-ca "$RANDOM$RANDOM" "extendedKeyUsage=clientAuth"
