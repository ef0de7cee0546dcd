/* SPDX-License-Identifier: MIT */
/*
 * Migrations over the multi-channel data path (docs/data-path.md): the
 * synthetic guest between two engines in this process, over real loopback
 * sockets, with 1 to 8 data connections. Every successful case ends with the
 * A-B check and a page-by-page comparison. The fault cases put a forwarding
 * proxy between the two sides that drops, corrupts or adds connections.
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <ferry/engine.h>
#include <ferry/error.h>
#include <ferry/inspect.h>
#include <ferry/log.h>
#include <ferry/rdma.h>

#include "bench/guest.h"
#include "fault_proxy.h"
#include "talker.h"

struct side {
	struct ferry_engine *eng;
	struct bench_guest *guest;
};

static void make_side(struct side *s, const struct bench_guest_attr *attr, bool source)
{
	struct bench_guest_attr a = *attr;

	cr_assert_eq(ferry_engine_create(&s->eng), 0);
	if (!source) {
		/* The destination starts from other RAM and devices: everything must arrive.
		 * (Its vCPU count only shapes the A-B check: attach_dest starts none.) */
		a.fill_seed = attr->fill_seed ? attr->fill_seed + 1000 : 7;
	}
	cr_assert_eq(bench_guest_create(&a, &s->guest), 0);
	if (source) {
		cr_assert_eq(bench_guest_attach_source(s->guest, s->eng), 0);
	} else {
		bench_devices_fill(bench_guest_devices(s->guest), 0xdead);
		cr_assert_eq(bench_guest_attach_dest(s->guest, s->eng), 0);
	}
}

static void free_side(struct side *s)
{
	ferry_engine_destroy(s->eng);
	bench_guest_destroy(s->guest);
}

static void set_channels(struct side *s, uint32_t channels, const struct ferry_params *base)
{
	struct ferry_params p = base ? *base : (struct ferry_params){0};

	p.channels = channels;
	cr_assert_eq(ferry_engine_set_params(s->eng, &p), 0);
}

static void expect_consistent(struct side *src, struct side *dst)
{
	char why[512];
	uint64_t bad;

	cr_assert_eq(bench_guest_compare(src->guest, dst->guest, why, sizeof(why)), 0, "%s", why);
	bad = bench_guest_check_ab(dst->guest, why, sizeof(why));
	cr_assert_eq(bad, 0, "A-B check: %lu bad pages: %s", (unsigned long)bad, why);
}

static void expect_status(struct ferry_engine *eng, enum ferry_status want, const char *who)
{
	struct ferry_stats st;

	ferry_engine_get_stats(eng, &st);
	cr_assert_eq(st.status, want, "%s: status %s, expected %s (%s)", who,
		     ferry_status_name(st.status), ferry_status_name(want), st.error_msg);
}

/* After a failed or cancelled migration: the source's vCPUs write again. */
static void expect_vcpus_resumed(struct side *src)
{
	uint64_t w0 = bench_guest_page_writes(src->guest);

	usleep(50000);
	cr_assert_gt(bench_guest_page_writes(src->guest), w0, "the source's vCPUs did not resume");
}

/* Start the destination on @dst_uri, then the source on @src_uri (":PORT" completed). */
static void start_pair(struct side *src, struct side *dst, const char *src_uri, const char *dst_uri,
		       int port_override)
{
	char uri[256];
	size_t n = strlen(src_uri);

	cr_assert_eq(ferry_incoming(dst->eng, dst_uri, NULL, NULL), 0);
	if (n > 5 && strcmp(src_uri + n - 5, ":PORT") == 0)
		snprintf(uri, sizeof(uri), "%.*s:%d", (int)(n - 5), src_uri,
			 port_override ? port_override : ferry_engine_listen_port(dst->eng));
	else
		snprintf(uri, sizeof(uri), "%s", src_uri);
	cr_assert_eq(ferry_migrate(src->eng, uri, NULL, NULL), 0);
}

static void migrate_pair(struct side *src, struct side *dst, const char *src_uri,
			 const char *dst_uri)
{
	start_pair(src, dst, src_uri, dst_uri, 0);
	ferry_engine_wait(src->eng);
	ferry_engine_wait(dst->eng);
	expect_status(src->eng, FERRY_STATUS_COMPLETED, "source");
	expect_status(dst->eng, FERRY_STATUS_COMPLETED, "destination");
}

