/* SPDX-License-Identifier: MIT */
/*
 * make-seeds: write the seed corpora of the fuzz targets, valid streams made
 * by the library's own writer, so each fuzzer starts from inputs that reach
 * deep into the loader instead of dying at the magic.
 *
 *   make-seeds <dir>     writes <dir>/fuzz_load/, fuzz_stream/, fuzz_ram/,
 *                        fuzz_lanes/, fuzz_rdma_ctrl/, fuzz_uri/ and
 *                        fuzz_bench_ctrl/
 *                        (created if missing); fuzz_inspect starts from
 *                        the fuzz_load seeds, which are streams too
 *
 * The output is deterministic; the committed seeds under tests/fuzz/corpus/
 * are its output (regenerate them after a format change). Each seed is
 * checked by loading it back before it is written.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ferry/engine.h>
#include <ferry/error.h>
#include <ferry/savevm.h>
#include <ferry/stream.h>

#include "ctrl.h"
#include "fuzz_devices.h"
#include "fuzz_lanes.h"
#include "fuzz_ram.h"
#include "rdma/internal.h"

/* What fuzz_load configures when a stream carries capabilities. */
static const char *const fuzz_caps[] = {"x-ferry-fuzz"};
static const uint8_t fuzz_uuid[16] = {0xf0, 0x0d, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14};

static int write_file(const char *dir, const char *sub, const char *name, const void *p, size_t len)
{
	char path[4096];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, sub);
	if (mkdir(path, 0755) < 0 && errno != EEXIST) {
		perror(path);
		return -1;
	}
	snprintf(path, sizeof(path), "%s/%s/%s", dir, sub, name);
	f = fopen(path, "wb");
	if (!f || fwrite(p, 1, len, f) != len || fclose(f) != 0) {
		perror(path);
		return -1;
	}
	printf("%s (%zu bytes)\n", path, len);
	return 0;
}

/*
 * One whole stream of the fuzz devices, built step by step so it can carry
 * COMMAND records and several PARTs. @full adds capabilities, a UUID and the
 * vmdesc.
 */
static int make_stream(uint32_t seed, bool full, uint8_t **out, size_t *outlen)
{
	static struct fz_devices d;
	struct ferry_stream_config cfg = {.machine = "ferry-fuzz", .page_size = 4096};
	struct ferry_devices *reg = NULL;
	struct ferry_writer *w = NULL;
	const uint8_t *p;
	int ret;

	if (full) {
		cfg.capabilities = fuzz_caps;
		cfg.ncaps = 1;
		cfg.uuid = fuzz_uuid;
		cfg.send_vmdesc = true;
	}
	fz_devices_init(&d, seed);
	ret = ferry_devices_create(&reg);
	/* The bare stream leaves the suites' devices out: absent sections are fine. */
	if (!ret)
		ret = fz_devices_register(&d, reg, full);
	if (!ret)
		ret = ferry_writer_create_mem(0, &w);
	if (!ret)
		ret = ferry_save_begin(w, &cfg);
	if (!ret && full) {
		const uint8_t ping[4] = {0, 0, 0, 42};

		ret = ferry_save_command(w, FERRY_CMD_OPEN_RETURN_PATH, NULL, 0);
		if (!ret)
			ret = ferry_save_command(w, FERRY_CMD_PING, ping, sizeof(ping));
	}
	if (!ret)
		ret = ferry_save_setup(w, reg);
	while (!ret) {
		ret = ferry_save_iterate(w, reg);
		if (ret == 1) {
			ret = 0;
			break;
		}
	}
	if (!ret)
		ret = ferry_save_complete(w, reg, &cfg);
	if (!ret) {
		p = ferry_writer_mem_data(w, outlen);
		*out = malloc(*outlen);
		if (*out)
			memcpy(*out, p, *outlen);
		else
			ret = -ENOMEM;
	}
	ferry_writer_destroy(w);
	ferry_devices_destroy(reg);
	return ret;
}

