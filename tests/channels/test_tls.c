/* SPDX-License-Identifier: MIT */
/*
 * channels_tls: TLS on socket channels. Credentials are made at test time
 * with certtool (tests/channels/make-tls-certs.sh); every test skips when it
 * is missing. A pair of tcp channels is connected on loopback, each end runs
 * its handshake in its own thread, and what crosses is checked byte for byte.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ferry/channel.h>
#include <ferry/error.h>
#include <ferry/log.h>
#include <ferry/tls.h>

#include "helpers.h"

TestSuite(channels_tls, .init = ct_tls_suite_setup, .fini = ct_tls_suite_teardown, .timeout = 60);

static struct ferry_tls_creds *creds(enum ferry_tls_role role, const struct ferry_tls_attr *a)
{
	struct ferry_tls_creds *c = NULL;
	int ret = ferry_tls_creds_create(role, a, &c);

	cr_assert_eq(ret, 0, "credentials: %s", ferry_strerror(ret));
	return c;
}

struct hs {
	struct ferry_channel *ch;
	const struct ferry_tls_creds *creds;
	const char *hostname;
	int ret;
	pthread_t th;
};

static void *hs_thread(void *arg)
{
	struct hs *h = arg;

	h->ret = ferry_channel_start_tls(h->ch, h->creds, h->hostname, 5000);
	/* A failed side drops the connection, as the engine does: the peer must not hang. */
	if (h->ret < 0)
		ferry_channel_shutdown(h->ch);
	return NULL;
}

/* Handshake both ends of a fresh tcp pair; the results in *cret / *sret. */
static void handshake(const struct ferry_tls_creds *cc, const char *hostname,
		      const struct ferry_tls_creds *sc, struct ferry_channel **src,
		      struct ferry_channel **dst, int *cret, int *sret)
{
	struct hs c = {.creds = cc, .hostname = hostname}, s = {.creds = sc};

	ct_pair("tcp:127.0.0.1:0", src, dst);
	c.ch = *src;
	s.ch = *dst;
	cr_assert_eq(pthread_create(&c.th, NULL, hs_thread, &c), 0);
	cr_assert_eq(pthread_create(&s.th, NULL, hs_thread, &s), 0);
	pthread_join(c.th, NULL);
	pthread_join(s.th, NULL);
	*cret = c.ret;
	*sret = s.ret;
}

/* Both ends up: pages cross inside TLS, and the exporter agrees on both ends. */
static void expect_working(struct ferry_channel *src, struct ferry_channel *dst, const char *kind)
{
	uint8_t a[32], b[32], c[32];
	uint8_t id1[16] = {1}, id2[16] = {2};

	cr_assert(ferry_channel_is_tls(src));
	cr_assert(ferry_channel_is_tls(dst));
	cr_assert(strstr(ferry_channel_tls_info(src), kind), "info '%s'",
		  ferry_channel_tls_info(src));
	cr_assert_str_eq(ferry_channel_tls_info(src), ferry_channel_tls_info(dst));
	cr_assert_eq(ferry_channel_tls_export(src, "EXPORTER-ferry-test", id1, 16, a, 32), 0);
	cr_assert_eq(ferry_channel_tls_export(dst, "EXPORTER-ferry-test", id1, 16, b, 32), 0);
	cr_assert_eq(memcmp(a, b, 32), 0, "the two ends export different secrets");
	cr_assert_eq(ferry_channel_tls_export(dst, "EXPORTER-ferry-test", id2, 16, c, 32), 0);
	cr_assert_neq(memcmp(a, c, 32), 0, "the context does not change the secret");
	/* 4096 pages: headers copied and pages by reference, through TLS records. */
	ct_transfer(src, dst, 4096, false);
}

Test(channels_tls, x509_server_verified_and_data_crosses)
{
	struct ferry_tls_attr ca = {.x509_dir = ct_tls_path("good")};
	struct ferry_tls_creds *cc = creds(FERRY_TLS_CLIENT, &ca),
			       *sc = creds(FERRY_TLS_SERVER, &ca);
	struct ferry_channel *src, *dst;
	int cret, sret;

	/* The certificate names 127.0.0.1 as an IP address. */
	handshake(cc, "127.0.0.1", sc, &src, &dst, &cret, &sret);
	cr_assert_eq(cret, 0, "client: %s", ferry_strerror(cret));
	cr_assert_eq(sret, 0, "server: %s", ferry_strerror(sret));
	expect_working(src, dst, "x509");
	ferry_channel_destroy(src);
	ferry_channel_destroy(dst);
	ferry_tls_creds_destroy(cc);
	ferry_tls_creds_destroy(sc);
}

