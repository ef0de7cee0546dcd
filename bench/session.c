/* SPDX-License-Identifier: MIT */
/*
 * The drivers of `ferry bench`: the matrix in one process (local), as the
 * source against a `--server` (peer), and the server itself. A progress line
 * on stderr; SIGINT cancels the running migration, and what finished is kept:
 * each run's JSON line and CSV row are flushed as soon as it ends, and the
 * report and plots are written from them.
 */
#include <errno.h>
#include <jansson.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include <ferry/engine.h>
#include <ferry/error.h>
#include <ferry/rdma.h>

#include "ctrl.h"
#include "harness.h"

static volatile int g_stop;

static void on_sigint(int sig)
{
	(void)sig;
	g_stop = 1;
}

static void install_sigint(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_sigint; /* no SA_RESTART: blocking calls return EINTR */
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
}

/* The TLS credentials every migration uses, or NULL for plaintext. */
static const struct ferry_tls_attr *tls_of(const struct bench_options *o)
{
	return o->tls.x509_dir || o->tls.psk_file ? &o->tls : NULL;
}

static double mib(double b)
{
	return b / 1048576.0;
}

/* ---- output ------------------------------------------------------------------- */

struct out {
	const char *dir;
	FILE *jsonl, *csv;
	struct bench_result *res;
	size_t n, cap;
	struct bench_session ses;
};

static int out_open(struct out *o, const char *dir, const char *command, const char *mode,
		    const char *peer)
{
	char path[4096];
	struct utsname u;
	double la[1] = {0};
	time_t t = time(NULL);

	memset(o, 0, sizeof(*o));
	o->dir = dir;
	if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
		fprintf(stderr, "ferry bench: %s: %s\n", dir, strerror(errno));
		return -1;
	}
	snprintf(path, sizeof(path), "%s/results.jsonl", dir);
	o->jsonl = fopen(path, "w");
	snprintf(path, sizeof(path), "%s/results.csv", dir);
	o->csv = fopen(path, "w");
	if (!o->jsonl || !o->csv) {
		fprintf(stderr, "ferry bench: cannot write in %s: %s\n", dir, strerror(errno));
		return -1;
	}
	bench_csv_header(o->csv);
	fflush(o->csv);
	snprintf(o->ses.command, sizeof(o->ses.command), "%s", command);
	snprintf(o->ses.mode, sizeof(o->ses.mode), "%s", mode);
	snprintf(o->ses.peer, sizeof(o->ses.peer), "%s", peer ? peer : "");
	if (uname(&u) == 0) {
		snprintf(o->ses.host, sizeof(o->ses.host), "%.40s %.20s", u.nodename, u.machine);
		snprintf(o->ses.kernel, sizeof(o->ses.kernel), "%.60s", u.release);
	}
	o->ses.cpus = (int)sysconf(_SC_NPROCESSORS_ONLN);
	if (getloadavg(la, 1) == 1)
		o->ses.loadavg_start = la[0];
	strftime(o->ses.started, sizeof(o->ses.started), "%Y-%m-%dT%H:%M:%SZ", gmtime(&t));
	return 0;
}

static void out_session(struct out *o)
{
	json_t *j = bench_session_json(&o->ses);

	json_dumpf(j, o->jsonl, JSON_COMPACT);
	fputc('\n', o->jsonl);
	fflush(o->jsonl);
	json_decref(j);
}

static void out_result(struct out *o, const struct bench_result *r)
{
	json_t *j = bench_result_json(r);

	json_dumpf(j, o->jsonl, JSON_COMPACT);
	fputc('\n', o->jsonl);
	fflush(o->jsonl);
	json_decref(j);
	bench_csv_row(o->csv, r);
	fflush(o->csv);
	if (o->n == o->cap) {
		size_t cap = o->cap ? o->cap * 2 : 16;
		struct bench_result *p = realloc(o->res, cap * sizeof(*p));

		if (!p)
			return;
		o->res = p;
		o->cap = cap;
	}
	o->res[o->n++] = *r;
}