static const struct bench_guest_attr small_live = {
    .ram_bytes = 64u << 20,
    .vcpus = 2,
    .dirty_rate = 20u << 20,
    .pattern = BENCH_PATTERN_AB,
    .fill_seed = 42,
};

/* What every data-path migration must show in its statistics, on both sides. */
static void expect_datapath_stats(struct side *s, uint32_t channels, const char *who)
{
	struct ferry_stats st;
	struct ferry_worker_stats ws[FERRY_MAX_CHANNELS];
	uint64_t pages = 0, zero = 0, bytes = 0, ram = 0;
	int n;

	ferry_engine_get_stats(s->eng, &st);
	cr_assert_str_eq(st.transport, "tcp-multi", "%s", who);
	cr_assert_eq(st.channels, channels, "%s", who);
	/* Zero copy on this path: not one page byte through a user-space copy. */
	cr_assert_eq(st.memcpy_bytes, 0, "%s: %lu bytes copied", who,
		     (unsigned long)st.memcpy_bytes);
	cr_assert_gt(st.normal_bytes, 0, "%s", who);
	cr_assert_gt(st.syscalls, 0, "%s", who);
	/* A few syscalls per MiB, not one per page. */
	cr_assert_lt(st.syscalls / (st.normal_bytes >> 20 ? st.normal_bytes >> 20 : 1), 64,
		     "%s: %lu syscalls for %lu MiB", who, (unsigned long)st.syscalls,
		     (unsigned long)(st.normal_bytes >> 20));
	n = ferry_engine_get_worker_stats(s->eng, ws, FERRY_MAX_CHANNELS);
	cr_assert_eq(n, (int)channels, "%s: %d workers", who, n);
	for (int i = 0; i < n; i++) {
		cr_assert_eq(ws[i].index, (uint32_t)i);
		cr_assert_gt(ws[i].ram_bytes, 0, "%s: worker %d owns no RAM", who, i);
		cr_assert_eq(ws[i].bytes, ws[i].pages * 4096);
		cr_assert_geq(ws[i].wire_bytes, ws[i].bytes);
		cr_assert_gt(ws[i].packets, 0, "%s: worker %d sent nothing", who, i);
		cr_assert_gt(ws[i].sync_round, 0, "%s: worker %d never synced", who, i);
		pages += ws[i].pages;
		zero += ws[i].zero_pages;
		bytes += ws[i].bytes;
		ram += ws[i].ram_bytes;
	}
	cr_assert_eq(ram, st.total_ram, "%s: the workers own %lu of %lu bytes", who,
		     (unsigned long)ram, (unsigned long)st.total_ram);
	cr_assert_eq(pages, st.normal_pages, "%s", who);
	cr_assert_eq(zero, st.zero_pages, "%s", who);
	cr_assert_eq(bytes, st.normal_bytes, "%s", who);
}

static void init(void)
{
	if (getenv("FERRY_TEST_LOG"))
		ferry_set_log(ferry_log_stderr, NULL, FERRY_LOG_DEBUG);
}

TestSuite(engine_datapath, .init = init, .timeout = 120);

static void live_over_channels(uint32_t channels)
{
	struct side src, dst;
	struct ferry_stats st;

	make_side(&src, &small_live, true);
	make_side(&dst, &small_live, false);
	set_channels(&src, channels, NULL);
	usleep(50000);
	migrate_pair(&src, &dst, "tcp:127.0.0.1:PORT", "tcp:127.0.0.1:0");
	expect_consistent(&src, &dst);
	expect_datapath_stats(&src, channels, "source");
	expect_datapath_stats(&dst, channels, "destination");
	ferry_engine_get_stats(src.eng, &st);
	/* Every page once in the bulk round, and the dirtied ones again. */
	cr_assert_geq(st.normal_pages + st.zero_pages, (64u << 20) / 4096);
	cr_assert_geq(st.rounds, 1);
	free_side(&src);
	free_side(&dst);
}

Test(engine_datapath, live_guest_over_1_channel)
{
	live_over_channels(1);
}

