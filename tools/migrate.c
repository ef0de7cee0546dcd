/* SPDX-License-Identifier: MIT */
/*
 * `ferry send`, `ferry listen` and `ferry sample`: the synthetic guest
 * migrated between two processes (or hosts), through the public API only.
 *
 *   ferry listen tcp:0.0.0.0:4444 --ram 1G
 *   ferry send   tcp:HOST:4444    --ram 1G --dirty-rate 100M --vcpus 2
 *
 * Both sides build the same guest from the same seed; the destination then
 * verifies what arrived without the source at hand (bench_guest_verify()).
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <ferry/engine.h>
#include <ferry/error.h>
#include <ferry/log.h>

#include "cli.h"
#include "guest.h"
#include "harness.h"

int cli_parse_size(const char *s, uint64_t *out)
{
	return bench_parse_size(s, out);
}

static int parse_pattern(const char *s, enum bench_pattern *p)
{
	static const char *const names[] = {"ab", "uniform", "hot", "sequential"};

	for (int i = 0; i < 4; i++)
		if (strcmp(s, names[i]) == 0) {
			*p = (enum bench_pattern)i;
			return 0;
		}
	return -EINVAL;
}

static double mib(uint64_t b)
{
	return (double)b / (1024.0 * 1024.0);
}

json_t *cli_stats_json(const struct ferry_stats *st);

struct progress {
	bool tty;    /* a live line on stderr */
	bool events; /* JSON lines on stdout */
};

/* Progress: a live line on a terminal, and/or one JSON line per event. */
static void on_event(void *opaque, enum ferry_event_type type, const struct ferry_stats *st)
{
	struct progress *p = opaque;

	if (p->events) {
		static const char *const names[] = {"?", "status", "round", "progress"};
		json_t *j = cli_stats_json(st);

		json_object_set_new(j, "event", json_string(names[type <= 3 ? type : 0]));
		/* One line at a time: the main thread prints "listening" meanwhile. */
		flockfile(stdout);
		json_dumpf(j, stdout, JSON_COMPACT);
		fputc('\n', stdout);
		fflush(stdout);
		funlockfile(stdout);
		json_decref(j);
	}
	if (!p->tty)
		return;
	fprintf(stderr,
		"\r[%-9s] round %-4" PRIu64 " sent %8.1f MiB  remaining %8.1f MiB  %7.1f MiB/s  "
		"expected downtime %5" PRIu64 " ms  throttle %2d%% ",
		ferry_status_name(st->status), st->rounds, mib(st->transferred), mib(st->remaining),
		mib(st->throughput), st->expected_downtime_ms, st->throttle_pct);
	if (st->status >= FERRY_STATUS_COMPLETED && st->status != FERRY_STATUS_CANCELLING)
		fputc('\n', stderr);
}

json_t *cli_stats_json(const struct ferry_stats *st)
{
	json_t *o = json_object();

	json_object_set_new(o, "status", json_string(ferry_status_name(st->status)));
	if (st->error) {
		json_object_set_new(o, "error", json_string(ferry_err_name(st->error)));
		json_object_set_new(o, "error_msg", json_string(st->error_msg));
	}
	json_object_set_new(o, "transport", json_string(st->transport));
	json_object_set_new(o, "setup_ms", json_integer((json_int_t)st->setup_ms));
	json_object_set_new(o, "total_ms", json_integer((json_int_t)st->total_ms));
	json_object_set_new(o, "downtime_ms", json_integer((json_int_t)st->downtime_ms));
	json_object_set_new(o, "downtime_limit_ms",
			    json_integer((json_int_t)st->downtime_limit_ms));
	json_object_set_new(o, "expected_downtime_ms",
			    json_integer((json_int_t)st->expected_downtime_ms));
	json_object_set_new(o, "transferred", json_integer((json_int_t)st->transferred));
	json_object_set_new(o, "remaining", json_integer((json_int_t)st->remaining));
	json_object_set_new(o, "total_ram", json_integer((json_int_t)st->total_ram));
	json_object_set_new(o, "dirty_rate", json_integer((json_int_t)st->dirty_rate));
	json_object_set_new(o, "throughput", json_integer((json_int_t)st->throughput));
	json_object_set_new(o, "rounds", json_integer((json_int_t)st->rounds));
	json_object_set_new(o, "normal_pages", json_integer((json_int_t)st->normal_pages));
	json_object_set_new(o, "zero_pages", json_integer((json_int_t)st->zero_pages));
	json_object_set_new(o, "normal_bytes", json_integer((json_int_t)st->normal_bytes));
	json_object_set_new(o, "memcpy_bytes", json_integer((json_int_t)st->memcpy_bytes));
	json_object_set_new(o, "throttle_pct", json_integer(st->throttle_pct));
	json_object_set_new(o, "cpu_ms", json_integer((json_int_t)st->cpu_ms));
	json_object_set_new(o, "channels", json_integer(st->channels));
	json_object_set_new(o, "syscalls", json_integer((json_int_t)st->syscalls));
	if (st->tls[0])
		json_object_set_new(o, "tls", json_string(st->tls));
	if (st->registration[0]) {
		json_object_set_new(o, "registration", json_string(st->registration));
		json_object_set_new(o, "registration_us",
				    json_integer((json_int_t)st->registration_us));
	}
	if (st->fallback_reason[0])
		json_object_set_new(o, "fallback_reason", json_string(st->fallback_reason));
	/* The ratios the data path is judged by (docs/data-path.md). */
	if (st->normal_bytes) {
		json_object_set_new(o, "memcpy_per_byte",
				    json_real((double)st->memcpy_bytes / (double)st->normal_bytes));
		json_object_set_new(
		    o, "syscalls_per_mib",
		    json_real((double)st->syscalls * 1048576.0 / (double)st->normal_bytes));
	}
	return o;
}

