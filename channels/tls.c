/* SPDX-License-Identifier: MIT */
/*
 * TLS on socket channels with GnuTLS: loading x509 and PSK credentials, the
 * handshake with its checks, and the ops table a channel switches to once
 * the handshake is done.
 *
 * The socket keeps its blocking mode; GnuTLS reads and writes it through
 * our own push/pull functions, which send with MSG_NOSIGNAL, wait out
 * EAGAIN on a non-blocking fd: descriptor, and keep errno for the error
 * we report. A TLS channel is never zero-copy: GnuTLS encrypts from the
 * caller's buffers into its records and decrypts into its own buffer
 * before copying out; small pieces of a batch are first gathered into a
 * record-sized staging buffer so that a batch of headers and pages goes
 * out in full records rather than one record per iovec.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gnutls/gnutls.h>
#include <gnutls/x509.h>

#include <ferry/error.h>
#include <ferry/tls.h>

#include "internal.h"

/* The largest TLS record payload: the staging buffer holds one record. */
#define TLS_RECORD_MAX 16384
#define PSK_MAX_KEYS   64
#define PSK_KEY_MAX    256
#define PSK_ID_MAX     128

/* QEMU's choice for PSK: the usual suites plus the PSK key exchanges. */
#define TLS_PRIO_X509 "NORMAL"
#define TLS_PRIO_PSK  "NORMAL:+ECDHE-PSK:+DHE-PSK:+PSK"

struct tls_psk_key {
	char id[PSK_ID_MAX];
	uint8_t key[PSK_KEY_MAX];
	size_t len;
};

struct ferry_tls_creds {
	enum ferry_tls_role role;
	bool psk;
	bool verify_peer;
	char *hostname;
	gnutls_certificate_credentials_t x509;
	gnutls_psk_client_credentials_t psk_client;
	gnutls_psk_server_credentials_t psk_server;
	struct tls_psk_key *keys;
	uint32_t nkeys;
};

struct chan_tls {
	gnutls_session_t s;
	const struct ferry_tls_creds *creds;
	int push_errno, pull_errno;
	bool bye_sent;
	uint8_t *stage; /* writing side: small pieces gathered into one record */
	char info[96];
};

/* ---- credentials -------------------------------------------------------------------------- */

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Read "identity:hexkey" lines; blank lines and '#' comments are skipped. */
static int psk_load(struct ferry_tls_creds *c, const char *path)
{
	FILE *f = fopen(path, "re");
	char line[PSK_ID_MAX + 2 * PSK_KEY_MAX + 8];
	unsigned lineno = 0;
	int ret = 0;

	if (!f) {
		ret = -errno;
		chan_err("TLS: cannot open PSK file %s: %s", path, ferry_strerror(ret));
		return ret;
	}
	c->keys = calloc(PSK_MAX_KEYS, sizeof(*c->keys));
	if (!c->keys) {
		fclose(f);
		return -ENOMEM;
	}
	while (fgets(line, sizeof(line), f)) {
		char *colon, *hex, *end;
		struct tls_psk_key *k;
		size_t idlen, hexlen;

		lineno++;
		line[strcspn(line, "\r\n")] = '\0';
		if (line[0] == '\0' || line[0] == '#')
			continue;
		colon = strchr(line, ':');
		if (!colon || colon == line) {
			chan_err("TLS: %s line %u: expected identity:hexkey", path, lineno);
			ret = -EINVAL;
			break;
		}
		idlen = (size_t)(colon - line);
		hex = colon + 1;
		end = hex + strlen(hex);
		while (end > hex && (end[-1] == ' ' || end[-1] == '\t'))
			*--end = '\0';
		hexlen = strlen(hex);
		if (idlen >= PSK_ID_MAX || hexlen == 0 || hexlen % 2 || hexlen / 2 > PSK_KEY_MAX) {
			chan_err("TLS: %s line %u: identity up to %d bytes and a key of 1 to %d "
				 "bytes in hex expected",
				 path, lineno, PSK_ID_MAX - 1, PSK_KEY_MAX);
			ret = -EINVAL;
			break;
		}
		if (c->nkeys == PSK_MAX_KEYS) {
			chan_err("TLS: %s: more than %d keys", path, PSK_MAX_KEYS);
			ret = -EINVAL;
			break;
		}
		k = &c->keys[c->nkeys];
		memcpy(k->id, line, idlen);
		k->id[idlen] = '\0';
		for (size_t i = 0; i < hexlen / 2; i++) {
			int hi = hexval(hex[2 * i]), lo = hexval(hex[2 * i + 1]);

			if (hi < 0 || lo < 0) {
				chan_err("TLS: %s line %u: the key is not hex", path, lineno);
				ret = -EINVAL;
				goto out;
			}
			k->key[i] = (uint8_t)(hi << 4 | lo);
		}
		k->len = hexlen / 2;
		c->nkeys++;
	}
	if (!ret && c->nkeys == 0) {
		chan_err("TLS: %s holds no identity:hexkey line", path);
		ret = -EINVAL;
	}
out:
	fclose(f);
	return ret;
}

