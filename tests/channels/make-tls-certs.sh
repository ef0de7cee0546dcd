#!/bin/sh
# SPDX-License-Identifier: MIT
# make-tls-certs.sh DIR: x509 credentials for the TLS tests, made with certtool
# (gnutls-bin), in QEMU's layout. ECDSA keys: quick to make.
#   DIR/good/          ca-cert.pem, server-cert.pem/key (localhost, 127.0.0.1, ::1),
#                      client-cert.pem/key: everything right
#   DIR/otherca/       ca-cert.pem of another CA, and a client certificate it signed
#                      (client-cert.pem/key): a stranger to DIR/good
#   DIR/wrongname/     good CA; a server certificate for elsewhere.example only
#   DIR/expiredclient/ good CA; a client certificate that expired in 2020
#   DIR/untrustedclient/ good CA; a client certificate signed by the other CA
#   DIR/psk.key        ferry:<32 random bytes in hex>
#   DIR/psk-wrong.key  ferry:<another key>
set -eu
D=$1
mkdir -p "$D/good" "$D/otherca" "$D/wrongname" "$D/expiredclient"
cd "$D"
key() { certtool --generate-privkey --key-type=ecdsa --outfile "$1" 2>/dev/null; }
tmpl() { printf '%s\n' "$@" > t.tmpl; }

# The good CA and the other CA.
key good/ca-key.pem
tmpl 'cn = "ferry test CA"' 'ca' 'cert_signing_key' 'expiration_days = 30'
certtool --generate-self-signed --load-privkey good/ca-key.pem --template t.tmpl \
	--outfile good/ca-cert.pem 2>/dev/null
key otherca/ca-key.pem
tmpl 'cn = "another CA"' 'ca' 'cert_signing_key' 'expiration_days = 30'
certtool --generate-self-signed --load-privkey otherca/ca-key.pem --template t.tmpl \
	--outfile otherca/ca-cert.pem 2>/dev/null

# sign DIR-OF-CA OUT-PREFIX template lines...
sign() {
	ca=$1
	out=$2
	shift 2
	tmpl "$@"
	key "$out-key.pem"
	certtool --generate-certificate --load-privkey "$out-key.pem" --load-ca-certificate \
		"$ca/ca-cert.pem" --load-ca-privkey "$ca/ca-key.pem" --template t.tmpl \
		--outfile "$out-cert.pem" 2>/dev/null
}
sign good good/server 'cn = "localhost"' 'dns_name = "localhost"' 'ip_address = "127.0.0.1"' \
	'ip_address = "::1"' 'tls_www_server' 'encryption_key' 'signing_key' 'expiration_days = 30'
sign good good/client 'cn = "ferry source"' 'tls_www_client' 'encryption_key' 'signing_key' \
	'expiration_days = 30'
sign otherca otherca/client 'cn = "stranger"' 'tls_www_client' 'encryption_key' 'signing_key' \
	'expiration_days = 30'
sign good wrongname/server 'cn = "elsewhere.example"' 'dns_name = "elsewhere.example"' \
	'tls_www_server' 'encryption_key' 'signing_key' 'expiration_days = 30'
sign good expiredclient/client 'cn = "old source"' 'tls_www_client' 'encryption_key' \
	'signing_key' 'activation_date = "2019-01-01 00:00:00"' \
	'expiration_date = "2020-01-01 00:00:00"'
cp good/ca-cert.pem wrongname/ca-cert.pem
cp good/ca-cert.pem expiredclient/ca-cert.pem
mkdir -p untrustedclient
cp good/ca-cert.pem untrustedclient/ca-cert.pem
cp otherca/client-cert.pem otherca/client-key.pem untrustedclient/
rm -f t.tmpl

hex() { od -An -N32 -tx1 /dev/urandom | tr -d ' \n'; }
printf 'ferry:%s\n' "$(hex)" > psk.key
printf 'ferry:%s\n' "$(hex)" > psk-wrong.key
chmod 600 psk.key psk-wrong.key */*-key.pem
