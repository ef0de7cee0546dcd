/* SPDX-License-Identifier: MIT */
/*
 * Connections on a real device: the destination refuses lanes without its
 * migration id (and keeps waiting for the right source), refusals and
 * unreachable peers come back as the errors an engine falls back on, within
 * bounded time, and close leaves no verbs resource behind (checked with the
 * kernel's own view, `rdma res show`).
 */
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <unistd.h>

#include <ferry/error.h>
#include <ferry/rdma.h>

#include "helpers.h"

struct pair {
	struct rt_env env;
	struct ferry_rdma_block sb, db;
	struct ferry_rdma_dest *dst;
	struct ferry_rdma_source_attr sa;
};

/* @auth_key: NULL, or the key the destination demands an authenticator with. */
static void pair_dest_auth(struct pair *p, uint32_t lanes, enum ferry_rdma_reg reg, size_t len,
			   const uint8_t *auth_key)
{
	struct ferry_rdma_dest_attr da;
	int ret;

	rt_env_or_skip(&p->env);
	p->sb = (struct ferry_rdma_block){rt_map(len), len};
	p->db = (struct ferry_rdma_block){rt_map(len), len};
	cr_assert(p->sb.host && p->db.host);
	rt_fill(p->sb.host, len, 7);
	ferry_rdma_dest_attr_init(&da);
	da.host = p->env.ip;
	rt_id(da.id, 1);
	da.lanes = lanes;
	da.blocks = &p->db;
	da.n_blocks = 1;
	da.reg = reg;
	if (auth_key) {
		da.auth = true;
		memcpy(da.auth_key, auth_key, FERRY_RDMA_AUTH_KEY_LEN);
	}
	ret = ferry_rdma_dest_create(&da, &p->dst);
	cr_assert_eq(ret, 0, "dest_create: %s", ferry_strerror(ret));
	ferry_rdma_source_attr_init(&p->sa);
	p->sa.host = p->env.ip;
	p->sa.port = ferry_rdma_dest_port(p->dst);
	rt_id(p->sa.id, 1);
	p->sa.lanes = lanes;
	p->sa.blocks = &p->sb;
	p->sa.n_blocks = 1;
	p->sa.timeout_ms = 5000;
}

static void pair_dest(struct pair *p, uint32_t lanes, enum ferry_rdma_reg reg, size_t len)
{
	pair_dest_auth(p, lanes, reg, len, NULL);
}

static void pair_free(struct pair *p)
{
	if (p->dst)
		cr_assert_eq(ferry_rdma_dest_close(p->dst), 0);
	rt_unmap(p->sb.host, p->sb.length);
	rt_unmap(p->db.host, p->db.length);
}

/* Write the whole block on lane 0, flush, compare. */
static void write_all(struct ferry_rdma_source *src, struct pair *p)
{
	struct ferry_rdma_run r = {.block = 0, .offset = 0, .length = p->sb.length};

	cr_assert_eq(ferry_rdma_source_write(src, 0, &r, 1), 0);
	cr_assert_eq(ferry_rdma_source_flush(src, 0, 1), 0);
	cr_assert_eq(memcmp(p->sb.host, p->db.host, p->sb.length), 0);
}

Test(rdma_conn, foreign_id_rejected, .timeout = 60)
{
	struct ferry_rdma_source *src = NULL;
	struct pair p = {0};
	double t0;
	int ret;

	pair_dest(&p, 2, FERRY_RDMA_REG_PIN_ALL, 1 * MIB);
	rt_id(p.sa.id, 2); /* another migration's id */
	t0 = rt_now_ms();
	ret = rt_source_open(&p.sa, &src);
	cr_assert_eq(ret, -ECONNREFUSED, "a foreign source got %s", ferry_strerror(ret));
	cr_assert_null(src);
	cr_assert_lt(rt_now_ms() - t0, 3000, "refusal took %.0f ms", rt_now_ms() - t0);
	/* The destination is unharmed and still waits for its own source. */
	cr_assert_eq(ferry_rdma_dest_status(p.dst, NULL, 0), 0);
	cr_assert_eq(ferry_rdma_dest_accept(p.dst, 100), -ETIMEDOUT);

	rt_id(p.sa.id, 1);
	ret = rt_source_open(&p.sa, &src);
	cr_assert_eq(ret, 0, "the right source: %s", ferry_strerror(ret));
	cr_assert_eq(ferry_rdma_dest_accept(p.dst, 5000), 0);
	write_all(src, &p);
	cr_assert_eq(ferry_rdma_source_close(src), 0);
	pair_free(&p);
}