Test(engine_datapath, live_guest_over_2_channels)
{
	live_over_channels(2);
}

Test(engine_datapath, live_guest_over_4_channels)
{
	live_over_channels(4);
}

Test(engine_datapath, live_guest_over_8_channels)
{
	live_over_channels(8);
}

Test(engine_datapath, unix_with_huge_pages_and_zerocopy)
{
	struct bench_guest_attr a = small_live;
	struct ferry_params p = {.zerocopy = true};
	struct side src, dst;
	char path[64], uri[80];

	a.huge = true;
	make_side(&src, &a, true);
	make_side(&dst, &a, false);
	set_channels(&src, 3, &p);
	snprintf(path, sizeof(path), "/tmp/ferry-dp-%d.sock", getpid());
	snprintf(uri, sizeof(uri), "unix:%s", path);
	migrate_pair(&src, &dst, uri, uri);
	expect_consistent(&src, &dst);
	expect_datapath_stats(&src, 3, "source");
	expect_datapath_stats(&dst, 3, "destination");
	free_side(&src);
	free_side(&dst);
}

Test(engine_datapath, zero_pages_clear_the_destination)
{
	/* An all-zero source over a destination full of data: zero runs must clear it. */
	struct bench_guest_attr a = small_live;
	struct side src, dst;
	struct ferry_stats st;
	uint64_t len;
	uint8_t *ram;

	a.vcpus = 0;
	a.fill_seed = 0;
	make_side(&src, &a, true);
	make_side(&dst, &a, false);
	ram = bench_guest_ram(dst.guest, &len);
	cr_assert_neq(ram[4096 + 8], 0, "the destination should start non-zero");
	set_channels(&src, 2, NULL);
	migrate_pair(&src, &dst, "tcp:127.0.0.1:PORT", "tcp:127.0.0.1:0");
	for (uint64_t i = 0; i < len; i += 8)
		cr_assert_eq(*(uint64_t *)(void *)(ram + i), 0, "byte %lu not cleared",
			     (unsigned long)i);
	ferry_engine_get_stats(src.eng, &st);
	cr_assert_eq(st.zero_pages, len / 4096);
	cr_assert_eq(st.normal_pages, 0);
	ferry_engine_get_stats(dst.eng, &st);
	cr_assert_eq(st.zero_pages, len / 4096);
	free_side(&src);
	free_side(&dst);
}

/* @a over 2 TCP lanes with @p: COMPLETED on both sides and page-by-page equal; *st the source's. */
static void migrate_2_lanes(const struct bench_guest_attr *a, const struct ferry_params *p,
			    struct ferry_stats *st)
{
	struct side src, dst;

	make_side(&src, a, true);
	make_side(&dst, a, false);
	set_channels(&src, 2, p);
	migrate_pair(&src, &dst, "tcp:127.0.0.1:PORT", "tcp:127.0.0.1:0");
	expect_consistent(&src, &dst);
	ferry_engine_get_stats(src.eng, st);
	free_side(&src);
	free_side(&dst);
}

Test(engine_datapath, bandwidth_cap_paces_the_workers)
{
	struct bench_guest_attr a = small_live;
	struct ferry_params p = {.max_bandwidth = 64u << 20};
	struct ferry_stats st;

	a.vcpus = 0;
	a.ram_bytes = 32u << 20;
	migrate_2_lanes(&a, &p, &st);
	/* 32 MiB at 64 MiB/s: half a second at least (a lower bound cannot be flaky). */
	cr_assert_geq(st.total_ms, 400, "32 MiB in %lu ms under a 64 MiB/s cap",
		      (unsigned long)st.total_ms);
}

/*
 * The cap is the data path's, whichever worker has the pages. Two vCPUs sweep
 * their halves of RAM in step, 8 MiB apart: a multiple of two 2 MiB chunks, so
 * once a round's dirty windows fit in a chunk they fall to the same worker.
 * With the cap split per worker (as it once was) that worker moved 4 MiB/s,
 * exactly the dirty rate, and the rounds never shrank below the 50 ms limit
 * (the rig's failover test hung on it for 180 s); drawn from one clock, the
 * rounds halve and the migration converges in a few seconds.
 */