/* The report and the plots, from what finished. */
static void out_close(struct out *o, bool quiet)
{
	const char *plots[3] = {NULL};
	char path[4096];
	double la[1] = {0};
	int np;
	FILE *md;

	if (getloadavg(la, 1) == 1)
		o->ses.loadavg_end = la[0];
	o->ses.interrupted = g_stop != 0;
	np = bench_plots_write(o->dir, &o->ses, o->res, o->n, plots, 3);
	if (np == -ENOENT) {
		np = 0;
		if (!quiet)
			fprintf(stderr,
				"ferry bench: gnuplot not found, plots skipped (data and "
				"scripts are in %s; apt-get install gnuplot-nox)\n",
				o->dir);
	}
	snprintf(path, sizeof(path), "%s/report.md", o->dir);
	md = fopen(path, "w");
	if (md) {
		bench_report_markdown(md, &o->ses, o->res, o->n, plots, (size_t)np);
		fclose(md);
	}
	if (o->jsonl)
		fclose(o->jsonl);
	if (o->csv)
		fclose(o->csv);
	if (!quiet)
		fprintf(stderr,
			"ferry bench: %zu runs; results in %s/results.{jsonl,csv}, report "
			"%s/report.md, %d plot%s\n",
			o->n, o->dir, o->dir, np, np == 1 ? "" : "s");
	free(o->res);
}

/* ---- progress ----------------------------------------------------------------- */

struct progress {
	bool on, tty;
	size_t run, runs;
	char label[128];
	uint32_t rep, reps;
};

static void progress_cb(void *opaque, const struct ferry_stats *st)
{
	struct progress *p = opaque;

	if (!p->on || !p->tty)
		return;
	fprintf(stderr,
		"\r\033[K[%zu/%zu] %s rep %u/%u: %s round %llu, sent %.0f MiB, remaining %.0f "
		"MiB, %.0f MiB/s",
		p->run, p->runs, p->label, p->rep + 1, p->reps, ferry_status_name(st->status),
		(unsigned long long)st->rounds, mib((double)st->transferred),
		mib((double)st->remaining), mib((double)st->throughput));
}

/* Before a run: building the guests takes a while for large RAM. */
static void progress_start(struct progress *p)
{
	if (p->on && p->tty)
		fprintf(stderr, "\r\033[K[%zu/%zu] %s rep %u/%u: building the guests", p->run,
			p->runs, p->label, p->rep + 1, p->reps);
}

static void progress_done(struct progress *p, const struct bench_result *r)
{
	if (!p->on)
		return;
	fprintf(stderr,
		"%s[%zu/%zu] %s rep %u/%u: %s%s, %.2f Gbit/s (%.2f of ceiling), total "
		"%.0f ms, downtime %.0f ms, %llu rounds\n",
		p->tty ? "\r\033[K" : "", p->run, p->runs, p->label, p->rep + 1, p->reps, r->status,
		r->verified ? ", verified" : ", NOT verified", r->throughput * 8 / 1e9, r->ratio,
		r->total_ms, r->downtime_ms, (unsigned long long)r->rounds);
	if (!r->verified && r->verify_error[0])
		fprintf(stderr, "    %s\n", r->verify_error);
}

/* ---- the ceilings ------------------------------------------------------------- */

static uint32_t streams_of(uint32_t channels)
{
	return channels ? channels : 1;
}

/* Every (transport, streams) pair of the matrix, once. */
static void plan_ceilings(const struct bench_spec *sp, struct bench_session *ses)
{
	ses->n_ceilings = 0;
	for (uint32_t t = 0; t < sp->transport.n; t++)
		for (uint32_t c = 0; c < sp->channels.n; c++) {
			uint32_t s = streams_of((uint32_t)sp->channels.v[c]);

			if (bench_session_ceiling(ses, (enum bench_transport)sp->transport.v[t],
						  s) ||
			    ses->n_ceilings == sizeof(ses->ceilings) / sizeof(ses->ceilings[0]))
				continue;
			ses->ceilings[ses->n_ceilings++] = (struct bench_ceiling){
			    .transport = (enum bench_transport)sp->transport.v[t],
			    .streams = s,
			    .msg_size = sp->msg_size,
			};
		}
}

static void apply_ceiling(const struct bench_session *ses, struct bench_result *r)
{
	const struct bench_ceiling *c =
	    bench_session_ceiling(ses, r->sc.transport, streams_of(r->sc.channels));

	if (c && c->bytes_per_s > 0) {
		r->ceiling = c->bytes_per_s;
		r->ratio = r->throughput / c->bytes_per_s;
	}
}

static void say_ceiling(const struct bench_options *o, const struct bench_ceiling *c, int ret)
{
	if (o->quiet)
		return;
	if (ret)
		fprintf(stderr, "ferry bench: ceiling %s x%u failed: %s\n",
			bench_transport_name(c->transport), c->streams, ferry_strerror(ret));
	else
		fprintf(stderr,
			"ferry bench: ceiling %s x%u (%s, %llu KiB messages): %.2f Gbit/s\n",
			bench_transport_name(c->transport), c->streams, c->method,
			(unsigned long long)(c->msg_size >> 10), c->bytes_per_s * 8 / 1e9);
}