Test(channels_tls, x509_client_certificate_when_asked)
{
	struct ferry_tls_attr ca = {.x509_dir = ct_tls_path("good")};
	struct ferry_tls_attr sa = {.x509_dir = ct_tls_path("good"), .verify_peer = true};
	struct ferry_tls_creds *cc = creds(FERRY_TLS_CLIENT, &ca),
			       *sc = creds(FERRY_TLS_SERVER, &sa);
	struct ferry_channel *src, *dst;
	int cret, sret;

	handshake(cc, "localhost", sc, &src, &dst, &cret, &sret);
	cr_assert_eq(cret, 0, "client: %s", ferry_strerror(cret));
	cr_assert_eq(sret, 0, "server: %s", ferry_strerror(sret));
	expect_working(src, dst, "x509");
	ferry_channel_destroy(src);
	ferry_channel_destroy(dst);
	ferry_tls_creds_destroy(cc);
	ferry_tls_creds_destroy(sc);
}

/* One refusal: which side must say FERRY_EAUTH, and what the log must say. */
struct refusal {
	const char *client_dir, *server_dir, *hostname;
	bool verify_peer;
	bool client_refuses; /* else the server does */
	const char *log;
};

static void expect_refused(const struct refusal *r)
{
	struct ferry_tls_attr ca = {.x509_dir = ct_tls_path(r->client_dir)};
	struct ferry_tls_attr sa = {.x509_dir = ct_tls_path(r->server_dir),
				    .verify_peer = r->verify_peer};
	struct ferry_tls_creds *cc = creds(FERRY_TLS_CLIENT, &ca),
			       *sc = creds(FERRY_TLS_SERVER, &sa);
	struct ferry_channel *src, *dst;
	int cret, sret;

	ct_log_capture();
	handshake(cc, r->hostname, sc, &src, &dst, &cret, &sret);
	if (r->client_refuses) {
		cr_assert_eq(cret, FERRY_EAUTH, "client: %s", ferry_strerror(cret));
		cr_assert_lt(sret, 0, "the server went on after the client refused");
	} else {
		cr_assert_eq(sret, FERRY_EAUTH, "server: %s", ferry_strerror(sret));
		/* TLS 1.3: the client may finish its side before the server refuses;
		 * its first read then fails. Nothing may cross either way. */
		if (cret == 0) {
			char b;
			cr_assert_leq(ferry_channel_read(src, &b, 1), 0);
		}
	}
	cr_assert(ct_log_has(r->log), "the log does not say '%s'", r->log);
	cr_assert(!ferry_channel_is_tls(r->client_refuses ? src : dst));
	ferry_channel_destroy(src);
	ferry_channel_destroy(dst);
	ferry_tls_creds_destroy(cc);
	ferry_tls_creds_destroy(sc);
}

Test(channels_tls, server_signed_by_another_ca_refused)
{
	expect_refused(
	    &(struct refusal){"otherca", "good", "localhost", false, true, "issuer is unknown"});
}

Test(channels_tls, wrong_hostname_refused)
{
	expect_refused(
	    &(struct refusal){"good", "wrongname", "localhost", false, true, "does not match"});
}

Test(channels_tls, tls_hostname_override_accepts_the_named_server)
{
	struct ferry_tls_attr ca = {.x509_dir = ct_tls_path("good"),
				    .hostname = "elsewhere.example"};
	struct ferry_tls_attr sa = {.x509_dir = ct_tls_path("wrongname")};
	struct ferry_tls_creds *cc = creds(FERRY_TLS_CLIENT, &ca),
			       *sc = creds(FERRY_TLS_SERVER, &sa);
	struct ferry_channel *src, *dst;
	int cret, sret;

	/* No host name at the call: the credentials' one is used. */
	handshake(cc, NULL, sc, &src, &dst, &cret, &sret);
	cr_assert_eq(cret, 0, "client: %s", ferry_strerror(cret));
	cr_assert_eq(sret, 0, "server: %s", ferry_strerror(sret));
	ferry_channel_destroy(src);
	ferry_channel_destroy(dst);
	ferry_tls_creds_destroy(cc);
	ferry_tls_creds_destroy(sc);
}

Test(channels_tls, expired_client_certificate_refused)
{
	expect_refused(
	    &(struct refusal){"expiredclient", "good", "localhost", true, false, "expired"});
}

Test(channels_tls, untrusted_client_certificate_refused)
{
	expect_refused(
	    &(struct refusal){"untrustedclient", "good", "localhost", true, false, "requires one"});
}

Test(channels_tls, missing_client_certificate_refused)
{
	/* wrongname/ holds no client certificate at all. */
	expect_refused(
	    &(struct refusal){"wrongname", "good", "localhost", true, false, "requires one"});
}

