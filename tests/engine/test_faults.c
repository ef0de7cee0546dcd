/* SPDX-License-Identifier: MIT */
/*
 * engine_faults: the fault matrix (docs/security.md has it as a table).
 *
 *   transport (tcp single channel, tcp with 2 data lanes, file:, rdma)
 *   x phase   (setup, bulk, iterate, switchover, device state, completion)
 *   x fault   (peer killed, connection reset, stall past the timeout,
 *              a corrupted byte, a full disk for file:)
 *   -> the expected outcome
 *
 * Every row checks the two promises: the source guest ends running with its
 * memory intact (its vCPUs write again, the A-B check passes, every page
 * still holds what the guest's fill pattern and its own writes put there,
 * and its devices are as they were), and the destination never reports
 * success with a wrong page (a completed destination passes the same
 * verifier, and equals the source page by page when the source stopped).
 *
 * The tcp rows run through the fault proxy (fault_proxy.h). A row's phase
 * is reached by arming the proxy from the source's own events (status and
 * round events), or by a byte pattern that only that phase sends (a device
 * section's name, the destination's SHUT message); the row then checks
 * that the fault struck in that phase. The guest is small (16 MiB) and paced
 * (64 MiB/s, 8 MiB/s dirtied, downtime limit 20 ms) so that there is a bulk
 * round, at least one iterative round and a switchover, in well under a
 * second; stall rows run with a 1 s stall timeout on both sides (and every
 * row with an 8 s deadline).
 *
 * The rdma rows run where there is an RDMA device (the soft-RoCE rig:
 * tests/rdma/run-in-rig.sh -f 'engine_faults/rdma') and skip with the
 * reason elsewhere. The proxy
 * stands on the main stream only (it works on TCP bytes and cannot stand
 * between queue pairs): the destination listens on rdma:<device IP>:0, the
 * source migrates to rdma:<proxy>:<proxy port>; both sides are given the
 * same free rdma_cm port (rdma_port) and the source no_fallback, so a row
 * can never pass over TCP lanes; the source's stats must say rdma. Rows
 * that need page bytes on a proxied connection do not apply (see RDMA_ROWS).
 * Queue-pair faults are tested in the rig by rdma_fault (link and device
 * loss), rdma_failover (queue pairs lost mid-migration, finishing over TCP)
 * and rdma_hostile.
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <criterion/parameterized.h>
#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ferry/engine.h>
#include <ferry/error.h>
#include <ferry/log.h>

#include "../channels/helpers.h"
#include "../rdma/helpers.h"
#include "bench/guest.h"
#include "fault_proxy.h"

enum fx_transport { FX_TCP, FX_MULTI, FX_FILE, FX_RDMA, FX_TCP_TLS, FX_MULTI_TLS };
enum fx_phase { FX_SETUP, FX_BULK, FX_ITERATE, FX_SWITCHOVER, FX_DEVICE, FX_COMPLETION };
enum fx_fault { FX_KILL, FX_RESET, FX_STALL, FX_CORRUPT, FX_CORRUPT_PAYLOAD, FX_DISK_FULL };

/* What the destination may end with (the source always ends running and intact). */
enum fx_expect {
	FX_DEST_FAILS,	   /* the destination fails; so does the source */
	FX_DEST_COMPLETES, /* everything arrived before the fault: the destination completes
			      with correct RAM, the source (never confirmed) fails and resumes */
	FX_PAYLOAD_GAP,	   /* a flipped page byte: no integrity check without TLS (see the docs) */
};

struct fx_row {
	enum fx_transport transport;
	enum fx_phase phase;
	enum fx_fault fault;
	enum fx_expect expect;
};

static const char *const transport_names[] = {"tcp",  "tcp-multi", "file",
					      "rdma", "tcp+tls",   "tcp-multi+tls"};
static const char *const phase_names[] = {"setup",	"bulk",		"iterate",
					  "switchover", "device state", "completion"};
static const char *const fault_names[] = {"peer killed",    "connection reset", "stall",
					  "corrupted byte", "payload byte",	"disk full"};

#define ROW_FMT "[%s / %s / %s] "
#define ROW_ARGS(r)                                                                                \
	transport_names[(r)->transport], phase_names[(r)->phase], fault_names[(r)->fault]
#define RAM_BYTES (16u << 20)
/* A stall is noticed by the stall timeout, however long the run took before it. */
#define STALL_TIMEOUT 1000
#define RUN_TIMEOUT   8000
/* The rdma rows run in a TCG guest: RDMA setup and rxe are slow there. */
#define RDMA_STALL_TIMEOUT 3000
#define RDMA_RUN_TIMEOUT   60000