static int finish_status(const struct out *o)
{
	for (size_t i = 0; i < o->n; i++)
		if (!o->res[i].verified)
			return 1;
	return g_stop ? 130 : 0;
}

/* ---- local -------------------------------------------------------------------- */

int bench_run_local(const struct bench_options *o)
{
	const struct bench_spec *sp = &o->spec;
	struct bench_scenario *sc = NULL;
	struct progress pr = {.on = !o->quiet, .tty = isatty(STDERR_FILENO) == 1};
	struct out out;
	int status;
	int n = bench_matrix_expand(sp, &sc);

	if (n < 0) {
		fprintf(stderr, "ferry bench: the matrix: %s\n", strerror(-n));
		return 2;
	}
	if (out_open(&out, o->out_dir, o->command, "local", NULL) < 0) {
		free(sc);
		return 1;
	}
	install_sigint();
	if (!o->quiet)
		fprintf(stderr, "ferry bench: %d scenarios x %u reps, results in %s\n", n, sp->reps,
			o->out_dir);
	out.ses.memcpy_bytes_per_s = bench_memcpy_bandwidth();
	plan_ceilings(sp, &out.ses);
	for (uint32_t i = 0; i < out.ses.n_ceilings && !g_stop; i++) {
		struct bench_ceiling *c = &out.ses.ceilings[i], again = *c;
		int ret = bench_ceiling_local(c, sp->ceiling_ms, o->out_dir, &g_stop);

		/* Best of two passes: the first also warms caches (and, in an emulated guest, TCG).
		 */
		if (!ret && !g_stop &&
		    !bench_ceiling_local(&again, sp->ceiling_ms, o->out_dir, &g_stop) &&
		    again.bytes_per_s > c->bytes_per_s)
			*c = again;
		say_ceiling(o, c, ret);
	}
	out_session(&out);
	pr.runs = (size_t)n * sp->reps;
	pr.reps = sp->reps;
	for (int i = 0; i < n && !g_stop; i++) {
		for (uint32_t rep = 0; rep < sp->reps && !g_stop; rep++) {
			struct bench_result r;
			struct bench_dest *d = NULL;
			struct bench_dest_result dr;
			char listen[256], uri[256], host[64] = "127.0.0.1";
			int port = 0, ret;

			/* RDMA over loopback needs the device's own address. */
			if (sc[i].transport == BENCH_TR_RDMA &&
			    bench_rdma_local_addr(host, sizeof(host)) < 0)
				snprintf(host, sizeof(host), "127.0.0.1");

			memset(&r, 0, sizeof(r));
			r.rep = rep;
			r.registration_ms = r.registration_dst_ms = -1;
			pr.run++;
			pr.rep = rep;
			bench_scenario_label(&sc[i], pr.label, sizeof(pr.label));
			progress_start(&pr);
			if (sc[i].transport == BENCH_TR_UNIX)
				snprintf(listen, sizeof(listen), "unix:%s/migration.sock",
					 o->out_dir);
			else
				snprintf(listen, sizeof(listen), "%s:%s:0",
					 bench_transport_name(sc[i].transport), host);
			ret = bench_dest_start(&sc[i], sp->seed, sp->timeout_ms, listen, tls_of(o),
					       &d, &port);
			if (ret < 0) {
				r.sc = sc[i];
				snprintf(r.status, sizeof(r.status), "failed");
				snprintf(r.verify_error, sizeof(r.verify_error), "destination: %s",
					 ferry_strerror(ret));
				out_result(&out, &r);
				progress_done(&pr, &r);
				continue;
			}
			if (sc[i].transport == BENCH_TR_UNIX)
				snprintf(uri, sizeof(uri), "%s", listen);
			else
				snprintf(uri, sizeof(uri), "%s:%s:%d",
					 bench_transport_name(sc[i].transport), host, port);
			ret = bench_source_run(&sc[i], sp->seed, sp->timeout_ms, uri, tls_of(o),
					       &g_stop, progress_cb, &pr, &r);
			if (ret)
				bench_dest_cancel(d);
			bench_dest_finish(d, &dr);
			r.verified = ret == 0 && dr.verified;
			if (ret == 0 && !dr.verified)
				snprintf(r.verify_error, sizeof(r.verify_error), "%s",
					 dr.verify_error);
			r.cpu_dst_s = dr.cpu_s;
			r.memcpy_dst = dr.memcpy_bytes;
			r.registration_dst_ms = dr.registration_ms;
			apply_ceiling(&out.ses, &r);
			/* A run cut short by Ctrl-C is not a result. */
			if (g_stop && ret)
				break;
			out_result(&out, &r);
			progress_done(&pr, &r);
		}
	}
	if (g_stop && !o->quiet)
		fprintf(stderr, "\nferry bench: interrupted; keeping the %zu runs that finished\n",
			out.n);
	status = finish_status(&out); /* before out_close() frees the results */
	out_close(&out, o->quiet);
	free(sc);
	return status;
}

