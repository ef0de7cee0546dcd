/* SPDX-License-Identifier: MIT */
/*
 * engine_tls: whole migrations inside TLS (ferry_engine_set_tls), single
 * stream and data channels, each ending with the A-B check; and the
 * refusals (wrong CA, wrong host name, refused client certificate, wrong
 * PSK key, a plaintext peer either way), after which the destination has
 * failed with a message and the source guest is running and unchanged.
 * Credentials are made at test time with certtool; the suite skips without it.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ferry/engine.h>
#include <ferry/error.h>
#include <ferry/log.h>

#include "bench/guest.h"
#include "channels/helpers.h"

TestSuite(engine_tls, .init = ct_tls_suite_setup, .fini = ct_tls_suite_teardown, .timeout = 120);

struct side {
	struct ferry_engine *eng;
	struct bench_guest *guest;
};

static const struct bench_guest_attr small_live = {
    .ram_bytes = 64u << 20,
    .vcpus = 2,
    .dirty_rate = 20u << 20,
    .pattern = BENCH_PATTERN_AB,
    .fill_seed = 42,
};

static void make_side(struct side *s, const struct bench_guest_attr *attr, bool source,
		      const struct ferry_tls_attr *tls, uint32_t channels)
{
	struct ferry_params p = {.channels = channels};

	cr_assert_eq(ferry_engine_create(&s->eng), 0);
	cr_assert_eq(bench_guest_create(attr, &s->guest), 0);
	if (source) {
		cr_assert_eq(bench_guest_attach_source(s->guest, s->eng), 0);
		cr_assert_eq(ferry_engine_set_params(s->eng, &p), 0);
	} else {
		bench_devices_fill(bench_guest_devices(s->guest), 0xdead);
		cr_assert_eq(bench_guest_attach_dest(s->guest, s->eng), 0);
	}
	if (tls)
		cr_assert_eq(ferry_engine_set_tls(s->eng, tls), 0);
}

static void free_side(struct side *s)
{
	ferry_engine_destroy(s->eng);
	bench_guest_destroy(s->guest);
}

static void run(struct side *src, struct side *dst, const char *host)
{
	char uri[128];

	cr_assert_eq(ferry_incoming(dst->eng, "tcp:127.0.0.1:0", NULL, NULL), 0);
	snprintf(uri, sizeof(uri), "tcp:%s:%d", host, ferry_engine_listen_port(dst->eng));
	cr_assert_eq(ferry_migrate(src->eng, uri, NULL, NULL), 0);
	ferry_engine_wait(src->eng);
	ferry_engine_wait(dst->eng);
}

static void expect_completed(struct side *src, struct side *dst, const char *kind,
			     uint32_t channels)
{
	struct ferry_stats ss, ds;
	char why[512];
	uint64_t bad;

	ferry_engine_get_stats(src->eng, &ss);
	ferry_engine_get_stats(dst->eng, &ds);
	cr_assert_eq(ss.status, FERRY_STATUS_COMPLETED, "source: %s", ss.error_msg);
	cr_assert_eq(ds.status, FERRY_STATUS_COMPLETED, "destination: %s", ds.error_msg);
	cr_assert(strstr(ss.tls, "TLS") && strstr(ss.tls, kind), "source tls '%s'", ss.tls);
	cr_assert_str_eq(ss.tls, ds.tls);
	cr_assert_eq(ss.channels, channels);
	cr_assert_str_eq(ss.transport, channels ? "tcp-multi" : "tcp");
	/* Encrypting is a copy, and the statistics say so. */
	cr_assert_geq(ss.memcpy_bytes, ss.normal_bytes);
	cr_assert_gt(ss.normal_bytes, 0);
	cr_assert_eq(bench_guest_compare(src->guest, dst->guest, why, sizeof(why)), 0, "%s", why);
	bad = bench_guest_check_ab(dst->guest, why, sizeof(why));
	cr_assert_eq(bad, 0, "A-B check: %lu bad pages: %s", (unsigned long)bad, why);
}