/* Server: the key of @username, copied into GnuTLS memory; -1 for a stranger. */
static int psk_server_lookup(gnutls_session_t s, const char *username, gnutls_datum_t *key)
{
	struct ferry_channel *ch = gnutls_session_get_ptr(s);
	const struct ferry_tls_creds *c = ch->tls->creds;

	for (uint32_t i = 0; i < c->nkeys; i++) {
		if (strcmp(c->keys[i].id, username) != 0)
			continue;
		key->data = gnutls_malloc(c->keys[i].len);
		if (!key->data)
			return -1;
		memcpy(key->data, c->keys[i].key, c->keys[i].len);
		key->size = (unsigned)c->keys[i].len;
		return 0;
	}
	chan_warn("%s: TLS: unknown PSK identity '%.64s'", ch->peer, username);
	return -1;
}

static bool file_exists(const char *dir, const char *name, char *path, size_t size)
{
	struct stat st;

	snprintf(path, size, "%s/%s", dir, name);
	return stat(path, &st) == 0;
}

/* A file GnuTLS could not load: say which and why, as an errno-style code. */
static int x509_file_err(const char *path, int gret)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0) {
		int ret = -errno;

		chan_err("TLS: cannot read %s: %s", path, ferry_strerror(ret));
		return ret;
	}
	close(fd);
	chan_err("TLS: %s: %s", path, gnutls_strerror(gret));
	return -EINVAL;
}

static int x509_load(struct ferry_tls_creds *c, const char *dir)
{
	char path[FERRY_URI_PATH_MAX + 32], key[FERRY_URI_PATH_MAX + 32];
	const char *cert_name = c->role == FERRY_TLS_SERVER ? "server-cert.pem" : "client-cert.pem";
	const char *key_name = c->role == FERRY_TLS_SERVER ? "server-key.pem" : "client-key.pem";
	int r;

	if (strlen(dir) > FERRY_URI_PATH_MAX) {
		chan_err("TLS: credentials directory name too long");
		return -ENAMETOOLONG;
	}
	r = gnutls_certificate_allocate_credentials(&c->x509);
	if (r < 0)
		return -ENOMEM;
	if (!file_exists(dir, "ca-cert.pem", path, sizeof(path))) {
		chan_err("TLS: %s: no ca-cert.pem (the CA that signs the peer's certificate)", dir);
		return -ENOENT;
	}
	r = gnutls_certificate_set_x509_trust_file(c->x509, path, GNUTLS_X509_FMT_PEM);
	if (r <= 0)
		return r == 0 ? (chan_err("TLS: %s holds no certificate", path), -EINVAL)
			      : x509_file_err(path, r);
	if (file_exists(dir, "ca-crl.pem", path, sizeof(path))) {
		r = gnutls_certificate_set_x509_crl_file(c->x509, path, GNUTLS_X509_FMT_PEM);
		if (r < 0)
			return x509_file_err(path, r);
	}
	if (!file_exists(dir, cert_name, path, sizeof(path))) {
		if (c->role == FERRY_TLS_SERVER) {
			chan_err("TLS: %s: no %s", dir, cert_name);
			return -ENOENT;
		}
		return 0; /* a client without a certificate of its own: fine until asked */
	}
	if (!file_exists(dir, key_name, key, sizeof(key))) {
		chan_err("TLS: %s: %s but no %s", dir, cert_name, key_name);
		return -ENOENT;
	}
	r = gnutls_certificate_set_x509_key_file(c->x509, path, key, GNUTLS_X509_FMT_PEM);
	if (r < 0) {
		int ret = x509_file_err(path, r);

		chan_err("TLS: (loading %s with %s)", cert_name, key_name);
		return ret;
	}
	return 0;
}