Test(engine_datapath, bandwidth_cap_is_the_data_paths_not_each_workers)
{
	struct bench_guest_attr a = small_live;
	struct ferry_params p = {
	    .max_bandwidth = 8u << 20, .downtime_limit_ms = 50, .max_rounds = 40};
	struct ferry_stats st;

	a.ram_bytes = 16u << 20;
	a.dirty_rate = 4u << 20;
	/* Past max_rounds the migration fails: migrate_2_lanes() asserts COMPLETED. */
	migrate_2_lanes(&a, &p, &st);
	cr_log_info("converged after %lu rounds, %lu ms, downtime %lu ms", (unsigned long)st.rounds,
		    (unsigned long)st.total_ms, (unsigned long)st.downtime_ms);
}

Test(engine_datapath, channels_need_a_socket_uri)
{
	struct side src;
	struct ferry_stats st;
	char path[64], uri[80];

	snprintf(path, sizeof(path), "/tmp/ferry-dp-%d.qevm", getpid());
	snprintf(uri, sizeof(uri), "file:%s", path);
	make_side(&src, &small_live, true);
	set_channels(&src, 2, NULL);
	cr_assert_eq(ferry_migrate_sync(src.eng, uri), FERRY_STATUS_FAILED);
	ferry_engine_get_stats(src.eng, &st);
	cr_assert_eq(st.error, FERRY_EBADURI, "%s", st.error_msg);
	cr_assert(strstr(st.error_msg, "tcp:, unix: or rdma:"), "%s", st.error_msg);
	unlink(path);
	free_side(&src);
}

Test(engine_datapath, too_many_channels_refused)
{
	struct ferry_engine *eng;
	struct ferry_params p = {.channels = FERRY_MAX_CHANNELS + 1};

	cr_assert_eq(ferry_engine_create(&eng), 0);
	cr_assert_eq(ferry_engine_set_params(eng, &p), -EINVAL);
	ferry_engine_destroy(eng);
}

/* ---- through the fault proxy (fault_proxy.h) -------------------------------------------- */

/* Both sides through @px with @scheme URIs (tcp, rdma); returns once both ended. */
static void run_through_scheme(struct proxy *px, struct side *src, struct side *dst,
			       const char *scheme)
{
	char listen_uri[64];

	snprintf(listen_uri, sizeof(listen_uri), "%s:127.0.0.1:0", scheme);
	cr_assert_eq(ferry_incoming(dst->eng, listen_uri, NULL, NULL), 0);
	px_start(px, ferry_engine_listen_port(dst->eng));
	{
		char uri[64];

		snprintf(uri, sizeof(uri), "%s:127.0.0.1:%d", scheme, px->port);
		cr_assert_eq(ferry_migrate(src->eng, uri, NULL, NULL), 0);
	}
	ferry_engine_wait(src->eng);
	ferry_engine_wait(dst->eng);
}

static void run_through(struct proxy *px, struct side *src, struct side *dst)
{
	run_through_scheme(px, src, dst, "tcp");
}

/*
 * rdma: on a host without RDMA: the offer, then ferry-datapath-use naming
 * tcp-multi, both early FULL sections; the stream passes `inspect --strict`.
 */
