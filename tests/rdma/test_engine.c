/* SPDX-License-Identifier: MIT */
/*
 * The engine over the RDMA data path (rdma/datapath.c, docs/data-path.md):
 * live migrations of the synthetic guest between two engines in this
 * process with rdma:HOST:PORT URIs. With a device (the soft-RoCE rig) the
 * pages go by RDMA WRITE, pin-all and chunked, over 1, 2 and 4 queue pairs;
 * without one, the same URI completes over TCP lanes (the fallback), or
 * fails cleanly when the fallback is forbidden. Every completed migration
 * ends with a page-by-page comparison and the A-B check.
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
#include <ferry/rdma.h>

#include "bench/guest.h"
#include "channels/helpers.h"
#include "engine/talker.h"
#include "helpers.h"

struct side {
	struct ferry_engine *eng;
	struct bench_guest *guest;
};

/* Small and slowly dirtied: the rig emulates its CPUs (TCG). */
static const struct bench_guest_attr guest_attr = {
    .ram_bytes = 32u << 20,
    .vcpus = 2,
    .dirty_rate = 2u << 20,
    .pattern = BENCH_PATTERN_AB,
    .fill_seed = 42,
};

static void make_side_dirty(struct side *s, bool source, const struct ferry_params *p,
			    enum bench_dirty_kind dirty)
{
	struct bench_guest_attr a = guest_attr;

	a.dirty = dirty;
	cr_assert_eq(ferry_engine_create(&s->eng), 0);
	if (!source)
		a.fill_seed = 1042; /* other RAM: everything must arrive */
	cr_assert_eq(bench_guest_create(&a, &s->guest), 0);
	if (source) {
		cr_assert_eq(bench_guest_attach_source(s->guest, s->eng), 0);
	} else {
		bench_devices_fill(bench_guest_devices(s->guest), 0xdead);
		cr_assert_eq(bench_guest_attach_dest(s->guest, s->eng), 0);
	}
	cr_assert_eq(ferry_engine_set_params(s->eng, p), 0);
}

static void make_side(struct side *s, bool source, const struct ferry_params *p)
{
	make_side_dirty(s, source, p, BENCH_DIRTY_AUTO);
}

static void free_side(struct side *s)
{
	ferry_engine_destroy(s->eng);
	bench_guest_destroy(s->guest);
}

static void stats_of(struct side *s, struct ferry_stats *st)
{
	ferry_engine_get_stats(s->eng, st);
}

/* After a failed migration: the source's vCPUs run on and its memory is consistent. */
static void expect_source_unharmed(struct side *src)
{
	char why[512];
	uint64_t w0;

	/* 2 MiB/s over 2 vCPUs: a batch of 64 page writes every 250 ms each. */
	w0 = bench_guest_page_writes(src->guest);
	usleep(1000000);
	cr_assert_gt(bench_guest_page_writes(src->guest), w0, "the source's vCPUs stopped");
	bench_guest_stop_vcpus(src->guest);
	cr_assert_eq(bench_guest_check_ab(src->guest, why, sizeof(why)), 0, "%s", why);
}

/* Destination on rdma:HOST:0, then the source on rdma:HOST:<its port>; wait for both. */
static void migrate(struct side *src, struct side *dst, const char *host)
{
	char uri[128];

	snprintf(uri, sizeof(uri), "rdma:%s:0", host);
	cr_assert_eq(ferry_incoming(dst->eng, uri, NULL, NULL), 0);
	snprintf(uri, sizeof(uri), "rdma:%s:%d", host, ferry_engine_listen_port(dst->eng));
	cr_assert_eq(ferry_migrate(src->eng, uri, NULL, NULL), 0);
	ferry_engine_wait(src->eng);
	ferry_engine_wait(dst->eng);
}

static void expect_completed(struct side *s, const char *who)
{
	struct ferry_stats st;

	stats_of(s, &st);
	cr_assert_eq(st.status, FERRY_STATUS_COMPLETED, "%s: %s (%s)", who,
		     ferry_status_name(st.status), st.error_msg);
}

static void expect_consistent(struct side *src, struct side *dst)
{
	char why[512];
	uint64_t bad;

	cr_assert_eq(bench_guest_compare(src->guest, dst->guest, why, sizeof(why)), 0, "%s", why);
	bad = bench_guest_check_ab(dst->guest, why, sizeof(why));
	cr_assert_eq(bad, 0, "A-B check: %lu bad pages: %s", (unsigned long)bad, why);
}

TestSuite(rdma_engine, .timeout = 240);

/* ---- with a device (the rig) ---------------------------------------------------------- */