int ferry_tls_creds_create(enum ferry_tls_role role, const struct ferry_tls_attr *attr,
			   struct ferry_tls_creds **out)
{
	struct ferry_tls_creds *c;
	int ret;

	*out = NULL;
	if (!attr || (role != FERRY_TLS_CLIENT && role != FERRY_TLS_SERVER) ||
	    !attr->x509_dir == !attr->psk_file) {
		chan_err("TLS: give either an x509 credentials directory or a PSK file");
		return -EINVAL;
	}
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->role = role;
	c->psk = attr->psk_file != NULL;
	c->verify_peer = attr->verify_peer;
	if (attr->hostname && attr->hostname[0]) {
		c->hostname = strdup(attr->hostname);
		if (!c->hostname) {
			ret = -ENOMEM;
			goto err;
		}
	}
	if (!c->psk) {
		ret = x509_load(c, attr->x509_dir);
		if (ret < 0)
			goto err;
		*out = c;
		return 0;
	}
	ret = psk_load(c, attr->psk_file);
	if (ret < 0)
		goto err;
	if (role == FERRY_TLS_SERVER) {
		if (gnutls_psk_allocate_server_credentials(&c->psk_server) < 0) {
			ret = -ENOMEM;
			goto err;
		}
		gnutls_psk_set_server_credentials_function(c->psk_server, psk_server_lookup);
	} else {
		const struct tls_psk_key *k = &c->keys[0];
		gnutls_datum_t key;

		if (attr->psk_identity) {
			k = NULL;
			for (uint32_t i = 0; i < c->nkeys; i++)
				if (strcmp(c->keys[i].id, attr->psk_identity) == 0)
					k = &c->keys[i];
			if (!k) {
				chan_err("TLS: %s has no key for identity '%s'", attr->psk_file,
					 attr->psk_identity);
				ret = -ENOENT;
				goto err;
			}
		}
		if (gnutls_psk_allocate_client_credentials(&c->psk_client) < 0) {
			ret = -ENOMEM;
			goto err;
		}
		key.data = (unsigned char *)k->key;
		key.size = (unsigned)k->len;
		if (gnutls_psk_set_client_credentials(c->psk_client, k->id, &key,
						      GNUTLS_PSK_KEY_RAW) < 0) {
			ret = -ENOMEM;
			goto err;
		}
	}
	*out = c;
	return 0;
err:
	ferry_tls_creds_destroy(c);
	return ret;
}

void ferry_tls_creds_destroy(struct ferry_tls_creds *c)
{
	if (!c)
		return;
	if (c->x509)
		gnutls_certificate_free_credentials(c->x509);
	if (c->psk_client)
		gnutls_psk_free_client_credentials(c->psk_client);
	if (c->psk_server)
		gnutls_psk_free_server_credentials(c->psk_server);
	if (c->keys) {
		/* Keys are secrets: do not leave them in freed memory. */
		gnutls_memset(c->keys, 0, PSK_MAX_KEYS * sizeof(*c->keys));
		free(c->keys);
	}
	free(c->hostname);
	free(c);
}

enum ferry_tls_role ferry_tls_creds_role(const struct ferry_tls_creds *c)
{
	return c->role;
}

const char *ferry_tls_creds_kind(const struct ferry_tls_creds *c)
{
	return c->psk ? "psk" : "x509";
}

/* ---- transport under GnuTLS ---------------------------------------------------------------- */