static const struct bench_guest_attr guest_attr = {
    .ram_bytes = RAM_BYTES,
    .vcpus = 2,
    .dirty_rate = 8u << 20,
    .pattern = BENCH_PATTERN_AB,
    .fill_seed = 42,
};

/* ---- the rows ------------------------------------------------------------------------------ */

#define NET_ROWS(t) {t, FX_BULK, FX_CORRUPT_PAYLOAD, FX_PAYLOAD_GAP}, RDMA_ROWS(t)

/*
 * Every network row but the payload byte. For rdma, that is every row that
 * applies: the proxy stands on the main stream only, which carries no page
 * bytes there (they go by RDMA WRITE), so a flipped page byte has nowhere to
 * be flipped; its faults strike the main stream in every phase (during the
 * rounds it carries PART sections of EOS every 50 ms and the round markers).
 */
#define RDMA_ROWS(t)                                                                               \
	{t, FX_SETUP, FX_KILL, FX_DEST_FAILS}, {t, FX_SETUP, FX_RESET, FX_DEST_FAILS},             \
	    {t, FX_SETUP, FX_STALL, FX_DEST_FAILS}, {t, FX_SETUP, FX_CORRUPT, FX_DEST_FAILS},      \
	    {t, FX_BULK, FX_KILL, FX_DEST_FAILS}, {t, FX_BULK, FX_RESET, FX_DEST_FAILS},           \
	    {t, FX_BULK, FX_STALL, FX_DEST_FAILS}, {t, FX_BULK, FX_CORRUPT, FX_DEST_FAILS},        \
	    {t, FX_ITERATE, FX_KILL, FX_DEST_FAILS}, {t, FX_ITERATE, FX_RESET, FX_DEST_FAILS},     \
	    {t, FX_ITERATE, FX_STALL, FX_DEST_FAILS}, {t, FX_ITERATE, FX_CORRUPT, FX_DEST_FAILS},  \
	    {t, FX_SWITCHOVER, FX_KILL, FX_DEST_FAILS},                                            \
	    {t, FX_SWITCHOVER, FX_RESET, FX_DEST_FAILS},                                           \
	    {t, FX_SWITCHOVER, FX_STALL, FX_DEST_FAILS},                                           \
	    {t, FX_SWITCHOVER, FX_CORRUPT, FX_DEST_FAILS}, {t, FX_DEVICE, FX_KILL, FX_DEST_FAILS}, \
	    {t, FX_DEVICE, FX_RESET, FX_DEST_FAILS}, {t, FX_DEVICE, FX_STALL, FX_DEST_FAILS},      \
	    {t, FX_DEVICE, FX_CORRUPT, FX_DEST_FAILS},                                             \
	    {t, FX_COMPLETION, FX_KILL, FX_DEST_COMPLETES},                                        \
	    {t, FX_COMPLETION, FX_RESET, FX_DEST_COMPLETES},                                       \
	    {t, FX_COMPLETION, FX_STALL, FX_DEST_COMPLETES},                                       \
	{                                                                                          \
		t, FX_COMPLETION, FX_CORRUPT, FX_DEST_COMPLETES                                    \
	}

/*
 * Inside TLS (a PSK written at test time), the flipped page byte that a
 * plaintext stream cannot notice breaks a record's authentication tag: the
 * destination fails instead of completing with one wrong page.
 */
#define TLS_ROWS(t)                                                                                \
	{t, FX_BULK, FX_CORRUPT_PAYLOAD, FX_DEST_FAILS}, {t, FX_BULK, FX_RESET, FX_DEST_FAILS},    \
	{                                                                                          \
		t, FX_ITERATE, FX_KILL, FX_DEST_FAILS                                              \
	}

static struct fx_row net_rows[] = {NET_ROWS(FX_TCP), NET_ROWS(FX_MULTI), TLS_ROWS(FX_TCP_TLS),
				   TLS_ROWS(FX_MULTI_TLS)};

/* A test of their own, so the rig can run just these: --filter 'engine_faults/rdma'. */
static struct fx_row rdma_rows[] = {RDMA_ROWS(FX_RDMA)};

static struct fx_row file_rows[] = {
    {FX_FILE, FX_SETUP, FX_DISK_FULL, FX_DEST_FAILS},
    {FX_FILE, FX_BULK, FX_DISK_FULL, FX_DEST_FAILS},
    {FX_FILE, FX_DEVICE, FX_DISK_FULL, FX_DEST_FAILS},
    {FX_FILE, FX_COMPLETION, FX_DISK_FULL, FX_DEST_FAILS},
};

static bool is_multi(enum fx_transport t)
{
	return t == FX_MULTI || t == FX_MULTI_TLS;
}

static bool is_tls(enum fx_transport t)
{
	return t == FX_TCP_TLS || t == FX_MULTI_TLS;
}

/* ---- the two sides ----------------------------------------------------------------------- */