/* A destination with an authenticator key admits only lanes whose tag verifies. */
Test(rdma_conn, authenticator_required, .timeout = 60)
{
	struct ferry_rdma_source *src = NULL;
	uint8_t key[FERRY_RDMA_AUTH_KEY_LEN];
	struct pair p = {0};
	int ret;

	memset(key, 0x3c, sizeof(key));
	pair_dest_auth(&p, 2, FERRY_RDMA_REG_PIN_ALL, 1 * MIB, key);
	/* The right id but no tag: what a stranger who saw the id would send. */
	ret = rt_source_open(&p.sa, &src);
	cr_assert_eq(ret, FERRY_EAUTH, "a source without a tag got %s", ferry_strerror(ret));
	p.sa.auth = true;
	memcpy(p.sa.auth_key, key, sizeof(key));
	p.sa.auth_key[0] ^= 1;
	ret = rt_source_open(&p.sa, &src);
	cr_assert_eq(ret, FERRY_EAUTH, "a source with another key got %s", ferry_strerror(ret));
	cr_assert_null(src);
	/* Nothing was set up for them: the destination waits for its own source. */
	cr_assert_eq(ferry_rdma_dest_status(p.dst, NULL, 0), 0);
	cr_assert_eq(ferry_rdma_dest_accept(p.dst, 100), -ETIMEDOUT);
	p.sa.auth_key[0] ^= 1;
	ret = rt_source_open(&p.sa, &src);
	cr_assert_eq(ret, 0, "the right key: %s", ferry_strerror(ret));
	cr_assert_eq(ferry_rdma_dest_accept(p.dst, 5000), 0);
	write_all(src, &p);
	cr_assert_eq(ferry_rdma_source_close(src), 0);
	pair_free(&p);
}

Test(rdma_conn, lane_count_mismatch_rejected, .timeout = 60)
{
	struct ferry_rdma_source *src = NULL;
	struct pair p = {0};

	pair_dest(&p, 2, FERRY_RDMA_REG_PIN_ALL, 1 * MIB);
	p.sa.lanes = 3;
	cr_assert_eq(rt_source_open(&p.sa, &src), -ECONNREFUSED);
	pair_free(&p);
}

Test(rdma_conn, second_source_rejected, .timeout = 60)
{
	struct ferry_rdma_source *a = NULL, *b = NULL;
	struct pair p = {0};

	pair_dest(&p, 1, FERRY_RDMA_REG_PIN_ALL, 1 * MIB);
	cr_assert_eq(rt_source_open(&p.sa, &a), 0);
	/* Same id, same lane: the lane is taken. */
	cr_assert_eq(rt_source_open(&p.sa, &b), -ECONNREFUSED);
	write_all(a, &p);
	cr_assert_eq(ferry_rdma_source_close(a), 0);
	pair_free(&p);
}

Test(rdma_conn, block_mismatch, .timeout = 60)
{
	struct ferry_rdma_block other;
	struct ferry_rdma_source *src = NULL;
	struct pair p = {0};

	pair_dest(&p, 1, FERRY_RDMA_REG_PIN_ALL, 1 * MIB);
	other = (struct ferry_rdma_block){p.sb.host, p.sb.length / 2};
	p.sa.blocks = &other;
	cr_assert_eq(rt_source_open(&p.sa, &src), FERRY_EMISMATCH);
	pair_free(&p);
}

Test(rdma_conn, nothing_listening, .timeout = 60)
{
	struct ferry_rdma_source_attr sa;
	struct ferry_rdma_source *src = NULL;
	struct ferry_rdma_block b;
	struct rt_env env;
	double t0, ms;
	int ret;

	rt_env_or_skip(&env);
	b = (struct ferry_rdma_block){rt_map(MIB), MIB};
	ferry_rdma_source_attr_init(&sa);
	sa.host = env.ip;
	sa.port = 47999;
	sa.blocks = &b;
	sa.n_blocks = 1;
	sa.timeout_ms = 1500;
	t0 = rt_now_ms();
	ret = rt_source_open(&sa, &src);
	ms = rt_now_ms() - t0;
	cr_assert_eq(ret, -ECONNREFUSED, "got %s", ferry_strerror(ret));
	cr_assert_lt(ms, 4000, "took %.0f ms", ms);
	rt_unmap(b.host, b.length);
}