/* ---- peer (the source) -------------------------------------------------------- */

static int tcp_connect(const char *host, const char *port)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai, *a;
	int fd = -1;

	if (getaddrinfo(host, port, &hints, &ai) != 0)
		return -EHOSTUNREACH;
	for (a = ai; a; a = a->ai_next) {
		fd = socket(a->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd >= 0 && connect(fd, a->ai_addr, a->ai_addrlen) == 0)
			break;
		if (fd >= 0)
			close(fd);
		fd = -errno;
	}
	freeaddrinfo(ai);
	return fd;
}

/* "HOST", "HOST:PORT", "[V6]:PORT" into host and port strings. */
static int split_host(const char *s, char *host, size_t hl, char *port, size_t pl)
{
	const char *colon;

	if (s[0] == '[') {
		const char *end = strchr(s, ']');

		if (!end || (size_t)(end - s - 1) >= hl)
			return -EINVAL;
		snprintf(host, hl, "%.*s", (int)(end - s - 1), s + 1);
		snprintf(port, pl, "%s", end[1] == ':' ? end + 2 : "4480");
		return 0;
	}
	colon = strrchr(s, ':');
	if (colon && strchr(s, ':') == colon) {
		if ((size_t)(colon - s) >= hl)
			return -EINVAL;
		snprintf(host, hl, "%.*s", (int)(colon - s), s);
		snprintf(port, pl, "%s", colon + 1);
	} else {
		snprintf(host, hl, "%s", s);
		snprintf(port, pl, "%d", BENCH_CTRL_PORT);
	}
	return 0;
}

static int expect(int fd, struct bench_msg *m, uint16_t type, int timeout_ms)
{
	int ret = bench_msg_recv(fd, m, timeout_ms);

	if (ret)
		return ret;
	if (m->type == BENCH_MSG_ERROR) {
		fprintf(stderr, "ferry bench: the server says: %s\n", m->u.error.msg);
		return m->u.error.code < 0 ? m->u.error.code : -EPROTO;
	}
	return m->type == type ? 0 : FERRY_EBADSTREAM;
}

/*
 * The RDMA ceiling across hosts: the server makes an RDMA WRITE target, this
 * side writes to it for the ceiling time and measures. Returns 0 with
 * c->bytes_per_s set, or -1 with *err set when it could not be measured (no
 * device on either side, a failure): the caller falls back to TCP streams.
 * Only a broken control connection is fatal, and it shows in the next message.
 */
static int peer_rdma_ceiling(int fd, const char *host, struct bench_ceiling *c,
			     const struct bench_spec *sp, int *err)
{
	struct bench_msg m = {.type = BENCH_MSG_CEIL};
	double bps = 0;
	int ret, sret;

	if (ferry_rdma_devices(NULL, 0) < 1) {
		*err = FERRY_ENORDMA;
		return -1;
	}
	m.u.ceil.transport = BENCH_TR_RDMA;
	m.u.ceil.streams = c->streams;
	m.u.ceil.msg_size = c->msg_size;
	m.u.ceil.ms = sp->ceiling_ms;
	ret = bench_msg_send(fd, &m);
	if (!ret)
		ret = expect(fd, &m, BENCH_MSG_READY, 10000);
	if (ret) {
		*err = ret;
		return -1;
	}
	sret = bench_rdma_send(host, (int)m.u.ready.port, c->streams, c->msg_size, sp->ceiling_ms,
			       &g_stop, &bps);
	/* The server answers once every lane flushed, or with the reason it gave up. */
	ret = expect(fd, &m, BENCH_MSG_CEIL_RESULT, (int)sp->ceiling_ms + 60000);
	if (sret || ret || bps <= 0) {
		*err = sret ? sret : ret;
		return -1;
	}
	c->bytes_per_s = bps;
	snprintf(c->method, sizeof(c->method), "rdma write to the server");
	return 0;
}