static void migrate_ok(const struct ferry_tls_attr *ct, const struct ferry_tls_attr *st,
		       uint32_t channels, const char *host, const char *kind)
{
	struct side src, dst;

	make_side(&src, &small_live, true, ct, channels);
	make_side(&dst, &small_live, false, st, 0);
	usleep(100000);
	run(&src, &dst, host);
	expect_completed(&src, &dst, kind, channels);
	free_side(&src);
	free_side(&dst);
}

Test(engine_tls, x509_single_stream)
{
	migrate_ok(&(struct ferry_tls_attr){.x509_dir = ct_tls_path("good")},
		   &(struct ferry_tls_attr){.x509_dir = ct_tls_path("good")}, 0, "127.0.0.1",
		   "x509");
}

Test(engine_tls, x509_four_channels_with_client_certificate)
{
	migrate_ok(
	    &(struct ferry_tls_attr){.x509_dir = ct_tls_path("good"), .hostname = "localhost"},
	    &(struct ferry_tls_attr){.x509_dir = ct_tls_path("good"), .verify_peer = true}, 4,
	    "127.0.0.1", "x509");
}

Test(engine_tls, psk_two_channels)
{
	migrate_ok(&(struct ferry_tls_attr){.psk_file = ct_tls_path("psk.key")},
		   &(struct ferry_tls_attr){.psk_file = ct_tls_path("psk.key")}, 2, "127.0.0.1",
		   "psk");
}

/*
 * A refused migration: both sides fail with a message, the destination with
 * @dst_err when given; the source's idle guest is byte for byte what it was,
 * and a running one's vCPUs run again.
 */
static void migrate_refused(const struct ferry_tls_attr *ct, const struct ferry_tls_attr *st,
			    uint32_t channels, uint32_t vcpus, int dst_err, const char *msg)
{
	struct bench_guest_attr a = small_live;
	struct bench_devices dev_control;
	struct ferry_stats ss, ds;
	struct side src, dst;
	uint8_t *ram, *control;
	uint64_t len;
	char why[128];

	a.vcpus = vcpus;
	make_side(&src, &a, true, ct, channels);
	make_side(&dst, &a, false, st, 0);
	ram = bench_guest_ram(src.guest, &len);
	control = malloc(len);
	cr_assert_not_null(control);
	memcpy(control, ram, len);
	dev_control = *bench_guest_devices(src.guest);
	run(&src, &dst, "127.0.0.1");
	ferry_engine_get_stats(src.eng, &ss);
	ferry_engine_get_stats(dst.eng, &ds);
	cr_assert_eq(ss.status, FERRY_STATUS_FAILED, "source %s", ferry_status_name(ss.status));
	cr_assert_eq(ds.status, FERRY_STATUS_FAILED, "destination %s",
		     ferry_status_name(ds.status));
	cr_assert_neq(ss.error_msg[0], '\0');
	cr_assert_neq(ds.error_msg[0], '\0');
	if (dst_err)
		cr_assert_eq(ds.error, dst_err, "destination: %s (%s)", ferry_err_name(ds.error),
			     ds.error_msg);
	cr_assert(strstr(ss.error_msg, msg) || strstr(ds.error_msg, msg),
		  "neither message says '%s': source '%s', destination '%s'", msg, ss.error_msg,
		  ds.error_msg);
	if (vcpus == 0) {
		cr_assert_eq(memcmp(control, ram, len), 0, "the source's RAM changed");
	} else {
		uint64_t w0 = bench_guest_page_writes(src.guest);

		usleep(50000);
		cr_assert_gt(bench_guest_page_writes(src.guest), w0, "the source's vCPUs stopped");
	}
	cr_assert_eq(
	    bench_devices_compare(&dev_control, bench_guest_devices(src.guest), why, sizeof(why)),
	    0, "device field %s changed", why);
	free(control);
	free_side(&src);
	free_side(&dst);
}