/* Nothing routes to TEST-NET-2 from the rig: no route (or no RDMA device on it). */
Test(rdma_conn, no_route, .timeout = 60)
{
	struct ferry_rdma_source_attr sa;
	struct ferry_rdma_source *src = NULL;
	struct ferry_rdma_block b;
	struct rt_env env;
	double t0, ms;
	int ret;

	rt_env_or_skip(&env);
	if (!getenv("RIG_IP"))
		cr_skip_test("needs the rig's routing table (no default route)");
	b = (struct ferry_rdma_block){rt_map(MIB), MIB};
	ferry_rdma_source_attr_init(&sa);
	sa.host = "198.51.100.7";
	sa.port = 4444;
	sa.blocks = &b;
	sa.n_blocks = 1;
	sa.timeout_ms = 3000;
	t0 = rt_now_ms();
	ret = rt_source_open(&sa, &src);
	ms = rt_now_ms() - t0;
	cr_assert(ret == -ENETUNREACH || ret == -EHOSTUNREACH || ret == FERRY_ENORDMA, "got %s",
		  ferry_strerror(ret));
	cr_assert_lt(ms, 5000, "took %.0f ms", ms);
	cr_log_info("no route: %s after %.0f ms", ferry_strerror(ret), ms);
	rt_unmap(b.host, b.length);
}

/* An address on the link that nobody answers: resolution fails within the timeout. */
Test(rdma_conn, peer_absent, .timeout = 60)
{
	struct ferry_rdma_source_attr sa;
	struct ferry_rdma_source *src = NULL;
	struct ferry_rdma_block b;
	struct rt_env env;
	double t0, ms;
	int ret;

	rt_env_or_skip(&env);
	if (!getenv("RIG_IP"))
		cr_skip_test("needs the rig's network (192.0.2.99 absent)");
	b = (struct ferry_rdma_block){rt_map(MIB), MIB};
	ferry_rdma_source_attr_init(&sa);
	sa.host = "192.0.2.99";
	sa.port = 4444;
	sa.blocks = &b;
	sa.n_blocks = 1;
	sa.timeout_ms = 2000;
	t0 = rt_now_ms();
	ret = rt_source_open(&sa, &src);
	ms = rt_now_ms() - t0;
	cr_assert(ret == -EHOSTUNREACH || ret == -ETIMEDOUT || ret == -ENETUNREACH, "got %s",
		  ferry_strerror(ret));
	cr_assert_lt(ms, 6000, "took %.0f ms", ms);
	cr_log_info("absent peer: %s after %.0f ms", ferry_strerror(ret), ms);
	rt_unmap(b.host, b.length);
}

Test(rdma_conn, accept_times_out, .timeout = 60)
{
	struct pair p = {0};
	double t0;

	pair_dest(&p, 1, FERRY_RDMA_REG_PIN_ALL, 1 * MIB);
	t0 = rt_now_ms();
	cr_assert_eq(ferry_rdma_dest_accept(p.dst, 300), -ETIMEDOUT);
	cr_assert_lt(rt_now_ms() - t0, 1500);
	cr_assert_eq(ferry_rdma_dest_wait_flush(p.dst, 1, 200), -ETIMEDOUT);
	pair_free(&p);
}

/* The kernel's view: memory regions, queue pairs, CQs and PDs of this process. */
static int res_all(void)
{
	int mr = rt_res_count("mr"), qp = rt_res_count("qp"), cq = rt_res_count("cq"),
	    pd = rt_res_count("pd");

	if (mr < 0 || qp < 0 || cq < 0 || pd < 0)
		cr_skip_test("`rdma res show` does not work here");
	cr_log_info("rdma res: %d mr, %d qp, %d cq, %d pd", mr, qp, cq, pd);
	return mr + qp + cq + pd;
}

static void res_gone(enum ferry_rdma_reg reg)
{
	struct ferry_rdma_source *src = NULL;
	struct pair p = {0};

	rt_env_or_skip(&p.env);
	cr_assert_eq(res_all(), 0, "resources before anything was opened");
	pair_dest(&p, 2, reg, 4 * MIB);
	cr_assert_gt(rt_res_count("pd"), 0, "the destination holds a protection domain");
	cr_assert_eq(rt_source_open(&p.sa, &src), 0);
	cr_assert_eq(ferry_rdma_dest_accept(p.dst, 5000), 0);
	write_all(src, &p);
	cr_assert_geq(rt_res_count("mr"), 2 + 4, "registrations of both sides are listed");
	cr_assert_geq(rt_res_count("qp"), 4);
	cr_assert_eq(ferry_rdma_source_close(src), 0);
	cr_assert_eq(ferry_rdma_dest_close(p.dst), 0);
	p.dst = NULL;
	cr_assert_eq(res_all(), 0, "verbs resources left after close");
	pair_free(&p);
}