/* One ceiling measurement against the server; only a control-connection failure is returned. */
static int peer_ceiling(int fd, const char *host, struct bench_ceiling *c,
			const struct bench_spec *sp)
{
	struct bench_msg m;
	char uri[300];
	int ret = 0;

	if (c->transport == BENCH_TR_RDMA && peer_rdma_ceiling(fd, host, c, sp, &ret) == 0)
		return 0;
	if (c->transport == BENCH_TR_RDMA)
		snprintf(c->method, sizeof(c->method), "tcp streams to the server (no rdma: %s)",
			 ret == FERRY_ENORDMA ? "no device" : "failed");
	else
		snprintf(c->method, sizeof(c->method), "tcp streams to the server");
	m = (struct bench_msg){.type = BENCH_MSG_CEIL};
	m.u.ceil.transport = BENCH_TR_TCP;
	m.u.ceil.streams = c->streams;
	m.u.ceil.msg_size = c->msg_size;
	m.u.ceil.ms = sp->ceiling_ms;
	ret = bench_msg_send(fd, &m);
	if (!ret)
		ret = expect(fd, &m, BENCH_MSG_READY, 10000);
	if (!ret) {
		snprintf(uri, sizeof(uri), strchr(host, ':') ? "tcp:[%s]:%u" : "tcp:%s:%u", host,
			 m.u.ready.port);
		ret = bench_stream_send(uri, c->streams, c->msg_size, sp->ceiling_ms, &g_stop);
	}
	if (!ret)
		ret = expect(fd, &m, BENCH_MSG_CEIL_RESULT, 30000);
	if (!ret && m.u.ceil_result.ns)
		c->bytes_per_s = (double)m.u.ceil_result.bytes * 1e9 / (double)m.u.ceil_result.ns;
	return ret;
}