/* The data-path workers as a JSON array (empty without a data path). */
static json_t *workers_json(struct ferry_engine *eng)
{
	struct ferry_worker_stats ws[FERRY_MAX_CHANNELS];
	int n = ferry_engine_get_worker_stats(eng, ws, FERRY_MAX_CHANNELS);
	json_t *a = json_array();

	for (int i = 0; i < n && i < FERRY_MAX_CHANNELS; i++) {
		json_t *o = json_object();

		json_object_set_new(o, "index", json_integer(ws[i].index));
		json_object_set_new(o, "numa_node", json_integer(ws[i].numa_node));
		json_object_set_new(o, "cpus", json_string(ws[i].cpus));
		json_object_set_new(o, "bound", json_boolean(ws[i].bound));
		json_object_set_new(o, "ram_bytes", json_integer((json_int_t)ws[i].ram_bytes));
		json_object_set_new(o, "pages", json_integer((json_int_t)ws[i].pages));
		json_object_set_new(o, "zero_pages", json_integer((json_int_t)ws[i].zero_pages));
		json_object_set_new(o, "bytes", json_integer((json_int_t)ws[i].bytes));
		json_object_set_new(o, "wire_bytes", json_integer((json_int_t)ws[i].wire_bytes));
		json_object_set_new(o, "packets", json_integer((json_int_t)ws[i].packets));
		json_object_set_new(o, "syscalls", json_integer((json_int_t)ws[i].syscalls));
		json_object_set_new(o, "cpu_s", json_real((double)ws[i].cpu_ns / 1e9));
		json_array_append_new(a, o);
	}
	return a;
}