Test(channels_tls, x509_client_without_a_host_name_is_refused)
{
	struct ferry_tls_attr ca = {.x509_dir = ct_tls_path("good")};
	struct ferry_tls_creds *cc = creds(FERRY_TLS_CLIENT, &ca);
	struct ferry_channel *src, *dst;

	ct_pair("tcp:127.0.0.1:0", &src, &dst);
	cr_assert_eq(ferry_channel_start_tls(src, cc, NULL, 1000), -EINVAL);
	ferry_channel_destroy(src);
	ferry_channel_destroy(dst);
	ferry_tls_creds_destroy(cc);
}

Test(channels_tls, psk_right_key)
{
	struct ferry_tls_attr a = {.psk_file = ct_tls_path("psk.key")};
	struct ferry_tls_creds *cc = creds(FERRY_TLS_CLIENT, &a), *sc = creds(FERRY_TLS_SERVER, &a);
	struct ferry_channel *src, *dst;
	int cret, sret;

	handshake(cc, NULL, sc, &src, &dst, &cret, &sret);
	cr_assert_eq(cret, 0, "client: %s", ferry_strerror(cret));
	cr_assert_eq(sret, 0, "server: %s", ferry_strerror(sret));
	expect_working(src, dst, "psk");
	ferry_channel_destroy(src);
	ferry_channel_destroy(dst);
	ferry_tls_creds_destroy(cc);
	ferry_tls_creds_destroy(sc);
}

/*
 * The engine's source watches its return path while its lanes connect: the
 * destination writes there only to refuse the offered lanes or to fail. A
 * TLS server that sent session tickets after the handshake would make that
 * socket readable with no message in it.
 */
static void expect_silent_until_written(struct ferry_channel *src, struct ferry_channel *dst)
{
	char x = 'x', c;
	struct iovec iov = {.iov_base = &x, .iov_len = 1};

	usleep(200 * 1000);
	cr_assert(!ferry_channel_readable(src), "the server sent something unasked");
	cr_assert(!ferry_channel_readable(dst), "the client sent something unasked");
	cr_assert_eq(ferry_channel_writev(dst, &iov, 1), 1);
	for (int i = 0; i < 200 && !ferry_channel_readable(src); i++)
		usleep(10 * 1000);
	cr_assert(ferry_channel_readable(src), "a written byte did not make the client readable");
	cr_assert_eq(ferry_channel_read(src, &c, 1), 1);
	cr_assert_eq(c, 'x');
	cr_assert(!ferry_channel_readable(src), "readable after the only byte was read");
}

Test(channels_tls, nothing_unasked_after_the_handshake)
{
	struct ferry_tls_attr pa = {.psk_file = ct_tls_path("psk.key")};
	struct ferry_tls_attr ca = {.x509_dir = ct_tls_path("good")};
	struct ferry_tls_attr sa = {.x509_dir = ct_tls_path("good"), .verify_peer = true};
	struct ferry_tls_creds *c[2] = {creds(FERRY_TLS_CLIENT, &pa), creds(FERRY_TLS_CLIENT, &ca)};
	struct ferry_tls_creds *s[2] = {creds(FERRY_TLS_SERVER, &pa), creds(FERRY_TLS_SERVER, &sa)};
	struct ferry_channel *src, *dst;
	int cret, sret;

	for (int i = 0; i < 2; i++) {
		handshake(c[i], i ? "localhost" : NULL, s[i], &src, &dst, &cret, &sret);
		cr_assert_eq(cret, 0, "client: %s", ferry_strerror(cret));
		cr_assert_eq(sret, 0, "server: %s", ferry_strerror(sret));
		expect_silent_until_written(src, dst);
		ferry_channel_destroy(src);
		cr_assert(ferry_channel_readable(dst), "a hang-up is readable");
		ferry_channel_destroy(dst);
		ferry_tls_creds_destroy(c[i]);
		ferry_tls_creds_destroy(s[i]);
	}
}

Test(channels_tls, psk_wrong_key_refused)
{
	struct ferry_tls_attr ca = {.psk_file = ct_tls_path("psk-wrong.key")};
	struct ferry_tls_attr sa = {.psk_file = ct_tls_path("psk.key")};
	struct ferry_tls_creds *cc = creds(FERRY_TLS_CLIENT, &ca),
			       *sc = creds(FERRY_TLS_SERVER, &sa);
	struct ferry_channel *src, *dst;
	int cret, sret;

	ct_log_capture();
	handshake(cc, NULL, sc, &src, &dst, &cret, &sret);
	cr_assert_eq(sret, FERRY_EAUTH, "server: %s", ferry_strerror(sret));
	cr_assert_lt(cret, 0, "the client believes a server without its key");
	cr_assert(ct_log_has("PSK does not match"));
	ferry_channel_destroy(src);
	ferry_channel_destroy(dst);
	ferry_tls_creds_destroy(cc);
	ferry_tls_creds_destroy(sc);
}

