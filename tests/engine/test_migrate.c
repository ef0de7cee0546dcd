/* SPDX-License-Identifier: MIT */
/*
 * End-to-end migrations of the synthetic guest between two engines in this
 * process, over real transports (socketpair fd:, tcp, unix, file:, exec:),
 * with the real dirty log. Every successful case ends with the A-B check and
 * a page-by-page, field-by-field comparison of source and destination.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <ferry/engine.h>
#include <ferry/error.h>
#include <ferry/log.h>

#include "bench/guest.h"

static int count_fds(void)
{
	char path[64];
	int n = 0;

	for (int fd = 0; fd < 1024; fd++) {
		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
		if (access(path, F_OK) == 0)
			n++;
	}
	return n;
}

struct side {
	struct ferry_engine *eng;
	struct bench_guest *guest;
};

static void make_side(struct side *s, const struct bench_guest_attr *attr, bool source)
{
	cr_assert_eq(ferry_engine_create(&s->eng), 0);
	cr_assert_eq(bench_guest_create(attr, &s->guest), 0);
	if (source) {
		cr_assert_eq(bench_guest_attach_source(s->guest, s->eng), 0);
	} else {
		/* The destination starts from different device state and zero RAM. */
		bench_devices_fill(bench_guest_devices(s->guest), 0xdead);
		cr_assert_eq(bench_guest_attach_dest(s->guest, s->eng), 0);
	}
}

static void free_side(struct side *s)
{
	ferry_engine_destroy(s->eng);
	bench_guest_destroy(s->guest);
}