Test(rdma_conn, resources_gone_after_close_pin_all, .timeout = 60)
{
	res_gone(FERRY_RDMA_REG_PIN_ALL);
}

Test(rdma_conn, resources_gone_after_close_chunked, .timeout = 60)
{
	res_gone(FERRY_RDMA_REG_CHUNKED);
}

/* A source whose destination closes mid-way: its next flush fails, bounded. */
Test(rdma_conn, destination_closes, .timeout = 60)
{
	struct ferry_rdma_source *src = NULL;
	struct ferry_rdma_run r;
	struct pair p = {0};
	char why[FERRY_RDMA_MSG_MAX];
	double t0;
	int ret;

	pair_dest(&p, 1, FERRY_RDMA_REG_PIN_ALL, 2 * MIB);
	cr_assert_eq(rt_source_open(&p.sa, &src), 0);
	write_all(src, &p);
	cr_assert_eq(ferry_rdma_dest_close(p.dst), 0);
	p.dst = NULL;
	t0 = rt_now_ms();
	r = (struct ferry_rdma_run){.block = 0, .offset = 0, .length = MIB};
	ret = ferry_rdma_source_write(src, 0, &r, 1);
	if (!ret)
		ret = ferry_rdma_source_flush(src, 0, 2);
	cr_assert_lt(ret, 0);
	cr_assert_lt(rt_now_ms() - t0, 8000);
	cr_assert_eq(ferry_rdma_source_status(src, why, sizeof(why)), ret);
	cr_log_info("after the destination closed: %s (%s)", ferry_strerror(ret), why);
	cr_assert_eq(ferry_rdma_source_close(src), ret);
	pair_free(&p);
}

struct aborter {
	struct ferry_rdma_source *src;
	struct ferry_rdma_dest *dst;
	int delay_ms;
};

static void *abort_later(void *a)
{
	struct aborter *ab = a;

	usleep((useconds_t)ab->delay_ms * 1000);
	if (ab->src)
		ferry_rdma_source_abort(ab->src);
	if (ab->dst)
		ferry_rdma_dest_abort(ab->dst);
	return NULL;
}

/* Connecting to a port nobody listens on retries until the timeout; an abort ends it at once. */
Test(rdma_conn, abort_cuts_connect_short, .timeout = 60)
{
	struct ferry_rdma_source_attr sa;
	struct ferry_rdma_source *src = NULL;
	struct ferry_rdma_block b;
	struct aborter ab = {.delay_ms = 300};
	struct rt_env env;
	pthread_t th;
	double t0;

	rt_env_or_skip(&env);
	b = (struct ferry_rdma_block){rt_map(MIB), MIB};
	ferry_rdma_source_attr_init(&sa);
	sa.host = env.ip;
	sa.port = 47998;
	sa.blocks = &b;
	sa.n_blocks = 1;
	sa.timeout_ms = 20000;
	cr_assert_eq(ferry_rdma_source_create(&sa, &src), 0, "create does no I/O");
	ab.src = src;
	cr_assert_eq(pthread_create(&th, NULL, abort_later, &ab), 0);
	t0 = rt_now_ms();
	cr_assert_eq(ferry_rdma_source_connect(src), -ECANCELED);
	cr_assert_lt(rt_now_ms() - t0, 2000, "the abort took %.0f ms", rt_now_ms() - t0);
	pthread_join(th, NULL);
	cr_assert_eq(ferry_rdma_source_connect(src), -EINVAL, "connect is once");
	cr_assert_eq(ferry_rdma_source_write(src, 0, NULL, 0), -ECANCELED);
	cr_assert_eq(ferry_rdma_source_close(src), -ECANCELED);
	rt_unmap(b.host, b.length);
}

Test(rdma_conn, dest_abort_wakes_every_wait, .timeout = 60)
{
	struct aborter ab = {.delay_ms = 300};
	struct pair p = {0};
	uint64_t tag;
	pthread_t th;
	double t0;

	pair_dest(&p, 2, FERRY_RDMA_REG_PIN_ALL, 1 * MIB);
	ab.dst = p.dst;
	cr_assert_eq(pthread_create(&th, NULL, abort_later, &ab), 0);
	t0 = rt_now_ms();
	cr_assert_eq(ferry_rdma_dest_receive(p.dst, 1, 0, &tag, -1), -ECANCELED);
	cr_assert_lt(rt_now_ms() - t0, 2000);
	pthread_join(th, NULL);
	cr_assert_eq(ferry_rdma_dest_accept(p.dst, -1), -ECANCELED);
	cr_assert_eq(ferry_rdma_dest_wait_flush(p.dst, 1, -1), -ECANCELED);
	cr_assert_eq(ferry_rdma_dest_close(p.dst), -ECANCELED);
	p.dst = NULL;
	pair_free(&p);
}