/* The stream `ferry sample` writes: the bench devices alone. */
static int make_sample(uint8_t **out, size_t *outlen)
{
	static struct bench_devices b;
	char path[] = "/tmp/ferry-seed-XXXXXX";
	int fd = mkstemp(path);
	int ret;
	FILE *f;
	long n;

	if (fd < 0)
		return -errno;
	unlink(path);
	bench_devices_fill(&b, 7);
	ret = bench_write_sample_stream(fd, &b);
	f = fdopen(fd, "rb");
	if (!f) {
		close(fd);
		return -errno;
	}
	if (!ret && (fseek(f, 0, SEEK_END) < 0 || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) < 0))
		ret = -EIO;
	if (!ret) {
		*outlen = (size_t)n;
		*out = malloc(*outlen);
		if (!*out || fread(*out, 1, *outlen, f) != *outlen)
			ret = -EIO;
	}
	fclose(f);
	return ret;
}

/* Load @p back the way fuzz_load does; a seed that does not load is a bug here. */
static int check_loads(const uint8_t *p, size_t len, bool full)
{
	static struct fz_devices d;
	struct ferry_load_config cfg = {0};
	struct ferry_devices *reg = NULL;
	struct ferry_reader *r = NULL;
	int ret;

	if (full) {
		cfg.capabilities = fuzz_caps;
		cfg.ncaps = 1;
		cfg.uuid = fuzz_uuid;
	}
	fz_devices_init(&d, 0);
	ret = ferry_devices_create(&reg);
	if (!ret)
		ret = fz_devices_register(&d, reg, true);
	if (!ret)
		ret = ferry_reader_create_mem(p, len, &r);
	if (!ret) {
		ret = ferry_load(r, reg, &cfg);
		if (ret)
			fprintf(stderr, "seed does not load: %s\n", ferry_reader_errmsg(r));
	}
	ferry_reader_destroy(r);
	ferry_devices_destroy(reg);
	return ret;
}

/*
 * fuzz_stream seeds: byte 0 the program length, the program, then the
 * stream. Programs that walk a real stream's header with each primitive.
 */
static int stream_seeds(const char *dir, const uint8_t *s, size_t slen)
{
	/* be32 magic, be32 version, u8 type, be32 machine length, buffer 16, cstr... */
	static const uint8_t walk[] = {0x02, 0x02, 0x00, 0x02, 0x14, 0x00, 0x05, 0x07,
				       0x08, 0x10, 0x09, 0x01, 0x03, 0x06, 0x20, 0x0b};
	/* Every primitive, with odd chunk sizes from the same bytes. */
	static const uint8_t all[] = {0x00, 0x01, 0x02, 0x03, 0x34, 0x02, 0x05, 0x16,
				      0x03, 0x07, 0xf8, 0x40, 0x09, 0x0b, 0x00, 0x46,
				      0x01, 0x03, 0x0a, 0xee, 0x00, 0x01};
	uint8_t buf[1024];
	size_t n;

	if (slen > sizeof(buf) - 1 - sizeof(all))
		slen = sizeof(buf) - 1 - sizeof(all);

	buf[0] = sizeof(walk);
	memcpy(buf + 1, walk, sizeof(walk));
	n = slen < 200 ? slen : 200;
	memcpy(buf + 1 + sizeof(walk), s, n);
	if (write_file(dir, "fuzz_stream", "walk-header", buf, 1 + sizeof(walk) + n) < 0)
		return -1;

	buf[0] = sizeof(all);
	memcpy(buf + 1, all, sizeof(all));
	n = slen < 600 ? slen : 600;
	memcpy(buf + 1 + sizeof(all), s, n);
	if (write_file(dir, "fuzz_stream", "all-ops", buf, 1 + sizeof(all) + n) < 0)
		return -1;

	/* No program: the reader is created and destroyed over a short stream. */
	buf[0] = 0;
	memcpy(buf + 1, s, 16);
	return write_file(dir, "fuzz_stream", "empty-program", buf, 17);
}

/* ---- fuzz_ram ----------------------------------------------------------------------------- */

#define RAM_ZERO     0x002u
#define RAM_MEM_SIZE 0x004u
#define RAM_PAGE     0x008u
#define RAM_EOS	     0x010u
#define RAM_CONTINUE 0x020u
#define RAM_FLUSH    0x200u