static void expect_consistent(struct side *src, struct side *dst)
{
	char why[512];
	uint64_t bad;

	/* The source's vCPUs are stopped after a completed migration: compare exactly. */
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

/* Run both sides to the end: the destination listens first, then the source goes. */
static void migrate_pair(struct side *src, struct side *dst, const char *src_uri,
			 const char *dst_uri)
{
	char uri[256];

	cr_assert_eq(ferry_incoming(dst->eng, dst_uri, NULL, NULL), 0);
	/* A source URI ending in ":PORT" is completed with the port the destination bound. */
	size_t n = strlen(src_uri);
	if (n > 5 && strcmp(src_uri + n - 5, ":PORT") == 0)
		snprintf(uri, sizeof(uri), "%.*s:%d", (int)(n - 5), src_uri,
			 ferry_engine_listen_port(dst->eng));
	else
		snprintf(uri, sizeof(uri), "%s", src_uri);
	cr_assert_eq(ferry_migrate(src->eng, uri, NULL, NULL), 0);
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

static void init(void)
{
	if (getenv("FERRY_TEST_LOG"))
		ferry_set_log(ferry_log_stderr, NULL, FERRY_LOG_DEBUG);
}

TestSuite(engine_migrate, .init = init, .timeout = 120);

Test(engine_migrate, idle_guest_over_socketpair)
{
	struct bench_guest_attr a = small_live;
	struct side src, dst;
	int sv[2];
	char su[32], du[32];

	a.vcpus = 0;
	make_side(&src, &a, true);
	make_side(&dst, &a, false);
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	snprintf(su, sizeof(su), "fd:%d", sv[0]);
	snprintf(du, sizeof(du), "fd:%d", sv[1]);
	migrate_pair(&src, &dst, su, du);
	expect_consistent(&src, &dst);

	struct ferry_stats st;
	ferry_engine_get_stats(src.eng, &st);
	/* Every page once, none twice: nothing was dirtied. */
	cr_assert_eq(st.normal_pages + st.zero_pages, (64u << 20) / 4096);
	cr_assert_eq(st.memcpy_bytes, 0);
	free_side(&src);
	free_side(&dst);
}

Test(engine_migrate, live_guest_converges_over_tcp)
{
	struct side src, dst;
	struct ferry_stats st;

	make_side(&src, &small_live, true);
	make_side(&dst, &small_live, false);
	/* Let the vCPUs run a little before the migration starts. */
	usleep(100000);
	migrate_pair(&src, &dst, "tcp:127.0.0.1:PORT", "tcp:127.0.0.1:0");
	expect_consistent(&src, &dst);
	ferry_engine_get_stats(src.eng, &st);
	cr_assert_geq(st.rounds, 1);
	/* Pages dirtied during the bulk round went again. */
	cr_assert_gt(st.normal_pages + st.zero_pages, (64u << 20) / 4096);
	cr_assert_str_eq(st.transport, "tcp");
	free_side(&src);
	free_side(&dst);
}

Test(engine_migrate, live_guest_over_unix_with_huge_pages)
{
	struct bench_guest_attr a = small_live;
	struct side src, dst;
	char path[64], uri[80];

	a.huge = true;
	make_side(&src, &a, true);
	make_side(&dst, &a, false);
	snprintf(path, sizeof(path), "/tmp/ferry-test-%d.sock", getpid());
	snprintf(uri, sizeof(uri), "unix:%s", path);
	migrate_pair(&src, &dst, uri, uri);
	expect_consistent(&src, &dst);
	free_side(&src);
	free_side(&dst);
}

/*
 * Rounds as the test sees them from ROUND events: a round is "hot" when the
 * guest dirtied more than half of what the round moved (throughput x the
 * time since the previous round), the engine's trigger for auto-converge.
 */
struct round_watch {
	uint64_t t_prev_ns;
	int hot_run, max_hot_run;
};

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void watch_rounds(void *opaque, enum ferry_event_type type, const struct ferry_stats *st)
{
	struct round_watch *w = opaque;
	uint64_t now = mono_ns();

	if (type == FERRY_EVENT_STATUS && st->status == FERRY_STATUS_ACTIVE)
		w->t_prev_ns = now;
	if (type != FERRY_EVENT_ROUND)
		return;
	uint64_t sent = (uint64_t)((double)st->throughput * (double)(now - w->t_prev_ns) / 1e9);
	w->t_prev_ns = now;
	w->hot_run = st->remaining > sent / 2 ? w->hot_run + 1 : 0;
	if (w->hot_run > w->max_hot_run)
		w->max_hot_run = w->hot_run;
}

Test(engine_migrate, auto_converge_under_a_bandwidth_cap)
{
	struct bench_guest_attr a = small_live;
	struct side src, dst;
	struct ferry_stats st;
	struct round_watch w = {0};
	/*
	 * 16 MiB/s and 30 ms leave room for 480 KiB at switchover: two vCPUs
	 * writing as fast as they can normally exceed that every round, so the
	 * migration converges only once auto-converge throttles them. On a
	 * starved machine the vCPUs may dirty less; the contract checked is
	 * therefore the engine's: two hot rounds in a row engage the throttle.
	 *
	 * The vCPUs dirty 64 MiB/s, four times the cap, and not "as fast as they
	 * can": an unbounded writer still dirties more than the cap while it runs
	 * 1% of the time (seen under ASan: 161 rounds at 99% throttle, never
	 * converging), which tests the machine, not the engine. The timeout
	 * bounds the test if it ever stops converging.
	 */
	struct ferry_params p = {
	    .max_bandwidth = 16u << 20,
	    .downtime_limit_ms = 30,
	    .auto_converge = true,
	    .throttle_initial = 30,
	    .throttle_increment = 20,
	    .timeout_ms = 120000,
	};

	a.ram_bytes = 32u << 20;
	a.dirty_rate = 64u << 20;
	a.pattern = BENCH_PATTERN_UNIFORM;
	make_side(&src, &a, true);
	make_side(&dst, &a, false);
	cr_assert_eq(ferry_engine_set_params(src.eng, &p), 0);
	cr_assert_eq(ferry_engine_set_event_cb(src.eng, watch_rounds, &w), 0);
	migrate_pair(&src, &dst, "tcp:127.0.0.1:PORT", "tcp:127.0.0.1:0");
	ferry_engine_get_stats(src.eng, &st);
	if (w.max_hot_run >= 2)
		cr_assert_gt(st.throttle_pct, 0, "%d hot rounds in a row and no throttle",
			     w.max_hot_run);
	else
		cr_log_info("the vCPUs never dirtied fast enough to need throttling here");
	{
		char why[256];

		cr_assert_eq(bench_guest_compare(src.guest, dst.guest, why, sizeof(why)), 0, "%s",
			     why);
	}
	free_side(&src);
	free_side(&dst);
}

Test(engine_migrate, file_snapshot_then_load)
{
	struct side src, dst;
	char path[64], uri[80];

	snprintf(path, sizeof(path), "/tmp/ferry-test-%d.qevm", getpid());
	snprintf(uri, sizeof(uri), "file:%s", path);
	make_side(&src, &small_live, true);
	cr_assert_eq(ferry_migrate_sync(src.eng, uri), FERRY_STATUS_COMPLETED);
	/* Loaded later, by another engine, as a saved snapshot. */
	make_side(&dst, &small_live, false);
	cr_assert_eq(ferry_incoming_sync(dst.eng, uri), FERRY_STATUS_COMPLETED);
	expect_consistent(&src, &dst);
	unlink(path);
	free_side(&src);
	free_side(&dst);
}

Test(engine_migrate, exec_through_cat)
{
	struct side src, dst;
	char path[64], out[128], in[128];

	snprintf(path, sizeof(path), "/tmp/ferry-test-exec-%d.qevm", getpid());
	snprintf(out, sizeof(out), "exec:cat > %s", path);
	snprintf(in, sizeof(in), "exec:cat %s", path);
	make_side(&src, &small_live, true);
	cr_assert_eq(ferry_migrate_sync(src.eng, out), FERRY_STATUS_COMPLETED);
	make_side(&dst, &small_live, false);
	cr_assert_eq(ferry_incoming_sync(dst.eng, in), FERRY_STATUS_COMPLETED);
	expect_consistent(&src, &dst);
	unlink(path);
	free_side(&src);
	free_side(&dst);
}

Test(engine_migrate, bad_uri_is_refused_without_starting)
{
	struct side src;

	make_side(&src, &small_live, true);
	cr_assert_eq(ferry_migrate(src.eng, "tcp:127.0.0.1:99999", NULL, NULL), FERRY_EBADURI);
	cr_assert_eq(ferry_migrate(src.eng, "carrier-pigeon:x", NULL, NULL), FERRY_EBADURI);
	free_side(&src);
}

Test(engine_migrate, times_that_would_wrap_are_refused)
{
	/* Deadlines are kept in nanoseconds: UINT64_MAX ms would wrap to a short wait. */
	struct ferry_engine *eng;
	const uint64_t max = UINT64_MAX / 2 / 1000000u;

	cr_assert_eq(ferry_engine_create(&eng), 0);
	cr_assert_eq(ferry_engine_set_params(eng, &(struct ferry_params){.timeout_ms = UINT64_MAX}),
		     -EINVAL);
	cr_assert_eq(
	    ferry_engine_set_params(eng, &(struct ferry_params){.stall_timeout_ms = max + 1}),
	    -EINVAL);
	cr_assert_eq(ferry_engine_set_params(
			 eng, &(struct ferry_params){.timeout_ms = max, .stall_timeout_ms = max}),
		     0);
	ferry_engine_destroy(eng);
}

/* ---- faults: the source's guest must come out unharmed ----------------------------- */

/*
 * A destination that reads the stream and hangs up at a chosen moment: after
 * @cut_bytes, or when the source reports @cut_status, or after the whole stream
 * without answering (@no_answer).
 */
struct rogue {
	int listen_fd, port;
	uint64_t cut_bytes;
	atomic_bool cut;
	pthread_t th;
};

static void *rogue_thread(void *arg)
{
	struct rogue *r = arg;
	int fd = accept(r->listen_fd, NULL, NULL);
	char buf[65536];
	uint64_t got = 0;

	if (fd < 0)
		return NULL;
	while (!atomic_load(&r->cut) && (!r->cut_bytes || got < r->cut_bytes)) {
		ssize_t n = read(fd, buf, sizeof(buf));

		if (n <= 0)
			break;
		got += (uint64_t)n;
	}
	close(fd);
	return NULL;
}

static void rogue_start(struct rogue *r, uint64_t cut_bytes)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(sa);

	memset(r, 0, sizeof(*r));
	r->cut_bytes = cut_bytes;
	r->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	cr_assert_geq(r->listen_fd, 0);
	cr_assert_eq(bind(r->listen_fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	cr_assert_eq(listen(r->listen_fd, 1), 0);
	cr_assert_eq(getsockname(r->listen_fd, (struct sockaddr *)&sa, &len), 0);
	r->port = ntohs(sa.sin_port);
	cr_assert_eq(pthread_create(&r->th, NULL, rogue_thread, r), 0);
}

static void rogue_stop(struct rogue *r)
{
	atomic_store(&r->cut, true);
	shutdown(r->listen_fd, SHUT_RDWR);
	pthread_join(r->th, NULL);
	close(r->listen_fd);
}

struct fault_ctx {
	struct rogue *rogue;
	struct ferry_engine *eng;
	enum ferry_status at;
	uint64_t at_round; /* or: cut when this dirty-log round ends (at unused) */
	bool cancel;	   /* cancel instead of cutting the connection */
};

static void on_event(void *opaque, enum ferry_event_type type, const struct ferry_stats *st)
{
	struct fault_ctx *f = opaque;

	if (f->at_round) {
		if (type != FERRY_EVENT_ROUND || st->rounds < f->at_round)
			return;
	} else if (type != FERRY_EVENT_STATUS || st->status != f->at) {
		return;
	}
	if (f->cancel)
		ferry_engine_cancel(f->eng);
	else
		atomic_store(&f->rogue->cut, true);
}

/*
 * After a failed or cancelled migration, an idle guest's RAM and devices must
 * equal a control copy, and a running guest's vCPUs must be running again.
 */
static void run_fault_f(uint64_t cut_bytes, struct fault_ctx f, uint32_t vcpus,
			enum ferry_status expect, const struct ferry_params *params,
			struct ferry_stats *out)
{
	struct bench_guest_attr a = small_live;
	struct side src;
	struct rogue r;
	uint8_t *control;
	struct bench_devices dev_control;
	uint64_t len, w0, w1;
	char uri[64];
	struct ferry_stats st;

	a.vcpus = vcpus;
	int fds_before = count_fds();
	make_side(&src, &a, true);
	f.rogue = &r;
	f.eng = src.eng;
	uint8_t *ram = bench_guest_ram(src.guest, &len);
	control = malloc(len);
	memcpy(control, ram, len);
	dev_control = *bench_guest_devices(src.guest);
	cr_assert_eq(ferry_engine_set_event_cb(src.eng, on_event, &f), 0);
	if (params)
		cr_assert_eq(ferry_engine_set_params(src.eng, params), 0);
	rogue_start(&r, cut_bytes);
	snprintf(uri, sizeof(uri), "tcp:127.0.0.1:%d", r.port);
	cr_assert_eq(ferry_migrate(src.eng, uri, NULL, NULL), 0);
	ferry_engine_wait(src.eng);
	rogue_stop(&r);
	ferry_engine_get_stats(src.eng, &st);
	cr_assert_eq(st.status, expect, "status %s (%s)", ferry_status_name(st.status),
		     st.error_msg);
	cr_assert_lt(st.error, 0);
	cr_assert_neq(st.error_msg[0], '\0');
	if (vcpus == 0) {
		cr_assert_eq(memcmp(control, ram, len), 0, "the source's RAM changed");
	} else {
		w0 = bench_guest_page_writes(src.guest);
		usleep(50000);
		w1 = bench_guest_page_writes(src.guest);
		cr_assert_gt(w1, w0, "the source's vCPUs did not resume");
	}
	{
		char why[128];
		cr_assert_eq(bench_devices_compare(&dev_control, bench_guest_devices(src.guest),
						   why, sizeof(why)),
			     0, "device field %s changed", why);
	}
	free(control);
	free_side(&src);
	cr_assert_eq(count_fds(), fds_before, "file descriptors leaked");
	if (out)
		*out = st;
}

static void run_fault_p(uint64_t cut_bytes, enum ferry_status at, bool cancel, uint32_t vcpus,
			enum ferry_status expect, const struct ferry_params *params)
{
	const struct fault_ctx f = {.at = at, .cancel = cancel};

	run_fault_f(cut_bytes, f, vcpus, expect, params, NULL);
}

static void run_fault(uint64_t cut_bytes, enum ferry_status at, bool cancel, uint32_t vcpus,
		      enum ferry_status expect)
{
	run_fault_p(cut_bytes, at, cancel, vcpus, expect, NULL);
}

Test(engine_migrate, peer_drops_in_setup)
{
	run_fault(16, FERRY_STATUS_NONE, false, 0, FERRY_STATUS_FAILED);
}

Test(engine_migrate, peer_drops_in_bulk)
{
	run_fault(8u << 20, FERRY_STATUS_NONE, false, 2, FERRY_STATUS_FAILED);
}

Test(engine_migrate, peer_drops_in_iterate)
{
	/*
	 * The connection dies when the second dirty round ends. A byte count
	 * past the bulk round is no phase: a guest that converges sends less
	 * than it, and the test then passed through the verdict's timeout.
	 * Over loopback this guest converges after its bulk round even with a
	 * 1 ms limit; capped at 64 MiB/s (round 1 takes a second, the guest
	 * dirties 20 MiB/s) it iterates until the cut. A short timeout makes a
	 * missed cut fail as a timeout, asserted below.
	 */
	const struct ferry_params p = {
	    .downtime_limit_ms = 1, .max_bandwidth = 64u << 20, .timeout_ms = 20000};
	const struct fault_ctx f = {.at_round = 2};
	struct ferry_stats st;

	run_fault_f(0, f, 2, FERRY_STATUS_FAILED, &p, &st);
	cr_assert_geq(st.rounds, 2, "failed after %" PRIu64 " round(s), before iterating",
		      st.rounds);
	cr_assert_neq(st.error, FERRY_ETIMEDOUT, "the cut was not seen: %s", st.error_msg);
	cr_assert_eq(st.downtime_ms, 0, "the vCPUs were stopped (%" PRIu64 " ms)", st.downtime_ms);
}

Test(engine_migrate, peer_drops_at_switchover)
{
	run_fault(0, FERRY_STATUS_DEVICE, false, 2, FERRY_STATUS_FAILED);
}

Test(engine_migrate, peer_never_answers)
{
	/* Reads everything and never sends its verdict: the timeout fails it, vCPUs resume. */
	const struct ferry_params p = {.timeout_ms = 3000};

	run_fault_p(0, FERRY_STATUS_NONE, false, 2, FERRY_STATUS_FAILED, &p);
}

Test(engine_migrate, cancel_in_active)
{
	run_fault(0, FERRY_STATUS_ACTIVE, true, 2, FERRY_STATUS_CANCELLED);
}

Test(engine_migrate, cancel_at_switchover)
{
	run_fault(0, FERRY_STATUS_DEVICE, true, 2, FERRY_STATUS_CANCELLED);
}

Test(engine_migrate, cancel_idle_guest_untouched)
{
	run_fault(0, FERRY_STATUS_ACTIVE, true, 0, FERRY_STATUS_CANCELLED);
}

Test(engine_migrate, cancel_in_setup)
{
	/* Cancelled as soon as it starts: before or during the connect and header. */
	run_fault(0, FERRY_STATUS_SETUP, true, 2, FERRY_STATUS_CANCELLED);
}

/* ---- the destination never reports success for a bad stream -------------------------- */

static void load_damaged(void (*damage)(uint8_t *buf, size_t *len))
{
	struct side src, dst;
	char path[64], uri[80];
	struct ferry_stats st;
	FILE *f;
	uint8_t *buf;
	size_t len;

	snprintf(path, sizeof(path), "/tmp/ferry-test-bad-%d.qevm", getpid());
	snprintf(uri, sizeof(uri), "file:%s", path);
	make_side(&src, &small_live, true);
	cr_assert_eq(ferry_migrate_sync(src.eng, uri), FERRY_STATUS_COMPLETED);
	f = fopen(path, "rb");
	cr_assert_not_null(f);
	fseek(f, 0, SEEK_END);
	len = (size_t)ftell(f);
	rewind(f);
	buf = malloc(len);
	cr_assert_eq(fread(buf, 1, len, f), len);
	fclose(f);
	damage(buf, &len);
	f = fopen(path, "wb");
	cr_assert_eq(fwrite(buf, 1, len, f), len);
	fclose(f);
	free(buf);

	make_side(&dst, &small_live, false);
	cr_assert_eq(ferry_incoming_sync(dst.eng, uri), FERRY_STATUS_FAILED);
	ferry_engine_get_stats(dst.eng, &st);
	cr_assert_lt(st.error, 0);
	cr_assert(strstr(st.error_msg, "offset") != NULL, "%s", st.error_msg);
	unlink(path);
	free_side(&src);
	free_side(&dst);
}

static void cut_in_half(uint8_t *buf, size_t *len)
{
	(void)buf;
	*len /= 2;
}

static void cut_before_eof(uint8_t *buf, size_t *len)
{
	/* Everything but the last device section's footer and what follows. */
	for (size_t i = *len; i-- > 0;)
		if (buf[i] == 0x7e && i + 5 < *len && buf[i + 5] == 0x00) {
			*len = i + 2;
			return;
		}
	*len -= 100;
}

static void flip_a_page_offset(uint8_t *buf, size_t *len)
{
	/* The first PAGE record after the START section: its offset points past the block. */
	for (size_t i = 64; i + 8 < *len; i++)
		if (buf[i] == 0x02 && buf[i + 1] == 0 && buf[i + 2] == 0 && buf[i + 3] == 0 &&
		    buf[i + 4] == 0) {
			/* PART header: 0x02 + be32 id 0, then the first record's be64 word. */
			buf[i + 5] = 0x7f;
			return;
		}
	cr_assert_fail("no PART section found");
}

Test(engine_migrate, destination_refuses_truncated_stream)
{
	load_damaged(cut_in_half);
}

Test(engine_migrate, destination_refuses_stream_cut_before_eof)
{
	load_damaged(cut_before_eof);
}

Test(engine_migrate, destination_refuses_page_outside_its_block)
{
	load_damaged(flip_a_page_offset);
}