int bench_run_peer(const struct bench_options *o)
{
	const struct bench_spec *sp = &o->spec;
	struct bench_scenario *sc = NULL;
	struct progress pr = {.on = !o->quiet, .tty = isatty(STDERR_FILENO) == 1};
	struct bench_msg m;
	struct out out;
	int status;
	char host[256], port[16];
	uint64_t max_ram;
	int n, fd = -ECONNREFUSED, ret;

	if (split_host(o->peer, host, sizeof(host), port, sizeof(port)) < 0) {
		fprintf(stderr, "ferry bench: bad --peer '%s'\n", o->peer);
		return 2;
	}
	for (uint32_t t = 0; t < sp->transport.n; t++)
		if (sp->transport.v[t] == BENCH_TR_UNIX) {
			fprintf(stderr, "ferry bench: --peer: unix sockets do not cross hosts\n");
			return 2;
		}
	n = bench_matrix_expand(sp, &sc);
	if (n < 0) {
		fprintf(stderr, "ferry bench: the matrix: %s\n", strerror(-n));
		return 2;
	}
	install_sigint();
	/* The server may be starting at the same moment (two guests, two namespaces): retry. */
	for (int i = 0; i < 300 && !g_stop; i++) {
		struct timespec ts = {0, 100 * 1000 * 1000};

		fd = tcp_connect(host, port);
		if (fd != -ECONNREFUSED && fd != -ENETUNREACH && fd != -EHOSTUNREACH)
			break;
		nanosleep(&ts, NULL);
	}
	if (fd < 0) {
		fprintf(stderr, "ferry bench: cannot reach the server at %s port %s: %s\n", host,
			port, strerror(-fd));
		free(sc);
		return 1;
	}
	m = (struct bench_msg){.type = BENCH_MSG_HELLO};
	ret = bench_msg_send(fd, &m);
	if (!ret)
		ret = expect(fd, &m, BENCH_MSG_HELLO, 10000);
	if (ret) {
		fprintf(stderr, "ferry bench: no greeting from the server: %s\n",
			ferry_strerror(ret));
		goto fail;
	}
	max_ram = m.u.hello.max_ram;
	for (int i = 0; i < n; i++)
		if (sc[i].ram_bytes > max_ram) {
			fprintf(stderr, "ferry bench: the server accepts guests up to %llu MiB\n",
				(unsigned long long)(max_ram >> 20));
			ret = -EINVAL;
			goto fail;
		}
	if (out_open(&out, o->out_dir, o->command, "peer", o->peer) < 0)
		goto fail;
	out.ses.memcpy_bytes_per_s = bench_memcpy_bandwidth();
	plan_ceilings(sp, &out.ses);
	for (uint32_t i = 0; i < out.ses.n_ceilings && !g_stop; i++) {
		struct bench_ceiling *c = &out.ses.ceilings[i], again = *c;

		/* Best of two passes, as in local mode. */
		ret = peer_ceiling(fd, host, c, sp);
		if (!ret && !g_stop)
			ret = peer_ceiling(fd, host, &again, sp);
		if (!ret && again.bytes_per_s > c->bytes_per_s)
			*c = again;
		say_ceiling(o, c, ret);
		if (ret)
			goto done;
	}
	out_session(&out);
	pr.runs = (size_t)n * sp->reps;
	pr.reps = sp->reps;
	for (int i = 0; i < n && !g_stop; i++) {
		for (uint32_t rep = 0; rep < sp->reps && !g_stop; rep++) {
			struct bench_result r;
			char uri[300];
			int sret;

			memset(&r, 0, sizeof(r));
			r.rep = rep;
			r.registration_ms = r.registration_dst_ms = -1;
			pr.run++;
			pr.rep = rep;
			bench_scenario_label(&sc[i], pr.label, sizeof(pr.label));
			progress_start(&pr);
			m = (struct bench_msg){.type = BENCH_MSG_RUN};
			m.u.run.sc = sc[i];
			m.u.run.rep = rep;
			m.u.run.seed = sp->seed;
			m.u.run.timeout_ms = sp->timeout_ms;
			ret = bench_msg_send(fd, &m);
			if (!ret)
				ret = expect(fd, &m, BENCH_MSG_READY, 120000);
			if (ret)
				goto done;
			snprintf(uri, sizeof(uri), strchr(host, ':') ? "%s:[%s]:%u" : "%s:%s:%u",
				 bench_transport_name(sc[i].transport), host, m.u.ready.port);
			sret = bench_source_run(&sc[i], sp->seed, sp->timeout_ms, uri, tls_of(o),
						&g_stop, progress_cb, &pr, &r);
			ret = expect(fd, &m, BENCH_MSG_RESULT, (int)sp->timeout_ms + 60000);
			if (ret)
				goto done;
			r.verified = sret == 0 && m.u.result.verified;
			if (sret == 0 && !m.u.result.verified) {
				snprintf(r.verify_error, sizeof(r.verify_error), "destination: %s",
					 m.u.result.verify_error);
			} else if (sret != 0 && m.u.result.verify_error[0]) {
				/* The source's reason, then the destination's (often the real one).
				 */
				size_t l = strlen(r.verify_error);

				snprintf(r.verify_error + l, sizeof(r.verify_error) - l,
					 "; destination: %s", m.u.result.verify_error);
			}
			r.cpu_dst_s = (double)m.u.result.cpu_us / 1e6;
			r.memcpy_dst = m.u.result.memcpy_bytes;
			r.registration_dst_ms = m.u.result.registration_us == UINT64_MAX
						    ? -1
						    : (double)m.u.result.registration_us / 1e3;
			apply_ceiling(&out.ses, &r);
			if (g_stop && sret)
				break;
			out_result(&out, &r);
			progress_done(&pr, &r);
		}
	}
	m = (struct bench_msg){.type = BENCH_MSG_BYE};
	bench_msg_send(fd, &m);
	ret = 0;
done:
	if (ret && !o->quiet)
		fprintf(stderr, "ferry bench: the control connection failed: %s\n",
			ferry_strerror(ret));
	if (g_stop && !o->quiet)
		fprintf(stderr, "\nferry bench: interrupted; keeping the %zu runs that finished\n",
			out.n);
	status = finish_status(&out); /* before out_close() frees the results */
	out_close(&out, o->quiet);
	close(fd);
	free(sc);
	return ret ? 1 : status;
fail:
	close(fd);
	free(sc);
	return 1;
}

/* ---- server (the destination) ------------------------------------------------- */

/* Copy @src cut to @len - 1 bytes, anything but printable ASCII as '?' (the wire's rule). */
static void printable(char *dst, size_t len, const char *src)
{
	size_t i = 0;

	for (; i + 1 < len && src[i]; i++)
		dst[i] = src[i] >= 0x20 && src[i] <= 0x7e ? src[i] : '?';
	dst[i] = 0;
}

static void send_error(int fd, int code, const char *msg)
{
	struct bench_msg m = {.type = BENCH_MSG_ERROR};

	m.u.error.code = code;
	printable(m.u.error.msg, sizeof(m.u.error.msg), msg);
	bench_msg_send(fd, &m);
}

/* Is @fd closed by the peer (or unreadable)? Data on it would be a protocol error too. */
static bool peer_gone(int fd)
{
	struct pollfd pf = {fd, POLLIN, 0};

	return poll(&pf, 1, 0) == 1;
}