Test(engine_datapath, rdma_fallback_stream_stays_a_valid_v3_stream)
{
	struct bench_guest_attr a = small_live;
	struct ferry_rdma_device_info dev;
	struct side src, dst;
	struct proxy px;
	struct ferry_stats st;
	char *json = NULL, *err = NULL;
	json_t *root, *secs, *s1, *s2;

	if (ferry_rdma_devices(&dev, 1) > 0)
		cr_skip_test("this host has an RDMA device (%s): rdma: would not fall back",
			     dev.name);
	a.vcpus = 0;
	px_init(&px);
	make_side(&src, &a, true);
	make_side(&dst, &a, false);
	set_channels(&src, 2, NULL);
	run_through_scheme(&px, &src, &dst, "rdma");
	expect_status(src.eng, FERRY_STATUS_COMPLETED, "source");
	expect_status(dst.eng, FERRY_STATUS_COMPLETED, "destination");
	expect_consistent(&src, &dst);
	ferry_engine_get_stats(src.eng, &st);
	cr_assert_str_eq(st.transport, "tcp-multi");
	cr_assert_neq(st.fallback_reason[0], '\0');
	cr_assert_eq(ferry_inspect(px.main, px.main_len,
				   &(struct ferry_inspect_opts){.strict = true}, &json, &err),
		     0, "%s", err ? err : "");
	free(err);
	root = json_loads(json, 0, NULL);
	cr_assert_not_null(root);
	secs = json_object_get(root, "sections");
	s1 = json_array_get(secs, 1);
	s2 = json_array_get(secs, 2);
	cr_assert_str_eq(json_string_value(json_object_get(s1, "idstr")), "ferry-datapath");
	cr_assert_str_eq(json_string_value(json_object_get(s2, "idstr")), "ferry-datapath-use");
	cr_assert_str_eq(json_string_value(json_object_get(s2, "type")), "FULL");
	json_decref(root);
	free(json);
	px_stop(&px);
	free_side(&src);
	free_side(&dst);
}

Test(engine_datapath, main_stream_stays_a_valid_v3_stream)
{
	struct bench_guest_attr a = small_live;
	struct side src, dst;
	struct proxy px;
	struct ferry_stats st;
	char *json = NULL;

	a.vcpus = 0;
	px_init(&px);
	make_side(&src, &a, true);
	make_side(&dst, &a, false);
	set_channels(&src, 4, NULL);
	run_through(&px, &src, &dst);
	expect_status(src.eng, FERRY_STATUS_COMPLETED, "source");
	expect_status(dst.eng, FERRY_STATUS_COMPLETED, "destination");
	expect_consistent(&src, &dst);
	ferry_engine_get_stats(src.eng, &st);
	/* The main stream carried no page: only the block list, markers, devices. */
	cr_assert_lt(px.main_len, 64u << 10, "the main stream has %zu bytes", px.main_len);
	{
		char *err = NULL;
		int ret = ferry_inspect(px.main, px.main_len,
					&(struct ferry_inspect_opts){.strict = true}, &json, &err);

		cr_assert_eq(ret, 0, "%s", err ? err : "");
		free(err);
	}
	{
		json_t *root = json_loads(json, 0, NULL), *secs, *counts, *s0, *s1;

		cr_assert_not_null(root);
		secs = json_object_get(root, "sections");
		/* RAM START (the block list), then the negotiation, as an early FULL section. */
		s0 = json_array_get(secs, 0);
		s1 = json_array_get(secs, 1);
		cr_assert_str_eq(json_string_value(json_object_get(s0, "idstr")), "ram");
		cr_assert_str_eq(json_string_value(json_object_get(s0, "type")), "START");
		cr_assert_str_eq(json_string_value(json_object_get(s1, "idstr")), "ferry-datapath");
		cr_assert_str_eq(json_string_value(json_object_get(s1, "type")), "FULL");
		counts = json_object_get(json_object_get(root, "ram"), "counts");
		cr_assert_eq(json_integer_value(json_object_get(counts, "page")), 0);
		cr_assert_eq(json_integer_value(json_object_get(counts, "zero")), 0);
		/* One round marker per round: the bulk round and the final one. */
		cr_assert_eq(json_integer_value(json_object_get(counts, "multifd_flush")),
			     (json_int_t)st.rounds + 1, "%s", json);
		json_decref(root);
	}
	free(json);
	px_stop(&px);
	free_side(&src);
	free_side(&dst);
}

/*
 * A data connection reset in the middle of the bulk round: both sides fail,
 * the source's guest is untouched (idle) or running again (live).
 */