/* The destination's per-lane view: sync points as they come, then the normal end. */
Test(rdma_conn, receive_per_lane_and_normal_end, .timeout = 60)
{
	struct ferry_rdma_source *src = NULL;
	struct ferry_rdma_lane_stats ls;
	struct ferry_rdma_run r = {.block = 0, .offset = 0, .length = 256 * 1024};
	struct pair p = {0};
	uint64_t tag = 0;

	pair_dest(&p, 2, FERRY_RDMA_REG_PIN_ALL, 1 * MIB);
	cr_assert_eq(rt_source_open(&p.sa, &src), 0);
	cr_assert_eq(ferry_rdma_dest_accept(p.dst, 5000), 0);
	cr_assert_eq(ferry_rdma_dest_receive(p.dst, 0, 0, &tag, 100), -ETIMEDOUT);

	cr_assert_eq(ferry_rdma_source_write(src, 0, &r, 1), 0);
	cr_assert_eq(ferry_rdma_source_flush(src, 0, 1), 0);
	cr_assert_eq(ferry_rdma_dest_receive(p.dst, 0, 0, &tag, 5000), 1);
	cr_assert_eq(tag, 1);
	cr_assert_eq(memcmp(p.sb.host, p.db.host, r.length), 0, "placed when reported");
	cr_assert_eq(ferry_rdma_dest_receive(p.dst, 0, 1, &tag, 100), -ETIMEDOUT);
	cr_assert_eq(ferry_rdma_dest_receive(p.dst, 1, 0, &tag, 100), -ETIMEDOUT,
		     "lane 1: nothing");
	/* Two flushes before the receiver looks: folded into the newest. */
	r.offset = MIB / 2;
	cr_assert_eq(ferry_rdma_source_write(src, 1, &r, 1), 0);
	cr_assert_eq(ferry_rdma_source_flush(src, 1, 1), 0);
	cr_assert_eq(ferry_rdma_source_flush(src, 1, 2), 0);
	cr_assert_eq(ferry_rdma_dest_receive(p.dst, 1, 0, &tag, 5000), 1);
	cr_assert_eq(tag, 2);
	ferry_rdma_source_lane_stats(src, 1, &ls);
	cr_assert(ls.flushes == 2 && ls.last_tag == 2 && ls.bytes == r.length && ls.writes >= 1);
	ferry_rdma_dest_lane_stats(p.dst, 1, &ls);
	cr_assert(ls.flushes == 2 && ls.last_tag == 2);

	cr_assert_eq(ferry_rdma_source_close(src), 0);
	cr_assert_eq(ferry_rdma_dest_receive(p.dst, 0, 1, &tag, 5000), 0, "lane 0 ended normally");
	cr_assert_eq(ferry_rdma_dest_receive(p.dst, 1, 2, &tag, 5000), 0, "lane 1 ended normally");
	cr_assert_eq(ferry_rdma_dest_status(p.dst, NULL, 0), 0);
	pair_free(&p);
}

/* A source that goes away without the normal end: its lanes are broken, not ended. */
Test(rdma_conn, lanes_dropped_without_end, .timeout = 60)
{
	struct ferry_rdma_source *src = NULL;
	struct pair p = {0};
	uint64_t tag = 0;

	pair_dest(&p, 2, FERRY_RDMA_REG_PIN_ALL, 1 * MIB);
	cr_assert_eq(rt_source_open(&p.sa, &src), 0);
	cr_assert_eq(ferry_rdma_dest_accept(p.dst, 5000), 0);
	write_all(src, &p);
	cr_assert_eq(ferry_rdma_dest_receive(p.dst, 0, 0, &tag, 5000), 1);
	ferry_rdma_source_destroy(src);
	cr_assert_eq(ferry_rdma_dest_receive(p.dst, 0, 1, &tag, 5000), -ECONNRESET);
	cr_assert_eq(ferry_rdma_dest_receive(p.dst, 1, 0, &tag, 5000), -ECONNRESET);
	pair_free(&p);
}