static int serve_run(int fd, const struct bench_options *o, const struct bench_msg *req,
		     const char *addr)
{
	const struct bench_scenario *sc = &req->u.run.sc;
	struct bench_msg m = {.type = BENCH_MSG_READY};
	struct bench_dest *d;
	struct bench_dest_result dr;
	struct timespec t0, t;
	char uri[300], label[128];
	int port = 0, ret;

	if (sc->ram_bytes > o->max_ram || sc->transport == BENCH_TR_UNIX) {
		send_error(fd, -EINVAL,
			   sc->transport == BENCH_TR_UNIX ? "unix transport across hosts"
							  : "guest larger than --max-ram");
		return -EINVAL;
	}
	snprintf(uri, sizeof(uri), strchr(addr, ':') ? "%s:[%s]:0" : "%s:%s:0",
		 bench_transport_name(sc->transport), addr);
	ret =
	    bench_dest_start(sc, req->u.run.seed, req->u.run.timeout_ms, uri, tls_of(o), &d, &port);
	if (ret) {
		send_error(fd, ret, ferry_strerror(ret));
		return ret;
	}
	m.u.ready.port = (uint32_t)port;
	ret = bench_msg_send(fd, &m);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	/* Wait for the migration; give up if the peer leaves or the time is up. */
	for (;;) {
		struct ferry_stats st;
		struct pollfd pf = {fd, POLLIN, 0};

		bench_dest_stats(d, &st);
		if (st.status >= FERRY_STATUS_COMPLETED && st.status != FERRY_STATUS_CANCELLING)
			break;
		clock_gettime(CLOCK_MONOTONIC, &t);
		if (ret || g_stop || peer_gone(fd) ||
		    (double)(t.tv_sec - t0.tv_sec) * 1e3 > (double)req->u.run.timeout_ms + 30000) {
			bench_dest_cancel(d);
			break;
		}
		poll(&pf, 1, 200);
	}
	bench_dest_finish(d, &dr);
	bench_scenario_label(sc, label, sizeof(label));
	if (!o->quiet)
		fprintf(stderr, "ferry bench --server: %s rep %u: %s, %s\n", label,
			req->u.run.rep + 1, dr.status, dr.verified ? "verified" : dr.verify_error);
	if (ret)
		return ret;
	m = (struct bench_msg){.type = BENCH_MSG_RESULT};
	m.u.result.verified = dr.verified;
	snprintf(m.u.result.status, sizeof(m.u.result.status), "%s", dr.status);
	m.u.result.cpu_us = (uint64_t)(dr.cpu_s * 1e6);
	m.u.result.memcpy_bytes = dr.memcpy_bytes;
	m.u.result.registration_us =
	    dr.registration_ms < 0 ? UINT64_MAX : (uint64_t)(dr.registration_ms * 1e3);
	printable(m.u.result.verify_error, sizeof(m.u.result.verify_error), dr.verify_error);
	return bench_msg_send(fd, &m);
}

/* An RDMA WRITE target for the peer's ceiling; failures are reported, not fatal. */
static int serve_rdma_ceiling(int fd, const struct bench_options *o, const struct bench_msg *req,
			      const char *addr)
{
	struct bench_msg m = {.type = BENCH_MSG_READY};
	struct bench_rdma_sink *sink;
	int port = 0, ret;

	/* The target region (8 messages per lane) is memory this host gives: bounded like a guest.
	 */
	if ((uint64_t)req->u.ceil.streams * req->u.ceil.msg_size * 8 > o->max_ram) {
		send_error(fd, -EINVAL, "rdma ceiling region larger than --max-ram");
		return 0;
	}
	ret = bench_rdma_sink_start(addr, req->u.ceil.streams, req->u.ceil.msg_size, &sink, &port);
	if (ret) {
		send_error(fd, ret, ret == FERRY_ENORDMA ? "no rdma device" : ferry_strerror(ret));
		return 0;
	}
	m.u.ready.port = (uint32_t)port;
	ret = bench_msg_send(fd, &m);
	if (ret) {
		bench_rdma_sink_close(sink);
		return ret;
	}
	ret = bench_rdma_sink_wait(sink, (int)req->u.ceil.ms + 20000);
	if (ret) {
		bench_rdma_sink_close(sink);
		send_error(fd, ret, ferry_strerror(ret));
		return 0;
	}
	m = (struct bench_msg){.type = BENCH_MSG_CEIL_RESULT};
	ret = bench_msg_send(fd, &m);
	/* Keep the target until the peer's next message: its source closes first. */
	{
		struct pollfd pf = {fd, POLLIN, 0};

		poll(&pf, 1, 10000);
	}
	bench_rdma_sink_close(sink);
	return ret;
}