struct fx_side {
	struct ferry_engine *eng;
	struct bench_guest *guest;
};

/*
 * @rdma_port: an rdma row: the rdma_cm port both sides use (and the source
 * never falls back to TCP lanes); else 0.
 */
static void side_make(struct fx_side *s, bool source, uint32_t vcpus, uint64_t stall_ms,
		      uint32_t channels, uint64_t downtime_ms, uint64_t dirty_rate,
		      uint32_t rdma_port)
{
	struct bench_guest_attr a = guest_attr;
	struct ferry_params p = {.timeout_ms = rdma_port ? RDMA_RUN_TIMEOUT : RUN_TIMEOUT,
				 .stall_timeout_ms = stall_ms,
				 .rdma_port = rdma_port};

	a.vcpus = vcpus;
	if (dirty_rate)
		a.dirty_rate = dirty_rate;
	cr_assert_eq(ferry_engine_create(&s->eng), 0);
	if (!source)
		a.fill_seed = 1042; /* everything must arrive */
	cr_assert_eq(bench_guest_create(&a, &s->guest), 0);
	if (source) {
		p.max_bandwidth = 64u << 20;
		p.downtime_limit_ms = downtime_ms ? downtime_ms : 20;
		p.channels = channels;
		p.no_fallback = rdma_port != 0;
		cr_assert_eq(bench_guest_attach_source(s->guest, s->eng), 0);
	} else {
		bench_devices_fill(bench_guest_devices(s->guest), 0xdead);
		cr_assert_eq(bench_guest_attach_dest(s->guest, s->eng), 0);
	}
	cr_assert_eq(ferry_engine_set_params(s->eng, &p), 0);
}

static void side_free(struct fx_side *s)
{
	ferry_engine_destroy(s->eng);
	bench_guest_destroy(s->guest);
}

static enum ferry_status status_of(struct fx_side *s, struct ferry_stats *st)
{
	ferry_engine_get_stats(s->eng, st);
	return st->status;
}

/*
 * The source's promise: not completed unless @completed_ok, its vCPUs write
 * again (when it had any), its RAM holds nothing but its own data, its
 * devices are as they were.
 */
static void check_source(const struct fx_row *r, struct fx_side *src, uint32_t vcpus,
			 const uint8_t *control, bool completed_ok)
{
	struct bench_guest_attr a = guest_attr;
	struct ferry_stats st;
	char why[512];
	uint64_t bad, len;
	uint8_t *ram = bench_guest_ram(src->guest, &len);

	a.vcpus = vcpus;
	status_of(src, &st);
	if (!completed_ok)
		cr_assert_eq(st.status, FERRY_STATUS_FAILED, ROW_FMT "source: %s (%s)", ROW_ARGS(r),
			     ferry_status_name(st.status), st.error_msg);
	if (st.status == FERRY_STATUS_FAILED)
		cr_assert_neq(st.error_msg[0], '\0', ROW_FMT "source failed with no message",
			      ROW_ARGS(r));
	if (st.status != FERRY_STATUS_COMPLETED && vcpus) {
		uint64_t w0 = bench_guest_page_writes(src->guest);

		/* The vCPUs pace their writes: give them up to a second to show one. */
		for (int i = 0; i < 100 && bench_guest_page_writes(src->guest) == w0; i++)
			usleep(10000);
		cr_assert_gt(bench_guest_page_writes(src->guest), w0,
			     ROW_FMT "the source's vCPUs did not resume", ROW_ARGS(r));
		bench_guest_stop_vcpus(src->guest);
	}
	if (control)
		cr_assert_eq(memcmp(control, ram, len), 0, ROW_FMT "the source's RAM changed",
			     ROW_ARGS(r));
	bad = bench_guest_verify(src->guest, &a, why, sizeof(why));
	cr_assert_eq(bad, 0, ROW_FMT "source guest damaged: %s", ROW_ARGS(r), why);
}

/*
 * The destination's promise: completed only when allowed, and then with
 * RAM the source could have had (equal to it when the source stopped).
 * Returns the number of pages that differ from the source's (for the
 * payload rows, which report it).
 */