/*
 * @dirty: the source's dirty log. Chunked registration happens while the
 * migration runs, so it cannot use a userfaultfd write-protect log on
 * Linux < 6.2 (the rig's 6.1 pins for write: EFAULT); pin-all registers
 * before the log starts and works with either (docs/rdma.md).
 */
static void over_rdma(const char *reg, uint32_t qps, enum bench_dirty_kind dirty)
{
	struct ferry_params p = {
	    .channels = qps, .rdma_registration = reg, .no_fallback = true, .timeout_ms = 180000};
	struct ferry_worker_stats ws[FERRY_MAX_CHANNELS];
	struct side src, dst;
	struct ferry_stats s, d;
	struct rt_env env;
	int n;

	rt_env_or_skip(&env);
	make_side_dirty(&src, true, &p, dirty);
	make_side(&dst, false, &p);
	migrate(&src, &dst, env.ip);
	expect_completed(&src, "source");
	expect_completed(&dst, "destination");
	expect_consistent(&src, &dst);

	stats_of(&src, &s);
	stats_of(&dst, &d);
	cr_assert_str_eq(s.transport, "rdma");
	cr_assert_str_eq(d.transport, "rdma");
	cr_assert_eq(s.channels, qps);
	cr_assert_eq(d.channels, qps);
	cr_assert_str_eq(s.fallback_reason, "");
	cr_assert_str_eq(d.fallback_reason, "");
	cr_assert_str_eq(s.registration, reg, "source registered %s", s.registration);
	cr_assert_str_eq(d.registration, reg, "destination registered %s", d.registration);
	cr_assert_gt(s.registration_us + d.registration_us, 0);
	/* Zero copy: RDMA WRITE from guest RAM to guest RAM. */
	cr_assert_eq(s.memcpy_bytes, 0);
	cr_assert_eq(d.memcpy_bytes, 0);
	cr_assert_geq(s.normal_pages + s.zero_pages, guest_attr.ram_bytes / 4096);
	cr_assert_geq(s.transferred, s.normal_bytes);
	/* The destination's counters: the source's account, carried by its flushes. */
	cr_assert_eq(d.normal_pages, s.normal_pages, "destination %lu pages, source %lu",
		     (unsigned long)d.normal_pages, (unsigned long)s.normal_pages);
	cr_assert_eq(d.zero_pages, s.zero_pages, "destination %lu zero pages, source %lu",
		     (unsigned long)d.zero_pages, (unsigned long)s.zero_pages);
	cr_assert_eq(d.normal_bytes, s.normal_bytes);
	n = ferry_engine_get_worker_stats(src.eng, ws, FERRY_MAX_CHANNELS);
	cr_assert_eq(n, (int)qps);
	for (int i = 0; i < n; i++) {
		cr_assert_gt(ws[i].packets, 0, "lane %d: no RDMA WRITE", i);
		cr_assert_gt(ws[i].sync_round, 0, "lane %d: never flushed", i);
		cr_assert_eq(ws[i].syscalls, 0, "lane %d: posting is no system call", i);
	}
	n = ferry_engine_get_worker_stats(dst.eng, ws, FERRY_MAX_CHANNELS);
	cr_assert_eq(n, (int)qps);
	for (int i = 0; i < n; i++)
		cr_assert_gt(ws[i].sync_round, 0, "destination lane %d: no flush seen", i);
	free_side(&src);
	free_side(&dst);
}

/*
 * TLS on the main stream (PSK: no certtool needed in the rig): the queue
 * pairs must present the authenticator keyed from that TLS session, and the
 * destination verifies every one of them.
 */
Test(rdma_engine, tls_main_stream_authenticates_the_queue_pairs)
{
	struct ferry_params p = {.channels = 2,
				 .rdma_registration = "pin-all",
				 .no_fallback = true,
				 .timeout_ms = 180000};
	char psk[64];
	struct side src, dst;
	struct ferry_stats s, d;
	struct rt_env env;

	rt_env_or_skip(&env);
	ct_psk_file(psk, sizeof(psk));
	make_side(&src, true, &p);
	make_side(&dst, false, &p);
	cr_assert_eq(ferry_engine_set_tls(src.eng, &(struct ferry_tls_attr){.psk_file = psk}), 0);
	cr_assert_eq(ferry_engine_set_tls(dst.eng, &(struct ferry_tls_attr){.psk_file = psk}), 0);
	ct_log_capture();
	migrate(&src, &dst, env.ip);
	unlink(psk);
	expect_completed(&src, "source");
	expect_completed(&dst, "destination");
	expect_consistent(&src, &dst);
	stats_of(&src, &s);
	stats_of(&dst, &d);
	cr_assert_str_eq(s.transport, "rdma");
	cr_assert(strstr(s.tls, "psk"), "source tls '%s'", s.tls);
	cr_assert_str_eq(s.tls, d.tls);
	cr_assert(ct_log_has("lane 0 from"), "lane 0 was not authenticated");
	cr_assert(ct_log_has("lane 1 from"), "lane 1 was not authenticated");
	cr_assert(ct_log_has("authenticator verified"));
	free_side(&src);
	free_side(&dst);
}

