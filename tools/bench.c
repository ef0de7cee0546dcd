/* SPDX-License-Identifier: MIT */
/*
 * `ferry bench`: the command line of the benchmark harness (bench/harness.h).
 *
 *   ferry bench --ram 256M,1G --dirty-rate 0,50M --transport tcp,unix --channels 1,2 --reps 3
 *   ferry bench --server tcp:192.0.2.2            (the destination host)
 *   ferry bench --peer 192.0.2.2 --ram 256M ...   (the source host)
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "harness.h"

static const char usage[] =
    "usage: ferry bench [MATRIX] [--reps N] [--out DIR] [--quiet]\n"
    "       ferry bench --server [tcp:ADDR[:PORT]] [--max-ram SIZE] [--once]\n"
    "       ferry bench --peer HOST[:PORT] [MATRIX] [--reps N] [--out DIR]\n"
    "Run a matrix of live migrations of the synthetic guest, each verified by the\n"
    "destination, against the fabric's ceiling measured by ferry in the same session.\n"
    "MATRIX options take comma-separated lists; every combination is run:\n"
    "  --ram 256M,1G           guest RAM (multiples of 2 MiB)\n"
    "  --dirty-rate 0,50M      bytes per second the vCPUs dirty (0: an idle, stopped guest)\n"
    "  --pattern uniform,hot   ab|uniform|hot|sequential (live guests only)\n"
    "  --transport tcp,unix    tcp|unix|rdma (rdma falls back to tcp without the data path)\n"
    "  --channels 0,1,2,4      data-path workers (0: pages in the main stream)\n"
    "  --registration auto     auto|pin-all|chunked|odp (rdma only)\n"
    "  --page-size 4k,2M       4k pages, or 2M transparent huge pages\n"
    "  --downtime 300          downtime limit, ms\n"
    "Constants: --reps N (3), --vcpus N (2), --seed N (42), --timeout MS (120000),\n"
    "  --msg-size SIZE (2M, the ceiling's message), --ceiling-time MS (2000).\n"
    "Output in --out DIR (bench-out): results.jsonl, results.csv, report.md, plots (PNG,\n"
    "when gnuplot is installed). Progress on stderr; Ctrl-C stops and keeps finished runs.\n"
    "--server listens for a --peer (control port 4480) and receives its guests;\n"
    "--max-ram bounds what it accepts (4G); --once exits after one peer.\n"
    "TLS (every migration, both modes; docs/security-tls.md): --tls-psk FILE [--tls-psk-identity\n"
    "  ID], or --tls-creds DIR (x509: the local run uses DIR's server and client files; the\n"
    "  --server its server-*.pem, the --peer its client-*.pem and ca-cert.pem) with\n"
    "  --tls-hostname NAME and --tls-verify-peer as for send/listen.\n"
    "--dump-ram FILE writes the source guest's RAM (first --ram, --seed) to FILE and exits\n"
    "(bench/peers/ gives QEMU the same bytes).\n"
    "Exit status: 0 every run verified, 1 a run failed, 2 usage, 130 interrupted.\n";

int ferry_cmd_bench(int argc, char **argv)
{
	/* clang-format off */
	static const struct option longopts[] = {
	    {"ram", required_argument, NULL, 0},
	    {"dirty-rate", required_argument, NULL, 0},
	    {"pattern", required_argument, NULL, 0},
	    {"transport", required_argument, NULL, 0},
	    {"channels", required_argument, NULL, 0},
	    {"registration", required_argument, NULL, 0},
	    {"page-size", required_argument, NULL, 0},
	    {"downtime", required_argument, NULL, 0},
	    {"reps", required_argument, NULL, 0},
	    {"vcpus", required_argument, NULL, 0},
	    {"seed", required_argument, NULL, 0},
	    {"timeout", required_argument, NULL, 0},
	    {"msg-size", required_argument, NULL, 0},
	    {"ceiling-time", required_argument, NULL, 0},
	    {"out", required_argument, NULL, 'o'},
	    {"server", optional_argument, NULL, 'S'},
	    {"peer", required_argument, NULL, 'P'},
	    {"max-ram", required_argument, NULL, 'M'},
	    {"once", no_argument, NULL, '1'},
	    {"quiet", no_argument, NULL, 'q'},
	    {"dump-ram", required_argument, NULL, 'D'},
	    {"tls-creds", required_argument, NULL, 'X'},
	    {"tls-psk", required_argument, NULL, 'K'},
	    {"tls-psk-identity", required_argument, NULL, 'I'},
	    {"tls-hostname", required_argument, NULL, 'n'},
	    {"tls-verify-peer", no_argument, NULL, 'V'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	/* clang-format on */
	struct bench_options o;
	size_t len = 0;
	int c, idx;

	memset(&o, 0, sizeof(o));
	bench_spec_init(&o.spec);
	o.out_dir = "bench-out";
	o.max_ram = 4ull << 30;
	for (int i = 0; i < argc && len < sizeof(o.command) - 1; i++)
		len += (size_t)snprintf(o.command + len, sizeof(o.command) - len, "%s%s",
					i ? " " : "ferry ", argv[i]);
	optind = 1;
	while ((c = getopt_long(argc, argv, "h", longopts, &idx)) != -1) {
		char why[256];

		switch (c) {
		case 0:
			if (bench_spec_set(&o.spec, longopts[idx].name, optarg, why, sizeof(why))) {
				fprintf(stderr, "ferry bench: %s\n", why);
				return CLI_USAGE;
			}
			break;
		case 'o':
			o.out_dir = optarg;
			break;
		case 'S':
			/* --server URI or --server alone (the next word, if not an option). */
			if (!optarg && optind < argc && argv[optind][0] != '-')
				optarg = argv[optind++];
			o.server = optarg ? optarg : "tcp:0.0.0.0";
			break;
		case 'P':
			o.peer = optarg;
			break;
		case 'M':
			if (cli_parse_size(optarg, &o.max_ram) < 0 || o.max_ram < (2u << 20)) {
				fprintf(stderr, "ferry bench: bad --max-ram '%s'\n", optarg);
				return CLI_USAGE;
			}
			break;
		case '1':
			o.once = true;
			break;
		case 'q':
			o.quiet = true;
			break;
		case 'D':
			o.dump_ram = optarg;
			break;
		case 'X':
			o.tls.x509_dir = optarg;
			break;
		case 'K':
			o.tls.psk_file = optarg;
			break;
		case 'I':
			o.tls.psk_identity = optarg;
			break;
		case 'n':
			o.tls.hostname = optarg;
			break;
		case 'V':
			o.tls.verify_peer = true;
			break;
		case 'h':
			fputs(usage, stdout);
			return CLI_OK;
		default:
			fputs(usage, stderr);
			return CLI_USAGE;
		}
	}
	if (optind != argc || (o.server && o.peer)) {
		fputs(usage, stderr);
		return CLI_USAGE;
	}
	if (o.tls.x509_dir && o.tls.psk_file) {
		fprintf(stderr, "ferry bench: --tls-creds and --tls-psk exclude each other\n");
		return CLI_USAGE;
	}
	if (!o.tls.x509_dir && !o.tls.psk_file &&
	    (o.tls.psk_identity || o.tls.hostname || o.tls.verify_peer)) {
		fprintf(stderr, "ferry bench: --tls-hostname, --tls-psk-identity and "
				"--tls-verify-peer need --tls-creds or --tls-psk\n");
		return CLI_USAGE;
	}
	if (o.dump_ram) {
		int ret = bench_dump_ram(o.dump_ram, o.spec.ram.v[0], o.spec.seed);

		if (ret)
			fprintf(stderr, "ferry bench: --dump-ram %s: %s\n", o.dump_ram,
				strerror(-ret));
		return ret ? CLI_FAILED : CLI_OK;
	}
	if (o.server)
		return bench_run_server(&o);
	if (o.peer)
		return bench_run_peer(&o);
	return bench_run_local(&o);
}