static uint64_t check_dest(const struct fx_row *r, struct fx_side *src, struct fx_side *dst)
{
	struct bench_guest_attr a = guest_attr;
	struct ferry_stats sst, dst_st;
	char why[512];
	uint64_t bad = 0;

	status_of(src, &sst);
	status_of(dst, &dst_st);
	if (r->expect == FX_DEST_FAILS)
		cr_assert_eq(dst_st.status, FERRY_STATUS_FAILED, ROW_FMT "destination: %s (%s)",
			     ROW_ARGS(r), ferry_status_name(dst_st.status), dst_st.error_msg);
	if (r->expect == FX_DEST_COMPLETES)
		cr_assert_eq(dst_st.status, FERRY_STATUS_COMPLETED, ROW_FMT "destination: %s (%s)",
			     ROW_ARGS(r), ferry_status_name(dst_st.status), dst_st.error_msg);
	if (dst_st.status == FERRY_STATUS_FAILED)
		cr_assert_neq(dst_st.error_msg[0], '\0',
			      ROW_FMT "destination failed with no message", ROW_ARGS(r));
	/* The source never completes without the destination. */
	if (sst.status == FERRY_STATUS_COMPLETED)
		cr_assert_eq(dst_st.status, FERRY_STATUS_COMPLETED,
			     ROW_FMT "source completed, destination %s", ROW_ARGS(r),
			     ferry_status_name(dst_st.status));
	if (dst_st.status != FERRY_STATUS_COMPLETED)
		return 0;
	if (sst.status == FERRY_STATUS_COMPLETED) {
		uint64_t slen, dlen;
		const uint8_t *s = bench_guest_ram(src->guest, &slen),
			      *d = bench_guest_ram(dst->guest, &dlen);

		for (uint64_t off = 0; off < slen; off += 4096)
			bad += memcmp(s + off, d + off, 4096) != 0;
		if (r->expect != FX_PAYLOAD_GAP)
			cr_assert_eq(bad, 0, ROW_FMT "destination completed with %lu wrong pages",
				     ROW_ARGS(r), (unsigned long)bad);
		return bad;
	}
	bad = bench_guest_verify(dst->guest, &a, why, sizeof(why));
	if (r->expect != FX_PAYLOAD_GAP)
		cr_assert_eq(bad, 0, ROW_FMT "destination completed with wrong data: %s",
			     ROW_ARGS(r), why);
	return bad;
}

/* ---- network rows ---------------------------------------------------------------------------- */

struct fx_run {
	const struct fx_row *row;
	struct fx_side *src, *dst;
	struct proxy px;
	atomic_int status;	  /* the source's, from its events */
	atomic_ullong rounds;	  /* idem */
	atomic_int strike_status; /* at the moment the fault struck */
	atomic_ullong strike_rounds;
};

static void on_event(void *opaque, enum ferry_event_type type, const struct ferry_stats *st)
{
	struct fx_run *run = opaque;

	atomic_store(&run->status, (int)st->status);
	atomic_store(&run->rounds, st->rounds);
	switch (run->row->phase) {
	case FX_BULK:
		if (st->status == FERRY_STATUS_ACTIVE)
			px_arm(&run->px);
		break;
	case FX_ITERATE:
		if (type == FERRY_EVENT_ROUND && st->status == FERRY_STATUS_ACTIVE &&
		    st->rounds >= 1)
			px_arm(&run->px);
		break;
	case FX_SWITCHOVER:
	case FX_DEVICE:
	case FX_COMPLETION:
		if (st->status == FERRY_STATUS_DEVICE)
			px_arm(&run->px);
		break;
	default:
		break;
	}
}

static void on_strike(void *opaque)
{
	struct fx_run *run = opaque;

	atomic_store(&run->strike_status, atomic_load(&run->status));
	atomic_store(&run->strike_rounds, atomic_load(&run->rounds));
}

/* The RAM section's EOS record and the footer marker after it: flipping the marker is caught. */
static const uint8_t eos_footer[] = {0, 0, 0, 0, 0, 0, 0, 0x10, 0x7e};
/*
 * One PART of the "ram" section ending and the next beginning: the EOS
 * record's last byte, the footer (marker, section id 0: the engine registers
 * "ram" first), the next PART's header. Flipping that header's type is caught.
 */
static const uint8_t ram_part[] = {0x10, 0x7e, 0, 0, 0, 0, 0x02, 0, 0, 0, 0};
/* A data lane packet's magic ("FRYD"). */
static const uint8_t lane_magic[] = {'F', 'R', 'Y', 'D'};
/* The first device section's name as a counted string. */
static const uint8_t serial_idstr[] = {6, 's', 'e', 'r', 'i', 'a', 'l'};
/* The destination's SHUT(0) on the return path: type 1, length 4, value 0. */
static const uint8_t shut_ok[] = {0, 1, 0, 4, 0, 0, 0, 0};

#define PATTERN(f, p, at)                                                                          \
	do {                                                                                       \
		(f)->pattern = (p);                                                                \
		(f)->pattern_len = sizeof(p);                                                      \
		(f)->pattern_at = (at);                                                            \
	} while (0)