static void dropped_lane(uint32_t vcpus)
{
	struct bench_guest_attr a = small_live;
	struct side src, dst;
	struct proxy px;
	struct ferry_stats st;
	struct bench_devices dev_control;
	uint8_t *control = NULL, *ram;
	uint64_t len;

	a.vcpus = vcpus;
	px_init(&px);
	px.cut_conn = 2; /* lane 1 */
	px.cut_after = 4u << 20;
	make_side(&src, &a, true);
	make_side(&dst, &a, false);
	set_channels(&src, 4, NULL);
	ram = bench_guest_ram(src.guest, &len);
	if (!vcpus) {
		control = malloc(len);
		memcpy(control, ram, len);
	}
	dev_control = *bench_guest_devices(src.guest);
	run_through(&px, &src, &dst);
	cr_assert(atomic_load(&px.cut_done), "the proxy never cut the lane");
	expect_status(src.eng, FERRY_STATUS_FAILED, "source");
	expect_status(dst.eng, FERRY_STATUS_FAILED, "destination");
	ferry_engine_get_stats(src.eng, &st);
	cr_assert_lt(st.error, 0);
	cr_assert_neq(st.error_msg[0], '\0');
	ferry_engine_get_stats(dst.eng, &st);
	cr_assert_neq(st.error_msg[0], '\0');
	if (!vcpus) {
		cr_assert_eq(memcmp(control, ram, len), 0, "the source's RAM changed");
	} else {
		expect_vcpus_resumed(&src);
	}
	{
		char why[128];

		cr_assert_eq(bench_devices_compare(&dev_control, bench_guest_devices(src.guest),
						   why, sizeof(why)),
			     0, "device field %s changed", why);
	}
	free(control);
	px_stop(&px);
	free_side(&src);
	free_side(&dst);
}

Test(engine_datapath, dropped_lane_fails_cleanly_idle_guest)
{
	dropped_lane(0);
}

Test(engine_datapath, dropped_lane_fails_cleanly_live_guest)
{
	dropped_lane(2);
}

Test(engine_datapath, lane_with_a_foreign_id_is_refused)
{
	struct side src, dst;
	struct proxy px;
	struct ferry_stats st;

	px_init(&px);
	px.corrupt_conn = 1; /* lane 0's HELLO */
	make_side(&src, &small_live, true);
	make_side(&dst, &small_live, false);
	set_channels(&src, 2, NULL);
	run_through(&px, &src, &dst);
	expect_status(src.eng, FERRY_STATUS_FAILED, "source");
	expect_status(dst.eng, FERRY_STATUS_FAILED, "destination");
	ferry_engine_get_stats(src.eng, &st);
	cr_assert_eq(st.error, FERRY_EPEERABORT, "%s", st.error_msg);
	cr_assert(strstr(st.error_msg, "data connections"), "%s", st.error_msg);
	/* The destination sees the source hang up rather than waiting out its 10 s. */
	ferry_engine_get_stats(dst.eng, &st);
	cr_assert_lt(st.total_ms, 8000, "the destination waited %lu ms",
		     (unsigned long)st.total_ms);
	px_stop(&px);
	free_side(&src);
	free_side(&dst);
}

/* ---- the destination writes while the lanes connect ------------------------------------ */

/*
 * The source, with 2 TCP lanes, against a destination that says @msg on the
 * return path while the lanes connect (talker.h): it must fail with @err and
 * @text, at once rather than at its 20 s lane connect, its guest running on.
 */
static void source_hears_cut(const uint8_t *msg, size_t len, bool hang_up, int err,
			     const char *text)
{
	struct talker t;
	struct side src;
	struct ferry_stats st;
	char uri[64];

	talker_start(&t, "127.0.0.1", msg, len, hang_up);
	make_side(&src, &small_live, true);
	set_channels(&src, 2, NULL);
	snprintf(uri, sizeof(uri), "tcp:127.0.0.1:%d", t.port);
	cr_assert_eq(ferry_migrate_sync(src.eng, uri), FERRY_STATUS_FAILED);
	ferry_engine_get_stats(src.eng, &st);
	cr_log_info("failed after %lu ms: %s", (unsigned long)st.total_ms, st.error_msg);
	/* A message, and 200 ms later a hang-up: the watchdog (every 50 ms) sees
	 * the bytes first, unless this machine kept it from looking that long. */
	if (hang_up && st.error == FERRY_EPEERABORT) {
		err = FERRY_EPEERABORT;
		text = "the destination hung up the main stream while the data path was connecting";
	}
	cr_assert_eq(st.error, err, "%s: %s", ferry_err_name(st.error), st.error_msg);
	cr_assert(strstr(st.error_msg, text), "'%s' does not say '%s'", st.error_msg, text);
	expect_vcpus_resumed(&src);
	talker_stop(&t);
	free_side(&src);
}