static int serve_ceiling(int fd, const struct bench_options *o, const struct bench_msg *req,
			 const char *addr)
{
	struct bench_msg m = {.type = BENCH_MSG_READY};
	struct bench_sink *sink;
	char uri[300];
	uint64_t bytes = 0;
	double secs = 0;
	int port, ret;

	if (req->u.ceil.transport == BENCH_TR_RDMA)
		return serve_rdma_ceiling(fd, o, req, addr);
	snprintf(uri, sizeof(uri), strchr(addr, ':') ? "tcp:[%s]:0" : "tcp:%s:0", addr);
	ret = bench_sink_start(uri, req->u.ceil.streams, req->u.ceil.msg_size, 10000, &sink, &port);
	if (ret) {
		send_error(fd, ret, ferry_strerror(ret));
		return ret;
	}
	m.u.ready.port = (uint32_t)port;
	ret = bench_msg_send(fd, &m);
	ret = bench_sink_finish(sink, &bytes, &secs) ?: ret;
	if (ret) {
		send_error(fd, ret, ferry_strerror(ret));
		return ret;
	}
	m = (struct bench_msg){.type = BENCH_MSG_CEIL_RESULT};
	m.u.ceil_result.bytes = bytes;
	m.u.ceil_result.ns = (uint64_t)(secs * 1e9);
	return bench_msg_send(fd, &m);
}

/* One peer, until BYE, an error or SIGINT. */
static void serve_peer(int fd, const struct bench_options *o, const char *addr)
{
	for (;;) {
		struct bench_msg m;
		int ret = bench_msg_recv(fd, &m, 600000);

		if (ret) {
			if (ret == FERRY_EBADSTREAM)
				send_error(fd, ret, "malformed control message");
			if (!o->quiet && ret != -ECONNRESET)
				fprintf(stderr, "ferry bench --server: dropping the peer: %s\n",
					ferry_strerror(ret));
			return;
		}
		switch (m.type) {
		case BENCH_MSG_HELLO:
			m.u.hello.max_ram = o->max_ram;
			ret = bench_msg_send(fd, &m);
			break;
		case BENCH_MSG_RUN:
			ret = serve_run(fd, o, &m, addr);
			break;
		case BENCH_MSG_CEIL:
			ret = serve_ceiling(fd, o, &m, addr);
			break;
		case BENCH_MSG_BYE:
			return;
		default:
			send_error(fd, FERRY_EBADSTREAM, "unexpected message");
			return;
		}
		if (ret || g_stop)
			return;
	}
}

int bench_run_server(const struct bench_options *o)
{
	char host[256], port[16];
	const char *uri = o->server;
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE}, *ai;
	int lfd, one = 1;

	if (strncmp(uri, "tcp:", 4) != 0 ||
	    split_host(uri + 4, host, sizeof(host), port, sizeof(port)) < 0) {
		fprintf(stderr, "ferry bench: --server takes tcp:ADDR[:PORT]\n");
		return 2;
	}
	if (getaddrinfo(host, port, &hints, &ai) != 0) {
		fprintf(stderr, "ferry bench: cannot resolve %s\n", host);
		return 2;
	}
	lfd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (lfd >= 0)
		setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (lfd < 0 || bind(lfd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(lfd, 4) < 0) {
		fprintf(stderr, "ferry bench: cannot listen on %s port %s: %s\n", host, port,
			strerror(errno));
		freeaddrinfo(ai);
		if (lfd >= 0)
			close(lfd);
		return 1;
	}
	freeaddrinfo(ai);
	install_sigint();
	if (!o->quiet)
		fprintf(stderr,
			"ferry bench --server: control on %s port %s, guests up to %llu MiB\n",
			host, port, (unsigned long long)(o->max_ram >> 20));
	while (!g_stop) {
		struct pollfd pf = {lfd, POLLIN, 0};
		int fd;

		if (poll(&pf, 1, 500) != 1)
			continue;
		fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0)
			continue;
		if (!o->quiet)
			fprintf(stderr, "ferry bench --server: a peer connected\n");
		serve_peer(fd, o, host);
		close(fd);
		if (!o->quiet)
			fprintf(stderr, "ferry bench --server: the peer left\n");
		if (o->once)
			break;
	}
	close(lfd);
	return 0;
}