static void ram_page(struct ferry_writer *w, const char *block, uint64_t page, bool zero,
		     uint8_t fill)
{
	uint8_t buf[4096];

	ferry_put_be64(w, (page << 12) | (zero ? RAM_ZERO : RAM_PAGE) | (block ? 0 : RAM_CONTINUE));
	if (block)
		ferry_put_cstr(w, block);
	if (zero) {
		ferry_put_u8(w, 0);
		return;
	}
	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)(fill + i * 7);
	ferry_put_buffer(w, buf, sizeof(buf));
}

static void ram_sep(struct ferry_writer *w)
{
	ferry_put_buffer(w, FZ_RAM_SEP, FZ_RAM_SEP_LEN);
}

static void ram_block_list(struct ferry_writer *w)
{
	ferry_put_be64(w, (uint64_t)(FZ_RAM_BLOCK0_LEN + FZ_RAM_BLOCK1_LEN) | RAM_MEM_SIZE);
	ferry_put_cstr(w, FZ_RAM_BLOCK0);
	ferry_put_be64(w, FZ_RAM_BLOCK0_LEN);
	ferry_put_cstr(w, FZ_RAM_BLOCK1);
	ferry_put_be64(w, FZ_RAM_BLOCK1_LEN);
	ferry_put_be64(w, RAM_EOS);
}

/* Load @p as fuzz_ram does; a seed that does not load is a bug here. */
static int check_ram_loads(const uint8_t *p, size_t len)
{
	static uint8_t b0[FZ_RAM_BLOCK0_LEN] __attribute__((aligned(4096)));
	static uint8_t b1[FZ_RAM_BLOCK1_LEN] __attribute__((aligned(4096)));
	struct ferry_ram_block rb0 = {.name = FZ_RAM_BLOCK0,
				      .host = b0,
				      .length = FZ_RAM_BLOCK0_LEN,
				      .page_size = 4096,
				      .numa_node = -1};
	struct ferry_ram_block rb1 = {.name = FZ_RAM_BLOCK1,
				      .host = b1,
				      .length = FZ_RAM_BLOCK1_LEN,
				      .page_size = 4096,
				      .numa_node = -1};
	struct ferry_load_config cfg = {.vmdesc_mode = FERRY_VMDESC_NONE};
	struct ferry_engine *eng = NULL;
	struct ferry_writer *w = NULL;
	struct ferry_reader *r = NULL;
	const uint8_t *s;
	size_t slen;
	int ret = ferry_engine_create(&eng);

	/* add_ram returns the block's index. */
	if (!ret && ferry_engine_add_ram(eng, &rb0) < 0)
		ret = -EINVAL;
	if (!ret && ferry_engine_add_ram(eng, &rb1) < 0)
		ret = -EINVAL;
	if (!ret)
		ret = ferry_writer_create_mem(0, &w);
	if (!ret) {
		fz_ram_frame(w, p, len);
		s = ferry_writer_mem_data(w, &slen);
		ret = ferry_reader_create_mem(s, slen, &r);
	}
	if (!ret) {
		ret = ferry_load(r, ferry_engine_devices(eng), &cfg);
		if (ret)
			fprintf(stderr, "fuzz_ram seed does not load: %s\n",
				ferry_reader_errmsg(r));
	}
	if (ret)
		fprintf(stderr, "fuzz_ram seed: %s\n", ferry_strerror(ret));
	ferry_reader_destroy(r);
	ferry_writer_destroy(w);
	ferry_engine_destroy(eng);
	return ret;
}

static int ram_seed(const char *dir, const char *name, struct ferry_writer *w)
{
	size_t len;
	const uint8_t *p = ferry_writer_mem_data(w, &len);
	int ret = check_ram_loads(p, len);

	if (!ret)
		ret = write_file(dir, "fuzz_ram", name, p, len);
	ferry_writer_destroy(w);
	return ret;
}

/*
 * The records engine/ram.c writes: the block list in START, pages of both
 * blocks (named, then CONTINUE), zero pages, a round's MULTIFD_FLUSH, EOS.
 */