static void source_hears(const uint8_t *msg, size_t len, int err, const char *text)
{
	source_hears_cut(msg, len, false, err, text);
}

Test(engine_datapath, destination_failing_while_the_lanes_connect_is_heard)
{
	uint8_t m[16];

	source_hears(m, talker_rp_msg(m, 1, 4, 7, NULL), FERRY_EPEERABORT,
		     "the destination failed while the lanes connected (status 7)");
}

Test(engine_datapath, destination_refusing_tcp_lanes_fails_the_source)
{
	/* A refusal is an answer to an rdma offer; for TCP lanes there is nothing to fall back to.
	 */
	uint8_t m[64];
	const char *why = "no usable RDMA device";

	source_hears(m, talker_rp_msg(m, 0x4601, (uint16_t)(4 + strlen(why)), (uint32_t)-19, why),
		     FERRY_ENORDMA, "the destination cannot take them: no usable RDMA device");
}

Test(engine_datapath, hostile_return_path_while_the_lanes_connect)
{
	uint8_t m[256];
	char big[202];

	/* Another type, a refusal longer than its bound, a SHUT of the wrong size. */
	source_hears(m, talker_rp_msg(m, 0x1234, 4, 0, NULL), FERRY_EBADSTREAM,
		     "return-path message 4660 of 4 bytes while the lanes connected");
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	source_hears(m, talker_rp_msg(m, 0x4601, 4 + 201, 0, big), FERRY_EBADSTREAM,
		     "return-path message 17921 of 205 bytes");
	source_hears(m, talker_rp_msg(m, 1, 8, 0, "abcd"), FERRY_EBADSTREAM,
		     "return-path message 1 of 8 bytes");
	/* Cut short: a refusal that says 50 bytes of reason, 5 sent, then the hang-up. */
	source_hears_cut(m, talker_rp_msg(m, 0x4601, 4 + 50, 0, "short"), true, FERRY_ETRUNCATED,
			 "the destination's refusal of the lanes was cut short");
	/* Cut inside the header. */
	source_hears_cut(m, 3, true, FERRY_ETRUNCATED,
			 "the destination broke the return path while the lanes connected");
}

Test(engine_datapath, stray_connection_is_refused_and_ignored)
{
	struct side src, dst;
	struct proxy px;

	px_init(&px);
	px.stray_before = 1; /* garbage reaches the listener before the first lane */
	make_side(&src, &small_live, true);
	make_side(&dst, &small_live, false);
	set_channels(&src, 2, NULL);
	run_through(&px, &src, &dst);
	expect_status(src.eng, FERRY_STATUS_COMPLETED, "source");
	expect_status(dst.eng, FERRY_STATUS_COMPLETED, "destination");
	cr_assert(atomic_load(&px.stray_refused), "the stray connection was not closed");
	expect_consistent(&src, &dst);
	px_stop(&px);
	free_side(&src);
	free_side(&dst);
}

/* ---- cancel ----------------------------------------------------------------------------- */

struct cancel_ctx {
	struct ferry_engine *eng;
};

static void cancel_on_progress(void *opaque, enum ferry_event_type type,
			       const struct ferry_stats *st)
{
	struct cancel_ctx *c = opaque;

	/* Once pages are moving on the lanes. */
	if (st->status == FERRY_STATUS_ACTIVE && st->normal_pages > 1000)
		ferry_engine_cancel(c->eng);
	(void)type;
}

Test(engine_datapath, cancel_while_the_workers_send)
{
	struct bench_guest_attr a = small_live;
	struct ferry_params p = {.max_bandwidth = 32u << 20}; /* slow enough to catch */
	struct side src, dst;
	struct cancel_ctx c;

	make_side(&src, &a, true);
	make_side(&dst, &a, false);
	c.eng = src.eng;
	set_channels(&src, 4, &p);
	cr_assert_eq(ferry_engine_set_event_cb(src.eng, cancel_on_progress, &c), 0);
	start_pair(&src, &dst, "tcp:127.0.0.1:PORT", "tcp:127.0.0.1:0", 0);
	ferry_engine_wait(src.eng);
	ferry_engine_wait(dst.eng);
	expect_status(src.eng, FERRY_STATUS_CANCELLED, "source");
	expect_status(dst.eng, FERRY_STATUS_FAILED, "destination");
	expect_vcpus_resumed(&src);
	free_side(&src);
	free_side(&dst);
}