static int wait_fd(int fd, short events, int timeout_ms)
{
	struct pollfd p = {.fd = fd, .events = events};
	int r;

	do
		r = poll(&p, 1, timeout_ms);
	while (r < 0 && errno == EINTR);
	return r;
}

static ssize_t tls_push(gnutls_transport_ptr_t ptr, const giovec_t *iov, int iovcnt)
{
	struct ferry_channel *ch = ptr;
	struct msghdr msg = {.msg_iov = (struct iovec *)(uintptr_t)iov,
			     .msg_iovlen = (size_t)iovcnt};

	for (;;) {
		ssize_t n = sendmsg(ch->fd, &msg, MSG_NOSIGNAL);

		if (n >= 0)
			return n;
		if (errno == EINTR)
			continue;
		if ((errno == EAGAIN || errno == EWOULDBLOCK) && wait_fd(ch->fd, POLLOUT, -1) >= 0)
			continue;
		ch->tls->push_errno = errno;
		gnutls_transport_set_errno(ch->tls->s, errno);
		return -1;
	}
}

static ssize_t tls_pull(gnutls_transport_ptr_t ptr, void *buf, size_t len)
{
	struct ferry_channel *ch = ptr;

	for (;;) {
		ssize_t n = recv(ch->fd, buf, len, 0);

		if (n >= 0)
			return n;
		if (errno == EINTR)
			continue;
		if ((errno == EAGAIN || errno == EWOULDBLOCK) && wait_fd(ch->fd, POLLIN, -1) >= 0)
			continue;
		ch->tls->pull_errno = errno;
		gnutls_transport_set_errno(ch->tls->s, errno);
		return -1;
	}
}

static int tls_pull_timeout(gnutls_transport_ptr_t ptr, unsigned int ms)
{
	struct ferry_channel *ch = ptr;
	int r = wait_fd(ch->fd, POLLIN,
			ms == GNUTLS_INDEFINITE_TIMEOUT ? -1 : (ms > INT_MAX ? INT_MAX : (int)ms));

	if (r < 0) {
		ch->tls->pull_errno = errno;
		gnutls_transport_set_errno(ch->tls->s, errno);
	}
	return r;
}

/* ---- errors -------------------------------------------------------------------------------- */

/* Alerts that mean "I do not trust you" rather than "something broke". */
static bool alert_is_auth(gnutls_alert_description_t a)
{
	switch (a) {
	case GNUTLS_A_BAD_CERTIFICATE:
	case GNUTLS_A_UNSUPPORTED_CERTIFICATE:
	case GNUTLS_A_CERTIFICATE_REVOKED:
	case GNUTLS_A_CERTIFICATE_EXPIRED:
	case GNUTLS_A_CERTIFICATE_UNKNOWN:
	case GNUTLS_A_UNKNOWN_CA:
	case GNUTLS_A_ACCESS_DENIED:
	case GNUTLS_A_DECRYPT_ERROR:
	case GNUTLS_A_BAD_RECORD_MAC:
	case GNUTLS_A_UNKNOWN_PSK_IDENTITY:
	case GNUTLS_A_CERTIFICATE_REQUIRED:
		return true;
	default:
		return false;
	}
}

/*
 * A handshake failure as a code, logged with everything that helps: the
 * certificate check's verdict, the peer's alert, a hint when the peer
 * seems not to speak TLS at all.
 */
