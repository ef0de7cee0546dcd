/* SPDX-License-Identifier: MIT */
/*
 * TLS on byte channels (GnuTLS): credentials, and turning a connected socket
 * channel (tcp:, unix:) into an encrypted, authenticated one.
 *
 * Two kinds of credentials, as QEMU's tls-creds-x509 and tls-creds-psk:
 *
 *  x509: a directory in QEMU's layout.
 *      ca-cert.pem       the CA that signs the peer's certificate (both sides;
 *                        the server's certificate is always verified)
 *      ca-crl.pem        optional revocation list
 *      server-cert.pem   server: its certificate chain
 *      server-key.pem    server: its private key
 *      client-cert.pem   client: its certificate, optional unless the server
 *      client-key.pem    asks for one (verify_peer)
 *    The client checks that the server's certificate is signed by the CA, is
 *    valid now, and names the expected host (DNS name or IP address in the
 *    subject alternative names, or the common name).
 *
 *  psk: a key file of "identity:hexkey" lines (as QEMU's keys.psk; keys are
 *    hex, 16 bytes or more advised). The client presents @psk_identity, or
 *    the first identity of the file; the server accepts any identity of its
 *    file with the matching key. A wrong key fails the handshake.
 *
 * In the migration, the source is the TLS client and the destination the
 * TLS server, on the main stream and on every data connection alike.
 *
 * Errors: FERRY_EAUTH when the peer was not trusted (certificate not signed
 * by the CA, expired, wrong host name, missing client certificate, PSK key
 * mismatch); FERRY_ETLS when the handshake failed for another reason (the
 * peer does not speak TLS, no common cipher, a broken record); -ENOENT /
 * -EACCES / -EINVAL for credential files that cannot be read or parsed.
 * Every failure is logged (module "channels") with what went wrong, as
 * GnuTLS and the certificate check say it.
 *
 * Threads: credentials are immutable once created and may be shared by any
 * number of channels in any threads. A TLS channel keeps the channel
 * contract of <ferry/channel.h>: one reading and one writing thread at once.
 */
#ifndef FERRY_TLS_H
#define FERRY_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct ferry_channel;
struct ferry_tls_creds;

/* Which end of the handshake: the source connects (client), the destination accepts. */
enum ferry_tls_role {
	FERRY_TLS_CLIENT = 1,
	FERRY_TLS_SERVER = 2,
};

/**
 * struct ferry_tls_attr - where the credentials are and how to check the peer.
 * Exactly one of @x509_dir and @psk_file is set. Strings are copied by
 * ferry_tls_creds_create() and by ferry_engine_set_tls().
 * @x509_dir:     x509: the directory (layout above)
 * @psk_file:     psk: the key file
 * @psk_identity: psk, client: the identity to present (NULL: the first
 *                line's)
 * @hostname:     client, x509: the name the server's certificate must carry;
 *                NULL: the host of the URI connected to (a unix: URI has
 *                none, so it needs this)
 * @verify_peer:  server, x509: ask for a client certificate and refuse a
 *                client without a valid one signed by the CA
 */
struct ferry_tls_attr {
	const char *x509_dir;
	const char *psk_file;
	const char *psk_identity;
	const char *hostname;
	bool verify_peer;
};

/* TLS exporter output the engine derives for the RDMA authenticator (bytes). */
#define FERRY_TLS_EXPORT_MAX 64

/**
 * ferry_tls_creds_create() - load credentials for one role.
 * @role: FERRY_TLS_CLIENT or FERRY_TLS_SERVER.
 * @attr: what to load; the files are read now, so that a missing or broken
 *        one is reported before any connection.
 * @out: the credentials.
 *
 * Thread context: any thread.
 * Returns 0, -EINVAL (neither or both of x509/psk, a file that does not
 * parse, a server x509 without a key), -ENOENT, -EACCES, or -ENOMEM.
 */
int ferry_tls_creds_create(enum ferry_tls_role role, const struct ferry_tls_attr *attr,
			   struct ferry_tls_creds **out);

/** ferry_tls_creds_destroy() - free; NULL allowed. No channel may still use them. */
void ferry_tls_creds_destroy(struct ferry_tls_creds *creds);

/** ferry_tls_creds_role() - the role the credentials were loaded for. */
enum ferry_tls_role ferry_tls_creds_role(const struct ferry_tls_creds *creds);

/** ferry_tls_creds_kind() - "x509" or "psk". */
const char *ferry_tls_creds_kind(const struct ferry_tls_creds *creds);

/**
 * ferry_channel_start_tls() - run the TLS handshake on a connected socket
 * channel and carry every later byte inside TLS.
 * @ch: a tcp:, unix: or socket fd: channel, before any byte was read or
 *      written on it.
 * @creds: the credentials; they must outlive the channel.
 * @hostname: client, x509: the name to check the server's certificate
 *      against (overrides the one in the credentials); NULL to use the
 *      credentials' one. A client with x509 credentials and no name at all
 *      fails (-EINVAL): the certificate would prove nothing.
 * @timeout_ms: the longest the handshake may take; negative: no limit.
 *
 * After success, ferry_channel_writev() encrypts (GnuTLS copies the bytes
 * into its records: a TLS channel is never zero-copy),
 * ferry_channel_read() decrypts, ferry_channel_shutdown_write() sends the
 * TLS close_notify before the FIN. After a failure the channel is unusable
 * (destroy it); the peer sees the connection close.
 *
 * Thread context: the thread that owns the channel; blocks up to
 * @timeout_ms. ferry_channel_shutdown() from another thread cuts it short
 * (-ECANCELED).
 * Returns 0, FERRY_EAUTH, FERRY_ETLS, -ETIMEDOUT, -ECANCELED, -EINVAL (not a
 * socket channel, already TLS, no host name), or -ENOMEM.
 */
int ferry_channel_start_tls(struct ferry_channel *ch, const struct ferry_tls_creds *creds,
			    const char *hostname, int timeout_ms);

/** ferry_channel_is_tls() - whether the channel runs TLS. Thread context: any. */
bool ferry_channel_is_tls(const struct ferry_channel *ch);

/**
 * ferry_channel_tls_info() - the negotiated protocol and cipher, for logs
 * ("TLS1.3 AES-256-GCM x509"); "" when the channel is not TLS.
 * Thread context: any thread, after ferry_channel_start_tls(). Valid until
 * close/destroy.
 */
const char *ferry_channel_tls_info(const struct ferry_channel *ch);

/**
 * ferry_channel_tls_export() - a secret both ends of the TLS session derive
 * alike and nobody else can (RFC 5705 / RFC 8446 exporter): how the RDMA
 * authenticator is keyed from the TLS-protected main stream.
 * @label: the exporter label, e.g. FERRY_RDMA_AUTH_LABEL ("EXPORTER-" names).
 * @context, @context_len: bound into the output (the migration id).
 * @out, @len: where to write, 1..FERRY_TLS_EXPORT_MAX bytes.
 *
 * Thread context: any thread that may use the channel, after the handshake.
 * Returns 0, -EINVAL (not a TLS channel, bad length), or FERRY_ETLS.
 */
int ferry_channel_tls_export(struct ferry_channel *ch, const char *label, const void *context,
			     size_t context_len, void *out, size_t len);

#ifdef __cplusplus
}
#endif
#endif