Test(rdma_engine, pin_all_1_qp)
{
	over_rdma("pin-all", 1, BENCH_DIRTY_AUTO);
}

Test(rdma_engine, pin_all_2_qps)
{
	over_rdma("pin-all", 2, BENCH_DIRTY_AUTO);
}

Test(rdma_engine, pin_all_4_qps)
{
	over_rdma("pin-all", 4, BENCH_DIRTY_AUTO);
}

Test(rdma_engine, chunked_1_qp)
{
	over_rdma("chunked", 1, BENCH_DIRTY_EXPLICIT);
}

Test(rdma_engine, chunked_2_qps)
{
	over_rdma("chunked", 2, BENCH_DIRTY_EXPLICIT);
}

Test(rdma_engine, chunked_4_qps)
{
	over_rdma("chunked", 4, BENCH_DIRTY_EXPLICIT);
}

/*
 * The destination cannot take RDMA lanes (ODP asked of a device without it):
 * it says so on the return path, and the source, connecting its queue pairs
 * meanwhile, falls back to TCP lanes on hearing it instead of at the end of
 * its 20 s connect. With @tls the return path runs inside TLS.
 */
static void fallback_when_the_destination_cannot(bool tls)
{
	struct ferry_params ps = {
	    .channels = 2, .rdma_registration = "pin-all", .timeout_ms = 180000};
	struct ferry_params pd = {.rdma_registration = "odp"};
	struct side src, dst;
	struct ferry_stats s, d;
	struct rt_env env;
	char psk[64];

	rt_env_or_skip(&env);
	if (env.dev.odp)
		cr_skip_test("%s has ODP: the destination would not fail", env.dev.name);
	make_side(&src, true, &ps);
	make_side(&dst, false, &pd);
	if (tls) {
		ct_psk_file(psk, sizeof(psk));
		cr_assert_eq(
		    ferry_engine_set_tls(src.eng, &(struct ferry_tls_attr){.psk_file = psk}), 0);
		cr_assert_eq(
		    ferry_engine_set_tls(dst.eng, &(struct ferry_tls_attr){.psk_file = psk}), 0);
	}
	migrate(&src, &dst, env.ip);
	if (tls)
		unlink(psk);
	expect_completed(&src, "source");
	expect_completed(&dst, "destination");
	expect_consistent(&src, &dst);
	stats_of(&src, &s);
	stats_of(&dst, &d);
	cr_log_info("fell back after %lu ms of setup (total %lu ms): %s", (unsigned long)s.setup_ms,
		    (unsigned long)s.total_ms, s.fallback_reason);
	cr_assert_str_eq(s.transport, "tcp-multi");
	cr_assert_str_eq(d.transport, "tcp-multi");
	cr_assert(strstr(s.fallback_reason, "the destination cannot take them"),
		  "the source did not hear the destination's refusal: '%s'", s.fallback_reason);
	cr_assert_neq(d.fallback_reason[0], '\0');
	cr_assert_str_eq(s.registration, "");
	if (tls)
		cr_assert(strstr(s.tls, "psk"), "source tls '%s'", s.tls);
	free_side(&src);
	free_side(&dst);
}

Test(rdma_engine, fallback_when_the_destination_cannot, .timeout = 240)
{
	fallback_when_the_destination_cannot(false);
}

Test(rdma_engine, fallback_when_the_destination_cannot_over_tls, .timeout = 240)
{
	fallback_when_the_destination_cannot(true);
}

/*
 * While the queue pairs connect, the destination writes SHUT (it failed)
 * instead of a refusal: heard at once, and a failure, not a reason to fall
 * back to TCP lanes (talker.h: nothing listens for rdma_cm on PORT + 1).
 */