static int handshake_err(struct ferry_channel *ch, int r)
{
	struct chan_tls *t = ch->tls;
	const struct ferry_tls_creds *c = t->creds;
	const char *side = c->role == FERRY_TLS_CLIENT ? "client" : "server";

	if (atomic_load(&ch->shut))
		return -ECANCELED;
	switch (r) {
	case GNUTLS_E_TIMEDOUT:
		chan_err("%s: TLS handshake (%s) timed out", ch->peer, side);
		return -ETIMEDOUT;
	case GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR: {
		unsigned status = gnutls_session_get_verify_cert_status(t->s);
		gnutls_datum_t txt = {NULL, 0};

		gnutls_certificate_verification_status_print(status, GNUTLS_CRT_X509, &txt, 0);
		chan_err("%s: TLS: the %s's certificate was refused: %s", ch->peer,
			 c->role == FERRY_TLS_CLIENT ? "server" : "client",
			 txt.data ? (const char *)txt.data : "verification failed");
		gnutls_free(txt.data);
		return FERRY_EAUTH;
	}
	case GNUTLS_E_NO_CERTIFICATE_FOUND:
	case GNUTLS_E_CERTIFICATE_REQUIRED:
		chan_err("%s: TLS: the client sent no certificate signed by a CA this server "
			 "trusts, and it requires one (verify-peer)",
			 ch->peer);
		return FERRY_EAUTH;
	case GNUTLS_E_FATAL_ALERT_RECEIVED: {
		gnutls_alert_description_t a = gnutls_alert_get(t->s);

		chan_err("%s: TLS: the peer refused the handshake: %s%s", ch->peer,
			 gnutls_alert_get_name(a),
			 alert_is_auth(a) ? (c->psk ? " (do both sides hold the same PSK key?)"
						    : " (does the peer trust our certificate?)")
					  : "");
		return alert_is_auth(a) ? FERRY_EAUTH : FERRY_ETLS;
	}
	case GNUTLS_E_RECEIVED_ILLEGAL_PARAMETER:
		if (!c->psk)
			goto other;
		/* TLS 1.3: the PSK binder the client sent does not verify with our key. */
		chan_err("%s: TLS: the client's PSK does not match ours (same identity, "
			 "another key)",
			 ch->peer);
		return FERRY_EAUTH;
	case GNUTLS_E_DECRYPTION_FAILED:
	case GNUTLS_E_KEY_USAGE_VIOLATION:
		chan_err("%s: TLS: %s%s", ch->peer, gnutls_strerror(r),
			 c->psk ? " (do both sides hold the same PSK key?)" : "");
		return FERRY_EAUTH;
	case GNUTLS_E_UNEXPECTED_PACKET_LENGTH:
	case GNUTLS_E_UNEXPECTED_PACKET:
	case GNUTLS_E_UNSUPPORTED_VERSION_PACKET:
	case GNUTLS_E_UNEXPECTED_HANDSHAKE_PACKET:
		chan_err("%s: TLS handshake (%s): %s: the peer does not seem to speak TLS "
			 "(is TLS on at both ends?)",
			 ch->peer, side, gnutls_strerror(r));
		return FERRY_ETLS;
	case GNUTLS_E_PREMATURE_TERMINATION:
	case GNUTLS_E_PULL_ERROR:
	case GNUTLS_E_PUSH_ERROR:
		chan_err("%s: TLS handshake (%s): the peer closed the connection%s%s "
			 "(does it expect TLS? %s)",
			 ch->peer, side, t->pull_errno || t->push_errno ? ": " : "",
			 t->pull_errno	 ? strerror(t->pull_errno)
			 : t->push_errno ? strerror(t->push_errno)
					 : "",
			 c->psk ? "does it hold the same PSK key?"
				: "does it trust our certificate?");
		return FERRY_ETLS;
	default:
	other:
		chan_err("%s: TLS handshake (%s): %s", ch->peer, side, gnutls_strerror(r));
		return FERRY_ETLS;
	}
}