Test(engine_datapath, engine_migrates_twice_with_and_without_channels)
{
	/* The same engines: first over 2 channels, then in the main stream, then 3 channels. */
	struct bench_guest_attr a = small_live;
	struct side src, dst;
	const uint32_t seq[] = {2, 0, 3};

	a.vcpus = 0;
	make_side(&src, &a, true);
	make_side(&dst, &a, false);
	for (size_t i = 0; i < sizeof(seq) / sizeof(seq[0]); i++) {
		struct ferry_stats st;

		set_channels(&src, seq[i], NULL);
		migrate_pair(&src, &dst, "tcp:127.0.0.1:PORT", "tcp:127.0.0.1:0");
		expect_consistent(&src, &dst);
		ferry_engine_get_stats(dst.eng, &st);
		cr_assert_eq(st.channels, seq[i]);
		cr_assert_eq(ferry_engine_get_worker_stats(dst.eng, NULL, 0), (int)seq[i]);
	}
	free_side(&src);
	free_side(&dst);
}

/* ---- the CLI, as two processes ----------------------------------------------------------- */

/* Read lines from @f until one holds @event; returns it parsed (or NULL at EOF). */
static json_t *cli_event(FILE *f, const char *event)
{
	char line[1 << 16];

	while (fgets(line, sizeof(line), f)) {
		json_t *j = json_loads(line, 0, NULL);
		const char *e = j ? json_string_value(json_object_get(j, "event")) : NULL;

		if (e && strcmp(e, event) == 0)
			return j;
		json_decref(j);
	}
	return NULL;
}

Test(engine_datapath, cli_send_and_listen_over_3_channels)
{
	char cmd[512];
	FILE *dst, *src;
	json_t *ev, *s = NULL, *d;
	int port;

	snprintf(cmd, sizeof(cmd),
		 "%s listen tcp:127.0.0.1:0 --ram 64M --vcpus 2 --events --timeout 60000",
		 FERRY_CLI);
	dst = popen(cmd, "r");
	cr_assert_not_null(dst);
	ev = cli_event(dst, "listening");
	cr_assert_not_null(ev, "ferry listen did not start");
	port = (int)json_integer_value(json_object_get(ev, "port"));
	json_decref(ev);
	snprintf(
	    cmd, sizeof(cmd),
	    "%s send tcp:127.0.0.1:%d --ram 64M --vcpus 2 --dirty-rate 16M --channels 3 --json "
	    "--timeout 60000",
	    FERRY_CLI, port);
	src = popen(cmd, "r");
	cr_assert_not_null(src);
	ev = cli_event(src, "done");
	cr_assert_not_null(ev, "ferry send printed no result");
	s = ev;
	d = cli_event(dst, "done");
	cr_assert_not_null(d, "ferry listen printed no result");
	cr_assert_eq(pclose(src), 0);
	cr_assert_eq(pclose(dst), 0);
	cr_assert_str_eq(json_string_value(json_object_get(s, "status")), "completed");
	cr_assert(json_is_true(json_object_get(d, "verified")), "%s",
		  json_string_value(json_object_get(d, "verify_error")));
	for (int i = 0; i < 2; i++) {
		json_t *j = i ? d : s;

		cr_assert_str_eq(json_string_value(json_object_get(j, "transport")), "tcp-multi");
		cr_assert_eq(json_integer_value(json_object_get(j, "channels")), 3);
		cr_assert_eq(json_integer_value(json_object_get(j, "memcpy_bytes")), 0);
		cr_assert_eq(json_real_value(json_object_get(j, "memcpy_per_byte")), 0.0);
		cr_assert_gt(json_real_value(json_object_get(j, "syscalls_per_mib")), 0.0);
		cr_assert_eq(json_array_size(json_object_get(j, "workers")), 3);
		cr_assert_gt(json_real_value(json_object_get(j, "cpu_s")), 0.0);
	}
	json_decref(s);
	json_decref(d);
}