Test(rdma_engine, destination_failing_while_the_queue_pairs_connect_is_no_fallback, .timeout = 120)
{
	struct ferry_params p = {
	    .channels = 2, .rdma_registration = "pin-all", .timeout_ms = 60000};
	struct talker t;
	struct side src;
	struct ferry_stats s;
	struct rt_env env;
	uint8_t m[16];
	char uri[128];

	rt_env_or_skip(&env);
	talker_start(&t, env.ip, m, talker_rp_msg(m, 1, 4, 7, NULL), false);
	make_side(&src, true, &p);
	snprintf(uri, sizeof(uri), "rdma:%s:%d", env.ip, t.port);
	cr_assert_eq(ferry_migrate_sync(src.eng, uri), FERRY_STATUS_FAILED);
	stats_of(&src, &s);
	cr_log_info("failed after %lu ms: %s", (unsigned long)s.total_ms, s.error_msg);
	cr_assert_eq(s.error, FERRY_EPEERABORT, "%s: %s", ferry_err_name(s.error), s.error_msg);
	cr_assert(
	    strstr(s.error_msg, "the destination failed while the lanes connected (status 7)"),
	    "%s", s.error_msg);
	cr_assert_str_eq(s.fallback_reason, "", "fell back: %s", s.fallback_reason);
	expect_source_unharmed(&src);
	talker_stop(&t);
	free_side(&src);
}

/* ---- without a device (any host without RDMA) ------------------------------------------ */

static void skip_if_rdma(void)
{
	struct ferry_rdma_device_info dev;

	rt_log_stderr();
	if (ferry_rdma_devices(&dev, 1) > 0)
		cr_skip_test("this host has an RDMA device (%s): the no-device fallback needs one "
			     "without",
			     dev.name);
}

Test(rdma_engine, falls_back_to_tcp_without_a_device)
{
	struct ferry_params p = {.channels = 2};
	struct side src, dst;
	struct ferry_stats s, d;

	skip_if_rdma();
	make_side(&src, true, &p);
	make_side(&dst, false, &(struct ferry_params){0});
	migrate(&src, &dst, "127.0.0.1");
	expect_completed(&src, "source");
	expect_completed(&dst, "destination");
	expect_consistent(&src, &dst);
	stats_of(&src, &s);
	stats_of(&dst, &d);
	cr_assert_str_eq(s.transport, "tcp-multi");
	cr_assert_str_eq(d.transport, "tcp-multi");
	cr_assert_eq(s.channels, 2);
	cr_assert_eq(d.channels, 2);
	cr_assert(strstr(s.fallback_reason, "no usable RDMA device"), "source: '%s'",
		  s.fallback_reason);
	cr_assert(strstr(d.fallback_reason, "rdma"), "destination: '%s'", d.fallback_reason);
	cr_assert_str_eq(s.registration, "");
	cr_assert_eq(s.memcpy_bytes, 0);
	free_side(&src);
	free_side(&dst);
}

/* An explicit rdma_port above 65535 is refused; 1..65535 and 0 (PORT + 1) are taken. */
Test(rdma_engine, rdma_port_out_of_range_is_refused)
{
	struct ferry_engine *eng;

	rt_log_stderr();
	cr_assert_eq(ferry_engine_create(&eng), 0);
	cr_assert_eq(ferry_engine_set_params(eng, &(struct ferry_params){.rdma_port = 65536}),
		     -EINVAL);
	cr_assert_eq(ferry_engine_set_params(eng, &(struct ferry_params){.rdma_port = 1u << 31}),
		     -EINVAL);
	cr_assert_eq(ferry_engine_set_params(eng, &(struct ferry_params){.rdma_port = 65535}), 0);
	cr_assert_eq(ferry_engine_set_params(eng, &(struct ferry_params){.rdma_port = 0}), 0);
	ferry_engine_destroy(eng);
}

/* With an explicit rdma_port on both sides, a host without a device still falls back. */
Test(rdma_engine, falls_back_with_an_explicit_rdma_port)
{
	struct ferry_params p = {.rdma_port = 65535};
	struct side src, dst;
	struct ferry_stats s, d;

	skip_if_rdma();
	make_side(&src, true, &p);
	make_side(&dst, false, &p);
	migrate(&src, &dst, "127.0.0.1");
	expect_completed(&src, "source");
	expect_completed(&dst, "destination");
	expect_consistent(&src, &dst);
	stats_of(&src, &s);
	stats_of(&dst, &d);
	cr_assert_str_eq(s.transport, "tcp-multi");
	cr_assert_str_eq(d.transport, "tcp-multi");
	cr_assert(strstr(s.fallback_reason, "no usable RDMA device"), "source: '%s'",
		  s.fallback_reason);
	free_side(&src);
	free_side(&dst);
}