/* An error of record I/O after the handshake, as a channel error code. */
static int record_err(struct ferry_channel *ch, ssize_t r, bool write)
{
	struct chan_tls *t = ch->tls;

	if (atomic_load(&ch->shut))
		return -ECANCELED;
	switch (r) {
	case GNUTLS_E_PUSH_ERROR:
		return t->push_errno ? -t->push_errno : -EPIPE;
	case GNUTLS_E_PULL_ERROR:
		return t->pull_errno ? -t->pull_errno : -ECONNRESET;
	case GNUTLS_E_TIMEDOUT:
		return -ETIMEDOUT;
	case GNUTLS_E_FATAL_ALERT_RECEIVED: {
		gnutls_alert_description_t a = gnutls_alert_get(t->s);

		/* TLS 1.3: a server refuses a client certificate only after the
		 * client's handshake is done, so the refusal arrives here. */
		chan_err("%s: TLS: the peer ended the session: %s%s", ch->peer,
			 gnutls_alert_get_name(a),
			 alert_is_auth(a) ? " (it does not trust our certificate)" : "");
		return alert_is_auth(a) ? FERRY_EAUTH : FERRY_ETLS;
	}
	case GNUTLS_E_PREMATURE_TERMINATION:
		chan_err("%s: TLS %s: the peer closed the connection without ending the TLS "
			 "session%s",
			 ch->peer, write ? "send" : "receive",
			 t->creds->role == FERRY_TLS_CLIENT && !t->creds->psk
			     ? " (a destination that requires client certificates does this "
			       "when it refuses ours)"
			     : "");
		return -ECONNRESET;
	default:
		chan_err("%s: TLS %s: %s", ch->peer, write ? "send" : "receive",
			 gnutls_strerror((int)r));
		return FERRY_ETLS;
	}
}

/* ---- the TLS channel ops ------------------------------------------------------------------- */

static int tls_send(struct ferry_channel *ch, const void *buf, size_t len)
{
	while (len) {
		ssize_t n = gnutls_record_send(ch->tls->s, buf, len);

		if (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED)
			continue;
		if (n < 0)
			return record_err(ch, n, true);
		buf = (const uint8_t *)buf + n;
		len -= (size_t)n;
	}
	return 0;
}

ssize_t chan_tls_send_all(struct ferry_channel *ch, const struct iovec *iov, int iovcnt)
{
	struct chan_tls *t = ch->tls;
	size_t staged = 0, total = 0;
	int ret;

	for (int i = 0; i < iovcnt; i++) {
		const uint8_t *p = iov[i].iov_base;
		size_t len = iov[i].iov_len;

		total += len;
		while (len) {
			size_t take;

			/* A full record's worth: straight from the caller's buffer. */
			if (staged == 0 && len >= TLS_RECORD_MAX) {
				take = len - len % TLS_RECORD_MAX;
				ret = tls_send(ch, p, take);
				if (ret < 0)
					return ret;
				p += take;
				len -= take;
				continue;
			}
			take = TLS_RECORD_MAX - staged;
			if (take > len)
				take = len;
			memcpy(t->stage + staged, p, take);
			staged += take;
			p += take;
			len -= take;
			if (staged == TLS_RECORD_MAX) {
				ret = tls_send(ch, t->stage, staged);
				if (ret < 0)
					return ret;
				staged = 0;
			}
		}
	}
	if (staged) {
		ret = tls_send(ch, t->stage, staged);
		if (ret < 0)
			return ret;
	}
	return (ssize_t)total;
}

ssize_t chan_tls_recv(struct ferry_channel *ch, void *buf, size_t len, int timeout_ms)
{
	struct chan_tls *t = ch->tls;

	if (timeout_ms >= 0)
		gnutls_record_set_timeout(t->s, timeout_ms ? (unsigned)timeout_ms : 1);
	for (;;) {
		ssize_t n = gnutls_record_recv(t->s, buf, len);

		if (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED)
			continue;
		if (timeout_ms >= 0)
			gnutls_record_set_timeout(t->s, 0);
		if (n > 0)
			return n;
		if (atomic_load(&ch->shut))
			return -ECANCELED;
		/* A peer that closes without close_notify: the stream formats above
		 * tell a complete stream from a cut one, as on a plain socket. */
		if (n == 0 || n == GNUTLS_E_PREMATURE_TERMINATION)
			return 0;
		return record_err(ch, n, false);
	}
}

size_t chan_tls_pending(const struct ferry_channel *ch)
{
	return ch->tls ? gnutls_record_check_pending(ch->tls->s) : 0;
}

static ssize_t tls_writev(struct ferry_channel *ch, const struct iovec *iov, int iovcnt)
{
	return chan_tls_send_all(ch, iov, iovcnt);
}

static ssize_t tls_read(struct ferry_channel *ch, void *buf, size_t len)
{
	return chan_tls_recv(ch, buf, len, -1);
}