Test(engine_tls, wrong_ca_refused)
{
	migrate_refused(&(struct ferry_tls_attr){.x509_dir = ct_tls_path("otherca")},
			&(struct ferry_tls_attr){.x509_dir = ct_tls_path("good")}, 0, 0, 0,
			"peer failed authentication");
}

Test(engine_tls, wrong_hostname_refused_with_running_guest)
{
	migrate_refused(
	    &(struct ferry_tls_attr){.x509_dir = ct_tls_path("good"), .hostname = "example.org"},
	    &(struct ferry_tls_attr){.x509_dir = ct_tls_path("good")}, 0, 2, 0,
	    "peer failed authentication");
}

Test(engine_tls, expired_client_certificate_refused)
{
	migrate_refused(
	    &(struct ferry_tls_attr){.x509_dir = ct_tls_path("expiredclient")},
	    &(struct ferry_tls_attr){.x509_dir = ct_tls_path("good"), .verify_peer = true}, 0, 0,
	    FERRY_EAUTH, "peer failed authentication");
}

Test(engine_tls, untrusted_client_certificate_refused_on_channels)
{
	migrate_refused(
	    &(struct ferry_tls_attr){.x509_dir = ct_tls_path("untrustedclient")},
	    &(struct ferry_tls_attr){.x509_dir = ct_tls_path("good"), .verify_peer = true}, 4, 0,
	    FERRY_EAUTH, "peer failed authentication");
}

Test(engine_tls, psk_wrong_key_refused)
{
	migrate_refused(&(struct ferry_tls_attr){.psk_file = ct_tls_path("psk-wrong.key")},
			&(struct ferry_tls_attr){.psk_file = ct_tls_path("psk.key")}, 0, 0,
			FERRY_EAUTH, "peer failed authentication");
}

Test(engine_tls, plaintext_source_against_tls_destination)
{
	migrate_refused(NULL, &(struct ferry_tls_attr){.x509_dir = ct_tls_path("good")}, 0, 0,
			FERRY_ETLS, "TLS");
}

Test(engine_tls, tls_source_against_plaintext_destination)
{
	migrate_refused(&(struct ferry_tls_attr){.x509_dir = ct_tls_path("good")}, NULL, 0, 0,
			FERRY_EBADMAGIC, "TLS handshake");
}

Test(engine_tls, refused_before_any_connection)
{
	struct side src;
	struct ferry_params p = {.channels = 2, .zerocopy = true};

	make_side(&src, &small_live, true,
		  &(struct ferry_tls_attr){.x509_dir = ct_tls_path("good")}, 0);
	/* TLS needs a socket, and cannot send pages in place. */
	cr_assert_eq(ferry_migrate(src.eng, "file:/tmp/ferry-tls-never", NULL, NULL),
		     FERRY_EBADURI);
	cr_assert_eq(ferry_engine_set_params(src.eng, &p), 0);
	cr_assert_eq(ferry_migrate(src.eng, "tcp:127.0.0.1:1", NULL, NULL), -EINVAL);
	p.zerocopy = false;
	cr_assert_eq(ferry_engine_set_params(src.eng, &p), 0);
	/* Credentials that do not load fail the start, not the migration. */
	cr_assert_eq(ferry_engine_set_tls(src.eng, &(struct ferry_tls_attr){.x509_dir = "/nope"}),
		     0);
	cr_assert_eq(ferry_migrate(src.eng, "tcp:127.0.0.1:1", NULL, NULL), -ENOENT);
	cr_assert_eq(ferry_engine_set_tls(src.eng, &(struct ferry_tls_attr){0}), -EINVAL);
	cr_assert_eq(access("/tmp/ferry-tls-never", F_OK), -1);
	free_side(&src);
}