static int ram_seeds(const char *dir)
{
	struct ferry_writer *w;

	if (ferry_writer_create_mem(0, &w) < 0)
		return -1;
	ram_block_list(w);
	ram_sep(w);
	ram_page(w, FZ_RAM_BLOCK0, 0, false, 1);
	ram_page(w, NULL, 1, true, 0);
	ram_page(w, NULL, 15, false, 2);
	ram_page(w, FZ_RAM_BLOCK1, 3, false, 3);
	ferry_put_be64(w, RAM_FLUSH);
	ferry_put_be64(w, RAM_EOS);
	ram_sep(w);
	ram_page(w, FZ_RAM_BLOCK0, 2, true, 0);
	ram_page(w, NULL, 3, false, 4);
	ferry_put_be64(w, RAM_EOS);
	if (ram_seed(dir, "rounds", w) < 0)
		return -1;

	if (ferry_writer_create_mem(0, &w) < 0)
		return -1;
	ram_block_list(w);
	ram_sep(w);
	ram_page(w, FZ_RAM_BLOCK1, 0, true, 0);
	ferry_put_be64(w, RAM_EOS);
	return ram_seed(dir, "setup-end", w);
}

/* ---- fuzz_lanes --------------------------------------------------------------------------- */

struct buf {
	uint8_t p[64 * 1024];
	size_t n;
};

static void lane_pages(struct buf *b, uint32_t block, uint64_t seq, const uint64_t (*data)[2],
		       uint16_t ndata, const uint64_t (*zero)[2], uint16_t nzero)
{
	uint32_t dp = 0, zp = 0;
	uint8_t *hdr = b->p + b->n;

	b->n += FZ_LANES_PKT_LEN;
	for (uint16_t i = 0; i < ndata; i++, b->n += FZ_LANES_RUN_LEN) {
		fz_lanes_run(b->p + b->n, data[i][0], (uint32_t)data[i][1]);
		dp += (uint32_t)data[i][1];
	}
	for (uint16_t i = 0; i < nzero; i++, b->n += FZ_LANES_RUN_LEN) {
		fz_lanes_run(b->p + b->n, zero[i][0], (uint32_t)zero[i][1]);
		zp += (uint32_t)zero[i][1];
	}
	fz_lanes_pkt(hdr, FZ_PKT_PAGES, block, ndata, nzero, dp, zp, seq);
	for (uint32_t i = 0; i < dp * 4096u; i++)
		b->p[b->n++] = (uint8_t)(i * 13 + seq);
}

static void lane_ctl(struct buf *b, uint16_t type, uint64_t seq)
{
	fz_lanes_pkt(b->p + b->n, type, 0, 0, 0, 0, 0, seq);
	b->n += FZ_LANES_PKT_LEN;
}

/* What a source lane sends (byte 0 even: fuzz_lanes sends the HELLO itself). */
static int lanes_seeds(const char *dir)
{
	static const uint64_t d0[][2] = {{0, 2}, {5, 1}}, z0[][2] = {{8, 3}}, d1[][2] = {{3, 1}};
	static struct buf b;

	b.n = 0;
	b.p[b.n++] = 0;
	lane_pages(&b, 0, 1, d0, 2, z0, 1);
	lane_ctl(&b, FZ_PKT_SYNC, 1);
	lane_pages(&b, 1, 2, d1, 1, NULL, 0);
	lane_ctl(&b, FZ_PKT_SYNC, 2);
	lane_ctl(&b, FZ_PKT_END, 0);
	if (write_file(dir, "fuzz_lanes", "pages-sync-end", b.p, b.n) < 0)
		return -1;

	b.n = 0;
	b.p[b.n++] = 1;
	fz_lanes_hello(b.p + b.n, 0, 1);
	b.n += FZ_LANES_HELLO_LEN;
	lane_pages(&b, 0, 1, NULL, 0, z0, 1);
	lane_ctl(&b, FZ_PKT_SYNC, 1);
	lane_ctl(&b, FZ_PKT_END, 0);
	return write_file(dir, "fuzz_lanes", "own-hello-zero", b.p, b.n);
}

/* ---- fuzz_rdma_ctrl ----------------------------------------------------------------------- */

static int rdma_seed(const char *dir, const char *name, uint8_t mode, const void *p, size_t len)
{
	static uint8_t buf[1 + RDM_CTRL_BUF];

	buf[0] = mode;
	memcpy(buf + 1, p, len);
	return write_file(dir, "fuzz_rdma_ctrl", name, buf, 1 + len);
}