static int tls_shutdown_write(struct ferry_channel *ch)
{
	struct chan_tls *t = ch->tls;
	int r;

	/* close_notify first: the peer can tell our end from a cut connection. */
	do
		r = gnutls_bye(t->s, GNUTLS_SHUT_WR);
	while (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED);
	t->bye_sent = true;
	if (r < 0)
		return record_err(ch, r, true);
	return chan_sock_shutdown_write(ch);
}

static void tls_free(struct chan_tls *t)
{
	if (!t)
		return;
	if (t->s)
		gnutls_deinit(t->s);
	free(t->stage);
	free(t);
}

static int tls_close(struct ferry_channel *ch, bool graceful)
{
	(void)graceful; /* never wait on the peer here: shutdown_write said goodbye */
	tls_free(ch->tls);
	ch->tls = NULL;
	return 0;
}

const struct chan_ops chan_tls_ops = {
    .name = "tls",
    .writev = tls_writev,
    .read = tls_read,
    .shutdown = chan_sock_shutdown,
    .shutdown_write = tls_shutdown_write,
    .close = tls_close,
};

/* ---- the handshake ------------------------------------------------------------------------- */

/*
 * Server: look at the first byte before handshaking, so that a peer that
 * speaks the migration protocol in the clear is named as such. A TLS
 * connection starts with a handshake record (content type 22).
 */
static int server_peek(struct ferry_channel *ch, int64_t deadline)
{
	uint8_t b;

	for (;;) {
		ssize_t n;
		int r = wait_fd(ch->fd, POLLIN, chan_remaining(deadline));

		if (atomic_load(&ch->shut))
			return -ECANCELED;
		if (r < 0)
			return -errno;
		if (r == 0) {
			chan_err("%s: TLS: the client sent nothing within the handshake timeout",
				 ch->peer);
			return -ETIMEDOUT;
		}
		n = recv(ch->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
		if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK))
			continue;
		if (n < 0)
			return -errno;
		if (n == 0) {
			chan_err("%s: TLS: the client closed the connection before the handshake",
				 ch->peer);
			return FERRY_ETLS;
		}
		if (b != 22) {
			chan_err(
			    "%s: TLS: the client does not speak TLS (its first byte is 0x%02x, "
			    "not a TLS handshake): is TLS on at the source?",
			    ch->peer, b);
			return FERRY_ETLS;
		}
		return 0;
	}
}

