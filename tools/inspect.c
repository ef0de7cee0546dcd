/* SPDX-License-Identifier: MIT */
/* `ferry inspect`: print a savevm v3 stream as JSON (the work is ferry_inspect()). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

#include <ferry/error.h>
#include <ferry/inspect.h>

#include "cli.h"

static void inspect_usage(FILE *out)
{
	fprintf(out,
		"usage: ferry inspect [--desc] [--summary] [--strict] [--compact] FILE|-\n"
		"\n"
		"Decode a savevm v3 migration stream (written by ferry or by QEMU) and\n"
		"print it as JSON on stdout. FILE - reads stdin (at most %llu MiB).\n"
		"\n"
		"  --desc      print only the vmdesc JSON the stream carries after EOF\n"
		"  --summary   counts only: no field-by-field decode of device sections\n"
		"  --strict    treat warnings (odd but loadable streams) as errors\n"
		"  --compact   one line of JSON instead of indented text\n"
		"  -h, --help  this text\n"
		"\n"
		"Exit status: 0 the whole stream was decoded; 1 it is broken or could not\n"
		"be read (the reason on stderr, the JSON of what was decoded on stdout);\n"
		"2 usage error. See docs/inspect.md for the JSON keys.\n",
		CLI_MAX_STDIN >> 20);
}

int ferry_cmd_inspect(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"desc", no_argument, NULL, 'd'},	{"summary", no_argument, NULL, 's'},
	    {"strict", no_argument, NULL, 'S'}, {"compact", no_argument, NULL, 'c'},
	    {"help", no_argument, NULL, 'h'},	{NULL, 0, NULL, 0},
	};
	struct ferry_inspect_opts opts = {.indent = 2};
	struct cli_input in;
	char *json = NULL, *err = NULL;
	int c, ret;

	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (c) {
		case 'd':
			opts.desc_only = true;
			break;
		case 's':
			opts.summary = true;
			break;
		case 'S':
			opts.strict = true;
			break;
		case 'c':
			opts.indent = 0;
			break;
		case 'h':
			inspect_usage(stdout);
			return CLI_OK;
		default:
			inspect_usage(stderr);
			return CLI_USAGE;
		}
	}
	if (argc - optind != 1) {
		fprintf(stderr, "ferry inspect: expected one FILE (or - for stdin)\n");
		inspect_usage(stderr);
		return CLI_USAGE;
	}
	if (opts.desc_only && opts.summary) {
		fprintf(stderr, "ferry inspect: --desc and --summary exclude each other\n");
		return CLI_USAGE;
	}
	const char *path = argv[optind];
	if (cli_input_open(path, &in) < 0)
		return CLI_FAILED;
	ret = ferry_inspect(in.data, in.len, &opts, &json, &err);
	cli_input_close(&in);
	if (json)
		fputs(json, stdout);
	if (fflush(stdout) != 0) {
		perror("ferry inspect: stdout");
		ret = ret ? ret : -1;
	}
	if (ret < 0 && (err || ret != -1))
		fprintf(stderr, "ferry inspect: %s: %s\n", path, err ? err : ferry_strerror(ret));
	free(json);
	free(err);
	return ret < 0 ? CLI_FAILED : CLI_OK;
}