static void setup_fault(struct fx_run *run)
{
	const struct fx_row *r = run->row;
	struct px_fault *f = &run->px.fault;
	/* The connection that carries pages: the main stream, or the first lane to connect. */
	int page_conn = is_multi(r->transport) ? 1 : 0;

	switch (r->fault) {
	case FX_KILL:
		f->kind = PX_FAULT_KILL;
		break;
	case FX_RESET:
		f->kind = PX_FAULT_RESET;
		break;
	case FX_STALL:
		f->kind = PX_FAULT_STALL;
		break;
	default:
		f->kind = PX_FAULT_CORRUPT;
		break;
	}
	switch (r->phase) {
	case FX_SETUP:
		/* Inside the header and configuration: the first bytes of the main stream. */
		f->conn = 0;
		f->after = r->fault == FX_CORRUPT ? 0 : 12;
		px_arm(&run->px);
		break;
	case FX_BULK:
	case FX_ITERATE:
	case FX_SWITCHOVER:
		f->conn = page_conn;
		/* rdma: the main stream carries no pages, only a little in each round. */
		f->after = r->phase == FX_BULK && r->transport != FX_RDMA ? (1u << 20) : 0;
		/* A byte well inside the bulk round, in a page the vCPUs do not write
		 * again before the migration ends (they sweep their half of RAM at 4 MiB/s
		 * from its start): a page byte, which nothing after it overwrites. */
		if (r->fault == FX_CORRUPT_PAYLOAD)
			f->after = (page_conn ? (6u << 20) : (12u << 20)) + 2000;
		else if (r->fault == FX_CORRUPT && page_conn == 0 && r->phase == FX_ITERATE)
			/* The next round's first PART: well inside the round (its last bytes,
			 * the EOS and footer, may reach the proxy after the source switched). */
			PATTERN(f, ram_part, 6);
		else if (r->fault == FX_CORRUPT && page_conn == 0)
			PATTERN(f, eos_footer, sizeof(eos_footer) - 1);
		else if (r->fault == FX_CORRUPT)
			PATTERN(f, lane_magic, 0);
		break;
	case FX_DEVICE:
		f->conn = 0;
		PATTERN(f, serial_idstr, 1);
		break;
	case FX_COMPLETION:
		f->conn = 0;
		f->down = true;
		/* Corrupt: the verdict itself becomes "failed". */
		PATTERN(f, shut_ok, sizeof(shut_ok) - 1);
		break;
	}
}

/* The fault struck in the phase the row names (from the source's point of view). */
static void check_phase(const struct fx_run *run)
{
	const struct fx_row *r = run->row;
	int st = atomic_load(&run->strike_status);
	uint64_t rounds = atomic_load(&run->strike_rounds);

	if (!atomic_load(&run->px.fault_done)) {
		struct ferry_stats s, d;

		ferry_engine_get_stats(run->src->eng, &s);
		ferry_engine_get_stats(run->dst->eng, &d);
		cr_assert_fail(ROW_FMT "the fault never struck (source %s: %s; destination %s: %s)",
			       ROW_ARGS(r), ferry_status_name(s.status), s.error_msg,
			       ferry_status_name(d.status), d.error_msg);
	}
	switch (r->phase) {
	case FX_SETUP:
		/* The source is "active" once its setup records are queued, before they
		 * leave: the setup phase on the wire is the header and what follows. */
		cr_assert(rounds == 0 && run->px.fault_offset < 64,
			  ROW_FMT "struck at byte %lu after %lu rounds", ROW_ARGS(r),
			  (unsigned long)run->px.fault_offset, (unsigned long)rounds);
		break;
	case FX_BULK:
		cr_assert(st == FERRY_STATUS_ACTIVE && rounds == 0,
			  ROW_FMT "struck in status %s after %lu rounds", ROW_ARGS(r),
			  ferry_status_name(st), (unsigned long)rounds);
		break;
	case FX_ITERATE:
		/*
		 * The proxy reads the bytes a little after the source wrote them, so
		 * the status it sees may already be the next one; a PART section's
		 * header (the tcp corrupted-byte row's pattern) is iterative by itself.
		 */
		if (r->fault == FX_CORRUPT && (r->transport == FX_TCP || r->transport == FX_RDMA)) {
			cr_assert(rounds >= 1, ROW_FMT "struck after %lu rounds", ROW_ARGS(r),
				  (unsigned long)rounds);
			break;
		}
		cr_assert(st == FERRY_STATUS_ACTIVE && rounds >= 1,
			  ROW_FMT "struck in status %s after %lu rounds", ROW_ARGS(r),
			  ferry_status_name(st), (unsigned long)rounds);
		break;
	default:
		cr_assert(st == FERRY_STATUS_DEVICE, ROW_FMT "struck in status %s", ROW_ARGS(r),
			  ferry_status_name(st));
		break;
	}
}