/* One of each message the RDMA lanes exchange, and both private data. */
static int rdma_seeds(const char *dir)
{
	static uint8_t w[RDM_CTRL_BUF];
	const struct rdm_msg msgs[] = {
	    {.type = RDM_MSG_HELLO_REQ,
	     .req = 1,
	     .u.hello_req = {.version = RDM_VERSION, .lane = 2}},
	    {.type = RDM_MSG_HELLO,
	     .req = 1,
	     .u.hello = {.version = RDM_VERSION,
			 .reg = 1,
			 .chunk_size = 1 << 20,
			 .lane_budget = 64,
			 .n_blocks = 2}},
	    {.type = RDM_MSG_TABLE_REQ, .req = 2, .u.table_req = {.first = 0, .max = 8}},
	    {.type = RDM_MSG_REG_REQ, .req = 3, .u.chunk = {.block = 1, .chunk = 4}},
	    {.type = RDM_MSG_REG,
	     .req = 3,
	     .u.chunk = {.block = 1,
			 .rkey = 0x1234,
			 .chunk = 4,
			 .addr = 0x7f0000400000,
			 .length = 1 << 20}},
	    {.type = RDM_MSG_UNREG_REQ, .req = 4, .u.chunk = {.block = 1, .chunk = 4}},
	    {.type = RDM_MSG_FLUSH_REQ, .req = 5, .u.flush = {.tag = 9, .seq = 17}},
	    {.type = RDM_MSG_FLUSH, .req = 5, .status = RDM_ST_RANGE, .u.flush = {.tag = 9}},
	    {.type = RDM_MSG_NOP_REQ, .req = 6},
	    {.type = RDM_MSG_BYE_REQ, .req = 7},
	};
	const struct rdm_table_entry e[2] = {{.addr = 0x7f0000000000, .length = 1 << 24, .rkey = 7},
					     {.addr = 0x7f0001000000, .length = 1 << 16}};
	struct rdm_conn_req req = {.version = RDM_VERSION, .lane = 1, .lanes = 4};
	char name[32];
	uint32_t n;

	for (size_t i = 0; i < sizeof(msgs) / sizeof(msgs[0]); i++) {
		n = rdm_msg_to_wire(&msgs[i], w);
		snprintf(name, sizeof(name), "msg-%s", rdm_msg_name(msgs[i].type));
		if (!n || rdma_seed(dir, name, 0, w, n) < 0)
			return -1;
	}
	n = rdm_table_to_wire(2, 0, 0, e, 2, w);
	if (!n || rdma_seed(dir, "msg-table", 0, w, n) < 0)
		return -1;
	memcpy(req.id, "rdma-seed-id-016", sizeof(req.id));
	rdm_conn_req_to_wire(&req, w);
	if (rdma_seed(dir, "conn-req", 2, w, RDM_CONN_REQ_LEN) < 0)
		return -1;
	/* With the authenticator tag keyed from the TLS session (docs/security-tls.md). */
	req.has_auth = true;
	memset(req.auth, 0xa7, sizeof(req.auth));
	rdm_conn_req_to_wire(&req, w);
	if (rdma_seed(dir, "conn-req-auth", 2, w, RDM_CONN_REQ_LEN) < 0)
		return -1;
	rdm_conn_reply_to_wire(RDM_REJ_ID, 4, w);
	return rdma_seed(dir, "conn-reply", 3, w, RDM_CONN_REPLY_LEN);
}

/* ---- fuzz_uri ----------------------------------------------------------------------------- */

/* URIs of every scheme and form, as the channels_uri suite uses them. */
static int uri_seeds(const char *dir)
{
	static const char *const uris[] = {
	    "tcp:127.0.0.1:4444",
	    "tcp:[::1]:0",
	    "tcp::5555",
	    "tcp:host.example:65535",
	    "unix:/tmp/ferry.sock",
	    "fd:42",
	    "file:/tmp/vm.state",
	    "file:/tmp/a,b,offset=0x7ffffffffffff000",
	    "file:/tmp/vm.state,offset=4096",
	    "exec:gzip -c | ssh host 'cat > a:b'",
	    "rdma:192.168.0.1:4444",
	    "rdma:[fe80::1]:1",
	};
	char name[16];

	for (size_t i = 0; i < sizeof(uris) / sizeof(uris[0]); i++) {
		snprintf(name, sizeof(name), "uri-%02zu", i);
		if (write_file(dir, "fuzz_uri", name, uris[i], strlen(uris[i])) < 0)
			return -1;
	}
	return 0;
}