/* rdma: without --channels uses one lane, and still falls back. */
Test(rdma_engine, one_lane_by_default)
{
	struct side src, dst;
	struct ferry_stats s;

	skip_if_rdma();
	make_side(&src, true, &(struct ferry_params){0});
	make_side(&dst, false, &(struct ferry_params){0});
	migrate(&src, &dst, "127.0.0.1");
	expect_completed(&src, "source");
	expect_completed(&dst, "destination");
	expect_consistent(&src, &dst);
	stats_of(&src, &s);
	cr_assert_str_eq(s.transport, "tcp-multi");
	cr_assert_eq(s.channels, 1);
	free_side(&src);
	free_side(&dst);
}

Test(rdma_engine, fallback_forbidden_fails_cleanly)
{
	struct ferry_params p = {.channels = 2, .no_fallback = true};
	struct side src, dst;
	struct ferry_stats s, d;

	skip_if_rdma();
	make_side(&src, true, &p);
	make_side(&dst, false, &(struct ferry_params){0});
	migrate(&src, &dst, "127.0.0.1");
	stats_of(&src, &s);
	stats_of(&dst, &d);
	cr_assert_eq(s.status, FERRY_STATUS_FAILED, "source: %s", ferry_status_name(s.status));
	cr_assert_eq(s.error, FERRY_ENORDMA, "source error %d: %s", s.error, s.error_msg);
	cr_assert(strstr(s.error_msg, "forbidden") && strstr(s.error_msg, "RDMA"), "'%s'",
		  s.error_msg);
	cr_assert_eq(d.status, FERRY_STATUS_FAILED, "destination: %s", ferry_status_name(d.status));
	expect_source_unharmed(&src);
	free_side(&src);
	free_side(&dst);
}

/* ---- mid-migration: the device goes away (the rig only) -------------------------------- */

/*
 * `rdma link delete` while the pages move: every queue pair fails (-ENODEV),
 * the source puts back what is not known to be placed, moves to TCP lanes
 * (a HOOK record on the main stream tells the destination) and completes.
 * The delete itself only finishes once this process exits (librdmacm keeps
 * the device open; docs/rdma.md), so it runs in the background, and
 * guest-suite.sh runs this suite alone and adds the device back after it.
 */
Test(rdma_failover, device_removed_mid_migration, .timeout = 240)
{
	struct ferry_params p = {.channels = 2,
				 .rdma_registration = "pin-all",
				 .max_bandwidth = 4u << 20,
				 .timeout_ms = 180000};
	struct side src, dst;
	struct ferry_stats s, d;
	struct rt_env env;
	char uri[128], cmd[160];
	int waited = 0;

	rt_require_rig();
	rt_env_or_skip(&env);
	make_side(&src, true, &p);
	make_side(&dst, false, &p);
	snprintf(uri, sizeof(uri), "rdma:%s:0", env.ip);
	cr_assert_eq(ferry_incoming(dst.eng, uri, NULL, NULL), 0);
	snprintf(uri, sizeof(uri), "rdma:%s:%d", env.ip, ferry_engine_listen_port(dst.eng));
	cr_assert_eq(ferry_migrate(src.eng, uri, NULL, NULL), 0);
	/* A quarter of the bulk round over RDMA (4 MiB/s cap), then the device goes. */
	for (;;) {
		stats_of(&src, &s);
		cr_assert_lt(s.status, FERRY_STATUS_COMPLETED, "ended before the fault: %s",
			     s.error_msg);
		if (strcmp(s.transport, "rdma") == 0 && s.normal_bytes >= guest_attr.ram_bytes / 4)
			break;
		cr_assert_lt(waited, 60000, "no progress over RDMA");
		usleep(50000);
		waited += 50;
	}
	snprintf(cmd, sizeof(cmd), "rdma link delete %s >/dev/null 2>&1 &", env.dev.name);
	cr_assert_eq(system(cmd), 0);
	ferry_engine_wait(src.eng);
	ferry_engine_wait(dst.eng);
	expect_completed(&src, "source");
	expect_completed(&dst, "destination");
	expect_consistent(&src, &dst);
	stats_of(&src, &s);
	stats_of(&dst, &d);
	cr_assert_str_eq(s.transport, "tcp-multi");
	cr_assert_str_eq(d.transport, "tcp-multi");
	cr_assert(strstr(s.fallback_reason, "mid-migration"), "source: '%s'", s.fallback_reason);
	cr_assert(strstr(d.fallback_reason, "mid-migration"), "destination: '%s'",
		  d.fallback_reason);
	cr_assert_eq(s.channels, 2);
	/* What the RDMA part registered stays reported; every page went at least once. */
	cr_assert_str_eq(s.registration, "pin-all");
	cr_assert_geq(s.normal_pages + s.zero_pages, guest_attr.ram_bytes / 4096);
	free_side(&src);
	free_side(&dst);
}