/* CPU seconds this process used (user + system), for the cost of a migration. */
static double cpu_seconds(void)
{
	struct rusage ru;

	if (getrusage(RUSAGE_SELF, &ru) < 0)
		return 0;
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
	       (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static void print_summary(const char *side, const struct ferry_stats *st, const char *verify)
{
	fprintf(stderr,
		"%s: %s over %s%s%s\n"
		"  total %" PRIu64 " ms, setup %" PRIu64 " ms, downtime %" PRIu64
		" ms (limit %" PRIu64 " ms)\n"
		"  transferred %.1f MiB of %.1f MiB RAM in %" PRIu64 " rounds; %" PRIu64
		" normal + %" PRIu64 " zero pages\n",
		side, ferry_status_name(st->status), st->transport[0] ? st->transport : "-",
		st->tls[0] ? " with " : "", st->tls, st->total_ms, st->setup_ms, st->downtime_ms,
		st->downtime_limit_ms, mib(st->transferred), mib(st->total_ram), st->rounds,
		st->normal_pages, st->zero_pages);
	if (st->error)
		fprintf(stderr, "  error: %s\n", st->error_msg);
	if (verify)
		fprintf(stderr, "  verification: %s\n", verify);
}

struct opts {
	struct bench_guest_attr g;
	struct ferry_params p;
	bool json, quiet, events;
	bool non_live; /* send: no dirty log, no vCPUs: a stopped guest */
	const char *uri;
	struct ferry_tls_attr tls; /* --tls-*: used when tls.x509_dir or tls.psk_file is set */
};

static int parse_common(int argc, char **argv, struct opts *o, bool source)
{
	static const struct option longopts[] = {
	    {"ram", required_argument, NULL, 'r'},
	    {"vcpus", required_argument, NULL, 'c'},
	    {"dirty-rate", required_argument, NULL, 'd'},
	    {"pattern", required_argument, NULL, 'p'},
	    {"downtime-limit", required_argument, NULL, 'l'},
	    {"max-bandwidth", required_argument, NULL, 'b'},
	    {"auto-converge", no_argument, NULL, 'a'},
	    {"timeout", required_argument, NULL, 't'},
	    {"huge", no_argument, NULL, 'H'},
	    {"seed", required_argument, NULL, 's'},
	    {"json", no_argument, NULL, 'j'},
	    {"events", no_argument, NULL, 'e'},
	    {"quiet", no_argument, NULL, 'q'},
	    {"channels", required_argument, NULL, 'C'},
	    {"zerocopy", no_argument, NULL, 'Z'},
	    {"topology", required_argument, NULL, 'T'},
	    {"rdma-reg", required_argument, NULL, 'R'},
	    {"no-fallback", no_argument, NULL, 'F'},
	    {"rdma-port", required_argument, NULL, 'D'},
	    {"non-live", no_argument, NULL, 'N'},
	    {"tls-creds", required_argument, NULL, 'X'},
	    {"tls-psk", required_argument, NULL, 'P'},
	    {"tls-psk-identity", required_argument, NULL, 'I'},
	    {"tls-hostname", required_argument, NULL, 'n'},
	    {"tls-verify-peer", no_argument, NULL, 'V'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	int c;

	memset(o, 0, sizeof(*o));
	o->g.ram_bytes = 256ull << 20;
	/* On the destination: the source's vCPU count, which the A-B check needs. */
	o->g.vcpus = 2;
	o->g.dirty_rate = 0;
	o->g.fill_seed = 42;
	o->p.machine = "ferry-synthetic";
	optind = 1;
	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		uint64_t v;

		switch (c) {
		case 'r':
			if (cli_parse_size(optarg, &o->g.ram_bytes) < 0 || o->g.ram_bytes == 0)
				goto bad;
			break;
		case 'c':
			o->g.vcpus = (uint32_t)strtoul(optarg, NULL, 10);
			break;
		case 'd':
			if (cli_parse_size(optarg, &o->g.dirty_rate) < 0)
				goto bad;
			break;
		case 'p':
			if (parse_pattern(optarg, &o->g.pattern) < 0)
				goto bad;
			break;
		case 'l':
			o->p.downtime_limit_ms = strtoull(optarg, NULL, 10);
			break;
		case 'b':
			if (cli_parse_size(optarg, &v) < 0)
				goto bad;
			o->p.max_bandwidth = v;
			break;
		case 'a':
			o->p.auto_converge = true;
			break;
		case 't':
			o->p.timeout_ms = strtoull(optarg, NULL, 10);
			break;
		case 'H':
			o->g.huge = true;
			break;
		case 's':
			o->g.fill_seed = (uint32_t)strtoul(optarg, NULL, 0);
			break;
		case 'j':
			o->json = true;
			break;
		case 'q':
			o->quiet = true;
			break;
		case 'C': {
			char *end;
			unsigned long n = strtoul(optarg, &end, 10);

			if (*end || end == optarg || n > FERRY_MAX_CHANNELS)
				goto bad;
			o->p.channels = (uint32_t)n;
			break;
		}
		case 'Z':
			o->p.zerocopy = true;
			break;
		case 'T':
			o->p.numa_topology = optarg;
			break;
		case 'R':
			if (strcmp(optarg, "auto") && strcmp(optarg, "pin-all") &&
			    strcmp(optarg, "chunked") && strcmp(optarg, "odp"))
				goto bad;
			o->p.rdma_registration = optarg;
			break;
		case 'F':
			o->p.no_fallback = true;
			break;
		case 'D': {
			char *end;
			unsigned long n = strtoul(optarg, &end, 10);

			if (*end || end == optarg || n == 0 || n > 65535)
				goto bad;
			o->p.rdma_port = (uint32_t)n;
			break;
		}
		case 'N':
			o->non_live = true;
			break;
		case 'X':
			o->tls.x509_dir = optarg;
			break;
		case 'P':
			o->tls.psk_file = optarg;
			break;
		case 'I':
			o->tls.psk_identity = optarg;
			break;
		case 'n':
			o->tls.hostname = optarg;
			break;
		case 'V':
			o->tls.verify_peer = true;
			break;
		case 'e':
			o->events =
			    true; /* JSON lines of every event on stdout, for `ferry demo` */
			o->json = true;
			break;
		case 'h':
			return 1;
		default:
			return -EINVAL;
		}
	}
	if (optind != argc - 1) {
		fprintf(stderr, "ferry: expected exactly one URI\n");
		return -EINVAL;
	}
	o->uri = argv[optind];
	if (o->tls.x509_dir && o->tls.psk_file) {
		fprintf(stderr, "ferry: --tls-creds and --tls-psk exclude each other\n");
		return -EINVAL;
	}
	if (!o->tls.x509_dir && !o->tls.psk_file &&
	    (o->tls.psk_identity || o->tls.hostname || o->tls.verify_peer)) {
		fprintf(stderr, "ferry: --tls-hostname, --tls-psk-identity and --tls-verify-peer "
				"need --tls-creds or --tls-psk\n");
		return -EINVAL;
	}
	o->g.ram_bytes = (o->g.ram_bytes + (2u << 20) - 1) & ~((uint64_t)(2u << 20) - 1);
	return 0;
bad:
	fprintf(stderr, "ferry: bad value '%s'\n", optarg);
	return -EINVAL;
}

static const char send_usage[] =
    "usage: ferry send URI [--ram SIZE] [--vcpus N] [--dirty-rate RATE] [--pattern P]\n"
    "                      [--downtime-limit MS] [--max-bandwidth RATE] [--auto-converge]\n"
    "                      [--timeout MS] [--huge] [--seed N] [--json] [--quiet]\n"
    "                      [--channels N] [--zerocopy] [--topology T] [--non-live]\n"
    "                      [--rdma-reg auto|pin-all|chunked|odp] [--no-fallback]\n"
    "                      [--rdma-port N]\n"
    "                      [--tls-creds DIR [--tls-hostname NAME] | --tls-psk FILE]\n"
    "Migrate a synthetic guest (RAM SIZE, N vCPUs dirtying RATE bytes/s in pattern\n"
    "ab|uniform|hot|sequential) to URI: tcp:HOST:PORT, unix:PATH, rdma:HOST:PORT,\n"
    "file:PATH, exec:CMD, fd:N.\n"
    "--channels N moves the pages over N data connections beside the main stream (tcp:,\n"
    "unix:; rdma: N queue pairs, default 1), one NUMA-placed worker each; --zerocopy sends\n"
    "them with MSG_ZEROCOPY; --rdma-reg chooses how RAM is registered for RDMA;\n"
    "--no-fallback fails rather than moving the pages over TCP lanes when RDMA cannot be\n"
    "set up (rdma: uses TCP HOST:PORT for the main stream, rdma_cm port PORT+1 or\n"
    "--rdma-port N, which must match the destination's);\n"
    "--topology synthetic:DESC|xml:PATH places the workers on a described topology;\n"
    "--non-live migrates a stopped guest (no vCPUs, no dirty log). See docs/data-path.md.\n"
    "TLS (tcp:, unix:; the main stream and every data connection):\n"
    "  --tls-creds DIR        x509: DIR/ca-cert.pem verifies the destination's certificate;\n"
    "                         DIR/client-cert.pem + client-key.pem are shown when asked\n"
    "  --tls-hostname NAME    the name the destination's certificate must carry\n"
    "                         (default: the URI's host)\n"
    "  --tls-psk FILE         pre-shared key: FILE holds identity:hexkey lines\n"
    "  --tls-psk-identity ID  the identity to use (default: the file's first)\n"
    "See docs/security-tls.md.\n";

static const char listen_usage[] =
    "usage: ferry listen URI [--ram SIZE] [--vcpus N] [--pattern P] [--seed N] [--timeout MS]\n"
    "                        [--json]\n"
    "                        [--huge] [--topology T] [--rdma-reg auto|pin-all|chunked|odp]\n"
    "                        [--rdma-port N]\n"
    "                        [--tls-creds DIR [--tls-verify-peer] | --tls-psk FILE]\n"
    "Receive a synthetic guest from `ferry send` (same --ram, --vcpus (default 2 on both),\n"
    "--pattern and --seed) and\n"
    "verify it: the A-B check, every page's contents and every device field. The RAM is\n"
    "populated before the source connects (--huge: with transparent huge pages); data\n"
    "connections are accepted as the source asks (`ferry send --channels N`); with\n"
    "rdma:HOST:PORT, RDMA queue pairs on the rdma_cm port PORT+1 or --rdma-port N (RAM\n"
    "registered as\n"
    "--rdma-reg says), or TCP lanes when the source falls back.\n"
    "TLS: --tls-creds DIR (DIR/ca-cert.pem, server-cert.pem, server-key.pem) with\n"
    "--tls-verify-peer to require a client certificate signed by the CA, or --tls-psk FILE\n"
    "(identity:hexkey lines). A source without TLS, or that fails the checks, is refused.\n";
int ferry_cmd_send(int argc, char **argv)
{
	struct opts o;
	struct ferry_engine *eng = NULL;
	struct bench_guest *g = NULL;
	struct ferry_stats st;
	struct progress prog;
	double cpu0, cpu1;
	int ret = parse_common(argc, argv, &o, true);

	if (ret) {
		fputs(send_usage, ret > 0 ? stdout : stderr);
		return ret > 0 ? 0 : 2;
	}
	prog.tty = !o.quiet && !o.json && isatty(STDERR_FILENO);
	prog.events = o.events;
	if (o.non_live)
		o.g.vcpus = 0;
	ret = ferry_engine_create(&eng);
	if (!ret)
		ret = bench_guest_create(&o.g, &g);
	if (!ret)
		ret = bench_guest_attach_source(g, eng);
	/* A stopped guest needs no dirty log: one pass over RAM is everything. */
	if (!ret && o.non_live)
		ret = ferry_engine_set_dirty_log(eng, NULL);
	if (!ret)
		ret = ferry_engine_set_params(eng, &o.p);
	if (!ret && (o.tls.x509_dir || o.tls.psk_file))
		ret = ferry_engine_set_tls(eng, &o.tls);
	if (!ret)
		ret = ferry_engine_set_event_cb(eng, on_event, &prog);
	if (ret < 0) {
		fprintf(stderr, "ferry send: setting up the guest failed: %s\n",
			ferry_strerror(ret));
		goto out;
	}
	if (!o.quiet && !o.json)
		fprintf(stderr, "ferry send: %.0f MiB guest, %u vCPUs, dirty log %s, to %s%s\n",
			mib(o.g.ram_bytes), o.g.vcpus,
			o.non_live ? "none (non-live)" : bench_guest_dirty_kind(g), o.uri,
			o.p.channels ? " with data channels" : "");
	cpu0 = cpu_seconds();
	ferry_migrate_sync(eng, o.uri);
	cpu1 = cpu_seconds();
	ferry_engine_get_stats(eng, &st);
	if (o.json) {
		json_t *j = cli_stats_json(&st);

		json_object_set_new(j, "side", json_string("source"));
		json_object_set_new(j, "event", json_string("done"));
		json_object_set_new(j, "dirty_log",
				    json_string(o.non_live ? "none" : bench_guest_dirty_kind(g)));
		json_object_set_new(j, "cpu_s", json_real(cpu1 - cpu0));
		json_object_set_new(j, "workers", workers_json(eng));
		json_dumpf(j, stdout, JSON_COMPACT);
		fputc('\n', stdout);
		json_decref(j);
	} else if (!o.quiet) {
		print_summary("source", &st, NULL);
	}
	ret = st.status == FERRY_STATUS_COMPLETED ? 0 : -1;
out:
	ferry_engine_destroy(eng);
	bench_guest_destroy(g);
	return ret == 0 ? 0 : 1;
}

int ferry_cmd_listen(int argc, char **argv)
{
	struct opts o;
	struct ferry_engine *eng = NULL;
	struct bench_guest *g = NULL;
	struct ferry_stats st;
	char why[1024] = "";
	uint64_t bad = 0;
	struct progress prog;
	double cpu0 = 0, cpu1 = 0;
	int ret = parse_common(argc, argv, &o, false);

	if (ret) {
		fputs(listen_usage, ret > 0 ? stdout : stderr);
		return ret > 0 ? 0 : 2;
	}
	prog.tty = !o.quiet && !o.json && isatty(STDERR_FILENO);
	prog.events = o.events;
	ret = ferry_engine_create(&eng);
	if (!ret) {
		struct bench_guest_attr ga = o.g;

		/* The destination's RAM starts empty and its devices differ: all must arrive. */
		ga.vcpus = 0;
		ga.fill_seed = 0;
		/* Pay the first-touch faults before the source connects (docs/benchmarks.md). */
		ga.prefault = true;
		ret = bench_guest_create(&ga, &g);
	}
	if (!ret) {
		bench_devices_fill(bench_guest_devices(g), 0xdead);
		ret = bench_guest_attach_dest(g, eng);
	}
	if (!ret)
		ret = ferry_engine_set_params(eng, &o.p);
	if (!ret && (o.tls.x509_dir || o.tls.psk_file))
		ret = ferry_engine_set_tls(eng, &o.tls);
	if (!ret)
		ret = ferry_engine_set_event_cb(eng, on_event, &prog);
	/* The cost of the migration alone: the RAM was populated above. */
	cpu0 = cpu_seconds();
	if (!ret)
		ret = ferry_incoming(eng, o.uri, NULL, NULL);
	if (ret < 0) {
		fprintf(stderr, "ferry listen: %s\n", ferry_strerror(ret));
		goto out;
	}
	if (o.events) {
		printf("{\"event\":\"listening\",\"port\":%d}\n", ferry_engine_listen_port(eng));
		fflush(stdout);
	}
	if (!o.quiet && !o.json) {
		if (ferry_engine_listen_port(eng))
			fprintf(stderr, "ferry listen: waiting on port %d\n",
				ferry_engine_listen_port(eng));
		else
			fprintf(stderr, "ferry listen: reading %s\n", o.uri);
	}
	ferry_engine_wait(eng);
	cpu1 = cpu_seconds();
	ferry_engine_get_stats(eng, &st);
	if (st.status == FERRY_STATUS_COMPLETED)
		bad = bench_guest_verify(g, &o.g, why, sizeof(why));
	if (o.json) {
		json_t *j = cli_stats_json(&st);

		json_object_set_new(j, "side", json_string("destination"));
		json_object_set_new(j, "event", json_string("done"));
		json_object_set_new(j, "cpu_s", json_real(cpu1 - cpu0));
		json_object_set_new(j, "workers", workers_json(eng));
		json_object_set_new(j, "verified",
				    json_boolean(st.status == FERRY_STATUS_COMPLETED && bad == 0));
		if (bad)
			json_object_set_new(j, "verify_error", json_string(why));
		json_dumpf(j, stdout, JSON_COMPACT);
		fputc('\n', stdout);
		json_decref(j);
	} else if (!o.quiet) {
		print_summary("destination", &st,
			      st.status != FERRY_STATUS_COMPLETED ? "not attempted"
			      : bad				  ? why
				    : "every page and device field as expected");
	}
	ret = st.status == FERRY_STATUS_COMPLETED && bad == 0 ? 0 : -1;
out:
	ferry_engine_destroy(eng);
	bench_guest_destroy(g);
	return ret == 0 ? 0 : 1;
}

int ferry_cmd_sample(int argc, char **argv)
{
	struct bench_devices d;
	FILE *f;
	int ret;

	if (argc != 2 || argv[1][0] == '-') {
		fprintf(stderr, "usage: ferry sample FILE\n"
				"Write a savevm v3 stream of the sample devices to FILE.\n");
		return 2;
	}
	f = fopen(argv[1], "wb");
	if (!f) {
		fprintf(stderr, "ferry sample: %s: %s\n", argv[1], strerror(errno));
		return 1;
	}
	bench_devices_fill(&d, 42);
	ret = bench_write_sample_stream(fileno(f), &d);
	if (fclose(f) != 0 && !ret)
		ret = -errno;
	if (ret < 0) {
		fprintf(stderr, "ferry sample: %s\n", ferry_strerror(ret));
		return 1;
	}
	return 0;
}