/* fuzz_bench_ctrl seeds: one valid message of each type of bench/ctrl.h. */
static int bench_ctrl_seeds(const char *dir)
{
	struct bench_msg m[8];
	uint8_t buf[BENCH_CTRL_MAX];
	char name[24];

	memset(m, 0, sizeof(m));
	m[0].type = BENCH_MSG_HELLO;
	m[0].u.hello.max_ram = 4ull << 30;
	m[1].type = BENCH_MSG_RUN;
	m[1].u.run.sc = (struct bench_scenario){.index = 3,
						.ram_bytes = 256u << 20,
						.dirty_rate = 50u << 20,
						.pattern = BENCH_PATTERN_HOT,
						.transport = BENCH_TR_RDMA,
						.channels = 2,
						.reg = 1,
						.page_size = 4096,
						.downtime_ms = 300,
						.vcpus = 2};
	m[1].u.run.rep = 1;
	m[1].u.run.seed = 42;
	m[1].u.run.timeout_ms = 120000;
	m[2].type = BENCH_MSG_READY;
	m[2].u.ready.port = 4481;
	m[3].type = BENCH_MSG_RESULT;
	m[3].u.result.verified = 1;
	strcpy(m[3].u.result.status, "completed");
	m[3].u.result.cpu_us = 250000;
	m[3].u.result.registration_us = 6500;
	strcpy(m[3].u.result.verify_error, "");
	m[4].type = BENCH_MSG_CEIL;
	m[4].u.ceil.transport = BENCH_TR_TCP;
	m[4].u.ceil.streams = 2;
	m[4].u.ceil.msg_size = 2u << 20;
	m[4].u.ceil.ms = 2000;
	m[5].type = BENCH_MSG_CEIL_RESULT;
	m[5].u.ceil_result.bytes = 1ull << 32;
	m[5].u.ceil_result.ns = 2000000000;
	m[6].type = BENCH_MSG_ERROR;
	m[6].u.error.code = -22;
	strcpy(m[6].u.error.msg, "guest larger than --max-ram");
	m[7].type = BENCH_MSG_BYE;
	for (int i = 0; i < 8; i++) {
		int len = bench_msg_to_wire(&m[i], buf, sizeof(buf));

		snprintf(name, sizeof(name), "msg-%d", m[i].type);
		if (len < 0 || write_file(dir, "fuzz_bench_ctrl", name, buf, (size_t)len) < 0)
			return -1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	uint8_t *full = NULL, *bare = NULL, *sample = NULL;
	size_t full_len = 0, bare_len = 0, sample_len = 0;
	int ret = 1;

	if (argc != 2) {
		fprintf(stderr, "usage: %s <corpus-dir>\n", argv[0]);
		return 2;
	}
	if (mkdir(argv[1], 0755) < 0 && errno != EEXIST) {
		perror(argv[1]);
		return 1;
	}
	/*
	 * Seed 2: every device, one PART, extra subsection on, gated field off;
	 * 5: not the suites' devices, several PARTs, the opposite, no vmdesc.
	 */
	if (make_stream(2, true, &full, &full_len) < 0 ||
	    make_stream(5, false, &bare, &bare_len) < 0 || make_sample(&sample, &sample_len) < 0) {
		fprintf(stderr, "cannot write the seed streams\n");
		goto out;
	}
	if (check_loads(full, full_len, true) || check_loads(bare, bare_len, false) ||
	    check_loads(sample, sample_len, false))
		goto out;
	if (write_file(argv[1], "fuzz_load", "full.qevm", full, full_len) ||
	    write_file(argv[1], "fuzz_load", "bare.qevm", bare, bare_len) ||
	    write_file(argv[1], "fuzz_load", "sample.qevm", sample, sample_len) ||
	    stream_seeds(argv[1], full, full_len) || ram_seeds(argv[1]) || lanes_seeds(argv[1]) ||
	    rdma_seeds(argv[1]) || uri_seeds(argv[1]) || bench_ctrl_seeds(argv[1]))
		goto out;
	ret = 0;
out:
	free(full);
	free(bare);
	free(sample);
	return ret;
}