int ferry_channel_start_tls(struct ferry_channel *ch, const struct ferry_tls_creds *creds,
			    const char *hostname, int timeout_ms)
{
	bool client = creds->role == FERRY_TLS_CLIENT;
	int64_t deadline = chan_deadline(timeout_ms);
	struct chan_tls *t;
	const char *err_pos = NULL;
	int r, ret;

	if (ch->ops != &chan_sock_ops || ch->fd < 0 || !ch->can_read || !ch->can_write ||
	    ch->scheme == FERRY_URI_EXEC) {
		chan_err("%s: TLS needs a socket channel (tcp:, unix:, socket fd:)", ch->peer);
		return -EINVAL;
	}
	if (!hostname || !hostname[0])
		hostname = creds->hostname;
	if (client && !creds->psk && (!hostname || !hostname[0])) {
		chan_err("%s: TLS: no host name to check the server's certificate against "
			 "(give tls-hostname)",
			 ch->peer);
		return -EINVAL;
	}
	t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->creds = creds;
	t->stage = malloc(TLS_RECORD_MAX);
	if (!t->stage) {
		free(t);
		return -ENOMEM;
	}
	/* No session tickets: ferry never resumes a session, and a server that
	 * sent them would make the peer's socket readable with no message in it
	 * (ferry_channel_readable(), which the engine's return path relies on). */
	r = gnutls_init(&t->s, (client ? GNUTLS_CLIENT : GNUTLS_SERVER) | GNUTLS_NO_SIGNAL |
				   GNUTLS_NO_TICKETS);
	if (r < 0) {
		free(t->stage);
		free(t);
		return -ENOMEM;
	}
	ch->tls = t;
	gnutls_session_set_ptr(t->s, ch);
	gnutls_transport_set_ptr(t->s, ch);
	gnutls_transport_set_vec_push_function(t->s, tls_push);
	gnutls_transport_set_pull_function(t->s, tls_pull);
	gnutls_transport_set_pull_timeout_function(t->s, tls_pull_timeout);
	r = gnutls_priority_set_direct(t->s, creds->psk ? TLS_PRIO_PSK : TLS_PRIO_X509, &err_pos);
	if (r < 0)
		goto gnutls_fail;
	if (creds->psk) {
		r = client ? gnutls_credentials_set(t->s, GNUTLS_CRD_PSK, creds->psk_client)
			   : gnutls_credentials_set(t->s, GNUTLS_CRD_PSK, creds->psk_server);
		if (r < 0)
			goto gnutls_fail;
	} else {
		r = gnutls_credentials_set(t->s, GNUTLS_CRD_CERTIFICATE, creds->x509);
		if (r < 0)
			goto gnutls_fail;
		if (client) {
			/* SNI only for names; the check covers IP addresses too. */
			if (!strchr(hostname, ':') &&
			    strspn(hostname, "0123456789.") != strlen(hostname))
				gnutls_server_name_set(t->s, GNUTLS_NAME_DNS, hostname,
						       strlen(hostname));
			gnutls_session_set_verify_cert(t->s, hostname, 0);
		} else if (creds->verify_peer) {
			gnutls_certificate_server_set_request(t->s, GNUTLS_CERT_REQUIRE);
			gnutls_session_set_verify_cert(t->s, NULL, 0);
		}
	}
	if (!client) {
		ret = server_peek(ch, deadline);
		if (ret < 0)
			goto fail;
	}
	if (timeout_ms < 0) {
		gnutls_handshake_set_timeout(t->s, GNUTLS_INDEFINITE_TIMEOUT);
	} else {
		int left = chan_remaining(deadline);

		/* 0 would mean GnuTLS's default; what is left may be nothing. */
		gnutls_handshake_set_timeout(t->s, left > 0 ? (unsigned)left : 1);
	}
	do
		r = gnutls_handshake(t->s);
	while (r < 0 && !gnutls_error_is_fatal(r) && !atomic_load(&ch->shut));
	if (r < 0) {
		ret = handshake_err(ch, r);
		goto fail;
	}
	snprintf(t->info, sizeof(t->info), "%s %s %s",
		 gnutls_protocol_get_name(gnutls_protocol_get_version(t->s)),
		 gnutls_cipher_get_name(gnutls_cipher_get(t->s)), creds->psk ? "psk" : "x509");
	ch->ops = &chan_tls_ops;
	chan_dbg("%s: TLS up (%s)", ch->peer, t->info);
	return 0;
gnutls_fail:
	chan_err("%s: TLS setup: %s", ch->peer, gnutls_strerror(r));
	ret = r == GNUTLS_E_MEMORY_ERROR ? -ENOMEM : FERRY_ETLS;
fail:
	tls_free(t);
	ch->tls = NULL;
	/* The connection is in an unknown state: nobody may use it in the clear. */
	ch->can_read = ch->can_write = false;
	return ret;
}

bool ferry_channel_is_tls(const struct ferry_channel *ch)
{
	return ch->tls != NULL;
}

const char *ferry_channel_tls_info(const struct ferry_channel *ch)
{
	return ch->tls ? ch->tls->info : "";
}

int ferry_channel_tls_export(struct ferry_channel *ch, const char *label, const void *context,
			     size_t context_len, void *out, size_t len)
{
	int r;

	if (!ch->tls || !label || len == 0 || len > FERRY_TLS_EXPORT_MAX)
		return -EINVAL;
	r = gnutls_prf_rfc5705(ch->tls->s, strlen(label), label, context_len, context, len, out);
	if (r < 0) {
		chan_err("%s: TLS exporter: %s", ch->peer, gnutls_strerror(r));
		return FERRY_ETLS;
	}
	return 0;
}