/* Both sides inside TLS with a pre-shared key written now (no certtool needed). */
static void use_tls(struct fx_side *src, struct fx_side *dst, char *psk, size_t len)
{
	struct ferry_tls_attr t = {0};

	ct_psk_file(psk, len);
	t.psk_file = psk;
	cr_assert_eq(ferry_engine_set_tls(src->eng, &t), 0);
	cr_assert_eq(ferry_engine_set_tls(dst->eng, &t), 0);
}

/* A port no one listens on at @ip now (for rdma_cm, whose RoCE port space is its own). */
static uint32_t free_port(const char *ip)
{
	struct sockaddr_in sa = {.sin_family = AF_INET};
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	cr_assert_geq(fd, 0);
	cr_assert_eq(inet_pton(AF_INET, ip, &sa.sin_addr), 1);
	cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	cr_assert_eq(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
	close(fd);
	return ntohs(sa.sin_port);
}

/*
 * FERRY_FAULT_ROWS=LIST (indexes into the test's table, "3" or "2,5,7"):
 * only those rows run, the others skip. For chasing one row, e.g. in the rig:
 * tests/rdma/run-in-rig.sh -e FERRY_FAULT_ROWS=4 -f 'engine_faults/rdma'.
 */
static void row_selected_or_skip(const struct fx_row *r, const struct fx_row *rows, size_t n)
{
	const char *list = getenv("FERRY_FAULT_ROWS");
	size_t i;

	if (!list || !*list)
		return;
	for (i = 0; i < n && memcmp(&rows[i], r, sizeof(*r)) != 0; i++)
		;
	for (const char *p = list; *p;) {
		char *end;
		unsigned long v = strtoul(p, &end, 10);

		if (end == p)
			break;
		if (v == i)
			return;
		p = *end == ',' ? end + 1 : end;
	}
	cr_skip_test("row %zu is not in FERRY_FAULT_ROWS=%s", i, list);
}

static void run_net_row(const struct fx_row *r)
{
	bool rdma = r->transport == FX_RDMA;
	uint64_t stall = r->fault != FX_STALL ? 0 : rdma ? RDMA_STALL_TIMEOUT : STALL_TIMEOUT;
	struct fx_side src, dst;
	struct fx_run *run;
	char uri[128], psk[64] = "";
	struct rt_env env = {.ip = "127.0.0.1"};
	uint32_t rdma_port = 0;
	uint64_t bad;

	if (rdma)
		rt_env_or_skip(&env);
	run = calloc(1, sizeof(*run));
	cr_assert_not_null(run);
	run->row = r;
	run->src = &src;
	run->dst = &dst;
	px_init(&run->px);
	run->px.on_strike = on_strike;
	run->px.strike_opaque = run;
	setup_fault(run);
	if (rdma)
		rdma_port = free_port(env.ip);
	/*
	 * Iterate rows: a 1 ms downtime limit and a guest dirtying 24 MiB/s keep
	 * the rounds going and long (tens of ms), so the round after the first
	 * sync is an iterative one however fast or slow this build runs.
	 */
	side_make(&src, true, guest_attr.vcpus, stall, is_multi(r->transport) ? 2 : 0,
		  r->phase == FX_ITERATE ? 1 : 0, r->phase == FX_ITERATE ? (24u << 20) : 0,
		  rdma_port);
	side_make(&dst, false, guest_attr.vcpus, stall, 0, 0, 0, rdma_port);
	if (is_tls(r->transport))
		use_tls(&src, &dst, psk, sizeof(psk));
	cr_assert_eq(ferry_engine_set_event_cb(src.eng, on_event, run), 0);
	snprintf(uri, sizeof(uri), "%s:%s:0", rdma ? "rdma" : "tcp", env.ip);
	cr_assert_eq(ferry_incoming(dst.eng, uri, NULL, NULL), 0);
	/* The proxy on the main stream only, on the device's address for rdma. */
	snprintf(run->px.dest_host, sizeof(run->px.dest_host), "%s", env.ip);
	px_start(&run->px, ferry_engine_listen_port(dst.eng));
	snprintf(uri, sizeof(uri), "%s:%s:%d", rdma ? "rdma" : "tcp", env.ip, run->px.port);
	cr_assert_eq(ferry_migrate(src.eng, uri, NULL, NULL), 0);
	ferry_engine_wait(src.eng);
	ferry_engine_wait(dst.eng);
	check_phase(run);
	if (rdma) {
		struct ferry_stats st;

		/* Never over TCP lanes; past setup, the pages went by RDMA. */
		status_of(&src, &st);
		cr_assert_str_neq(st.transport, "tcp-multi", ROW_FMT "fell back: %s", ROW_ARGS(r),
				  st.fallback_reason);
		if (r->phase != FX_SETUP)
			cr_assert_str_eq(st.transport, "rdma", ROW_FMT "transport '%s'",
					 ROW_ARGS(r), st.transport);
	}
	if (r->fault == FX_STALL && r->expect == FX_DEST_FAILS) {
		struct ferry_stats st;

		/* A stall is noticed as one (by either side), not at the row's deadline. */
		status_of(&src, &st);
		cr_assert(!strstr(st.error_msg, "migration timed out"),
			  ROW_FMT "the source gave up only at its deadline: %s", ROW_ARGS(r),
			  st.error_msg);
	}
	bad = check_dest(r, &src, &dst);
	check_source(r, &src, guest_attr.vcpus, NULL,
		     r->fault == FX_CORRUPT_PAYLOAD || r->expect == FX_PAYLOAD_GAP);
	if (r->expect == FX_PAYLOAD_GAP) {
		struct ferry_stats st;

		/*
		 * The known gap, pinned: a plaintext stream has no integrity check of
		 * page bytes (a live page may change between reading and sending, so
		 * a sender-side checksum cannot be had for free; TLS's record MAC is
		 * the answer). The destination either failed (the flip hit a record
		 * header) or completed with exactly that one page wrong.
		 */
		status_of(&dst, &st);
		cr_log_info(ROW_FMT "destination %s, %lu page(s) differ from the source "
				    "(no integrity check on a plaintext stream)",
			    ROW_ARGS(r), ferry_status_name(st.status), (unsigned long)bad);
		if (st.status == FERRY_STATUS_COMPLETED)
			cr_assert_eq(bad, 1, ROW_FMT "%lu pages differ", ROW_ARGS(r),
				     (unsigned long)bad);
	}
	px_stop(&run->px);
	side_free(&src);
	side_free(&dst);
	if (psk[0])
		unlink(psk);
	free(run);
}

static void init(void)
{
	if (getenv("FERRY_TEST_LOG"))
		ferry_set_log(ferry_log_stderr, NULL, FERRY_LOG_DEBUG);
}

TestSuite(engine_faults, .init = init, .timeout = 60);

ParameterizedTestParameters(engine_faults, network)
{
	return cr_make_param_array(struct fx_row, net_rows, sizeof(net_rows) / sizeof(net_rows[0]));
}

ParameterizedTest(struct fx_row *r, engine_faults, network)
{
	row_selected_or_skip(r, net_rows, sizeof(net_rows) / sizeof(net_rows[0]));
	run_net_row(r);
}

ParameterizedTestParameters(engine_faults, rdma)
{
	return cr_make_param_array(struct fx_row, rdma_rows,
				   sizeof(rdma_rows) / sizeof(rdma_rows[0]));
}

/* Where there is an RDMA device; each row's migration has a 60 s deadline there. */
ParameterizedTest(struct fx_row *r, engine_faults, rdma, .timeout = 150)
{
	row_selected_or_skip(r, rdma_rows, sizeof(rdma_rows) / sizeof(rdma_rows[0]));
	run_net_row(r);
}

/* ---- file: with a full disk ------------------------------------------------------------------ */

/* The size of the whole stream, and where the first device section's name is in it. */
static void reference_file(const char *path, uint64_t *size, uint64_t *device_at)
{
	struct fx_side src;
	char uri[128];
	struct stat sb;
	uint8_t *buf;
	FILE *f;

	side_make(&src, true, 0, 0, 0, 0, 0, 0);
	snprintf(uri, sizeof(uri), "file:%s", path);
	cr_assert_eq(ferry_migrate_sync(src.eng, uri), FERRY_STATUS_COMPLETED);
	side_free(&src);
	cr_assert_eq(stat(path, &sb), 0);
	*size = (uint64_t)sb.st_size;
	buf = malloc(*size);
	f = fopen(path, "rb");
	cr_assert(buf && f && fread(buf, 1, *size, f) == *size);
	fclose(f);
	{
		const uint8_t *p = memmem(buf, *size, serial_idstr, sizeof(serial_idstr));
		size_t at = p ? (size_t)(p - buf) : 0;

		free(buf);
		cr_assert_not_null(p, "no device section in the stream");
		*device_at = at;
	}
	unlink(path);
}

ParameterizedTestParameters(engine_faults, file_disk_full)
{
	return cr_make_param_array(struct fx_row, file_rows,
				   sizeof(file_rows) / sizeof(file_rows[0]));
}

/*
 * The file system fills at a byte that falls in the row's phase (RLIMIT_FSIZE
 * stands in for a full disk: the write fails with EFBIG instead of ENOSPC,
 * on the same path). An idle source, so the stream is the same each time
 * and its RAM can be compared with a copy; a file: stream has no iterative
 * rounds to speak of and no return path, so those phases have no row.
 */
ParameterizedTest(struct fx_row *r, engine_faults, file_disk_full)
{
	struct fx_side src, dst;
	char path[64], uri[96];
	struct rlimit old, lim;
	uint64_t size, device_at, limit = 0, len;
	uint8_t *control;

	snprintf(path, sizeof(path), "/tmp/ferry-faults-%d.qevm", getpid());
	snprintf(uri, sizeof(uri), "file:%s", path);
	reference_file(path, &size, &device_at);
	switch (r->phase) {
	case FX_SETUP:
		limit = 20;
		break;
	case FX_BULK:
		limit = RAM_BYTES / 2;
		break;
	case FX_DEVICE:
		limit = device_at + 3;
		break;
	default:
		limit = size - 1;
		break;
	}
	side_make(&src, true, 0, 0, 0, 0, 0, 0);
	control = malloc(RAM_BYTES);
	cr_assert_not_null(control);
	memcpy(control, bench_guest_ram(src.guest, &len), RAM_BYTES);
	signal(SIGXFSZ, SIG_IGN);
	cr_assert_eq(getrlimit(RLIMIT_FSIZE, &old), 0);
	lim = old;
	lim.rlim_cur = limit;
	cr_assert_eq(setrlimit(RLIMIT_FSIZE, &lim), 0);
	ferry_migrate_sync(src.eng, uri);
	cr_assert_eq(setrlimit(RLIMIT_FSIZE, &old), 0);
	check_source(r, &src, 0, control, false);
	{
		struct ferry_stats st;

		status_of(&src, &st);
		cr_assert(strstr(st.error_msg, "large") || strstr(st.error_msg, "space") ||
			      st.error == -EFBIG || st.error == -ENOSPC,
			  ROW_FMT "source error: %s", ROW_ARGS(r), st.error_msg);
	}
	/* What did reach the disk must not load as a complete guest. */
	side_make(&dst, false, 0, 0, 0, 0, 0, 0);
	ferry_incoming_sync(dst.eng, uri);
	check_dest(r, &src, &dst);
	unlink(path);
	free(control);
	side_free(&src);
	side_free(&dst);
}

/* ---- limits -------------------------------------------------------------------------------- */

/*
 * With no migration deadline at all, a peer that stops sending without
 * closing is still given up on: the stall timeout fails both sides, with a
 * message that says so, and the source's guest runs on.
 */
Test(engine_faults, stall_without_a_deadline_hits_the_stall_timeout)
{
	static const struct fx_row row = {FX_TCP, FX_BULK, FX_STALL, FX_DEST_FAILS};
	struct ferry_params sp = {.max_bandwidth = 64u << 20, .stall_timeout_ms = 500};
	struct ferry_params dp = {.stall_timeout_ms = 500};
	struct fx_side src, dst;
	struct fx_run *run = calloc(1, sizeof(*run));
	struct ferry_stats st;
	char uri[64];

	cr_assert_not_null(run);
	run->row = &row;
	px_init(&run->px);
	setup_fault(run);
	side_make(&src, true, guest_attr.vcpus, 0, 0, 0, 0, 0);
	side_make(&dst, false, guest_attr.vcpus, 0, 0, 0, 0, 0);
	cr_assert_eq(ferry_engine_set_params(src.eng, &sp), 0);
	cr_assert_eq(ferry_engine_set_params(dst.eng, &dp), 0);
	cr_assert_eq(ferry_engine_set_event_cb(src.eng, on_event, run), 0);
	cr_assert_eq(ferry_incoming(dst.eng, "tcp:127.0.0.1:0", NULL, NULL), 0);
	px_start(&run->px, ferry_engine_listen_port(dst.eng));
	snprintf(uri, sizeof(uri), "tcp:127.0.0.1:%d", run->px.port);
	cr_assert_eq(ferry_migrate(src.eng, uri, NULL, NULL), 0);
	ferry_engine_wait(src.eng);
	ferry_engine_wait(dst.eng);
	cr_assert(atomic_load(&run->px.fault_done), "the stall never began");
	for (int i = 0; i < 2; i++) {
		status_of(i ? &dst : &src, &st);
		cr_assert_eq(st.status, FERRY_STATUS_FAILED, "%s: %s", i ? "destination" : "source",
			     ferry_status_name(st.status));
		cr_assert_eq(st.error, FERRY_ETIMEDOUT, "%s: %s", i ? "destination" : "source",
			     st.error_msg);
		cr_assert(strstr(st.error_msg, "stalled"), "%s", st.error_msg);
		/* Half a second of silence, give or take the 50 ms watchdog step and setup. */
		cr_assert_lt(st.total_ms, 5000, "%lu ms", (unsigned long)st.total_ms);
	}
	check_dest(&row, &src, &dst);
	check_source(&row, &src, guest_attr.vcpus, NULL, false);
	px_stop(&run->px);
	side_free(&src);
	side_free(&dst);
	free(run);
}