Test(channels_tls, plaintext_client_against_tls_server)
{
	struct ferry_tls_attr sa = {.x509_dir = ct_tls_path("good")};
	struct ferry_tls_creds *sc = creds(FERRY_TLS_SERVER, &sa);
	struct ferry_channel *src, *dst;
	char magic[8] = {'Q', 'E', 'V', 'M', 0, 0, 0, 3};
	struct iovec iov = {.iov_base = magic, .iov_len = 8};

	ct_log_capture();
	ct_pair("tcp:127.0.0.1:0", &src, &dst);
	cr_assert_eq(ferry_channel_writev(src, &iov, 1), 8);
	cr_assert_eq(ferry_channel_start_tls(dst, sc, NULL, 2000), FERRY_ETLS);
	cr_assert(ct_log_has("does not speak TLS"));
	/* The failed channel can no longer be used in the clear. */
	cr_assert_eq(ferry_channel_read(dst, (char[8]){0}, 8), -EOPNOTSUPP);
	ferry_channel_destroy(src);
	ferry_channel_destroy(dst);
	ferry_tls_creds_destroy(sc);
}

Test(channels_tls, tls_client_against_plaintext_server)
{
	struct ferry_tls_attr ca = {.x509_dir = ct_tls_path("good")};
	struct ferry_tls_creds *cc = creds(FERRY_TLS_CLIENT, &ca);
	struct ferry_channel *src, *dst;
	struct hs c = {.creds = cc, .hostname = "localhost"};
	uint8_t first[4];

	ct_log_capture();
	ct_pair("tcp:127.0.0.1:0", &src, &dst);
	c.ch = src;
	cr_assert_eq(pthread_create(&c.th, NULL, hs_thread, &c), 0);
	/* The plaintext server reads a TLS record where it expects its magic, and hangs up. */
	cr_assert_eq(ferry_channel_read(dst, first, sizeof(first)), (ssize_t)sizeof(first));
	cr_assert_eq(first[0], 0x16);
	ferry_channel_destroy(dst);
	pthread_join(c.th, NULL);
	cr_assert_eq(c.ret, FERRY_ETLS, "client: %s", ferry_strerror(c.ret));
	cr_assert(ct_log_has("does it expect TLS"));
	ferry_channel_destroy(src);
	ferry_tls_creds_destroy(cc);
}

Test(channels_tls, handshake_times_out_on_a_silent_peer)
{
	struct ferry_tls_attr ca = {.x509_dir = ct_tls_path("good")};
	struct ferry_tls_creds *cc = creds(FERRY_TLS_CLIENT, &ca);
	struct ferry_channel *src, *dst;
	int64_t t0;

	ct_pair("tcp:127.0.0.1:0", &src, &dst);
	t0 = ct_now_ms();
	cr_assert_eq(ferry_channel_start_tls(src, cc, "localhost", 300), -ETIMEDOUT);
	cr_assert_lt(ct_now_ms() - t0, 3000);
	ferry_channel_destroy(src);
	ferry_channel_destroy(dst);
	ferry_tls_creds_destroy(cc);
}

Test(channels_tls, credential_errors_are_reported)
{
	struct ferry_tls_creds *c = NULL;
	char bad[600];
	FILE *f;

	cr_assert_eq(ferry_tls_creds_create(FERRY_TLS_CLIENT,
					    &(struct ferry_tls_attr){.x509_dir = "/nonexistent"},
					    &c),
		     -ENOENT);
	cr_assert_eq(ferry_tls_creds_create(
			 FERRY_TLS_SERVER,
			 &(struct ferry_tls_attr){.x509_dir = ct_tls_path("expiredclient")}, &c),
		     -ENOENT, "a server without server-cert.pem");
	cr_assert_eq(ferry_tls_creds_create(FERRY_TLS_CLIENT, &(struct ferry_tls_attr){0}, &c),
		     -EINVAL);
	cr_assert_eq(ferry_tls_creds_create(
			 FERRY_TLS_CLIENT,
			 &(struct ferry_tls_attr){.x509_dir = ct_tls_path("good"), .psk_file = "x"},
			 &c),
		     -EINVAL);
	snprintf(bad, sizeof(bad), "%s", ct_tls_path("bad.key"));
	f = fopen(bad, "w");
	cr_assert_not_null(f);
	fputs("ferry:00zz\n", f);
	fclose(f);
	cr_assert_eq(
	    ferry_tls_creds_create(FERRY_TLS_SERVER, &(struct ferry_tls_attr){.psk_file = bad}, &c),
	    -EINVAL);
	cr_assert_eq(
	    ferry_tls_creds_create(FERRY_TLS_CLIENT,
				   &(struct ferry_tls_attr){.psk_file = ct_tls_path("psk.key"),
							    .psk_identity = "nobody"},
				   &c),
	    -ENOENT);
	cr_assert_null(c);
}
