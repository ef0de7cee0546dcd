/* SPDX-License-Identifier: MIT */
/*
 * The `ferry` command line: the list of subcommands and the helpers they share.
 *
 * Adding a subcommand: write `int ferry_cmd_NAME(int argc, char **argv)` in
 * tools/NAME.c (argv[0] is "NAME"; it handles its own --help and returns the
 * exit status: 0 success, 1 failure, 2 usage error), add NAME.c to
 * tools/CMakeLists.txt, and add one X(...) line below. `ferry help` lists it.
 */
#ifndef FERRY_TOOLS_CLI_H
#define FERRY_TOOLS_CLI_H

#include <stddef.h>
#include <stdint.h>

/* X(name, one-line help), in the order `ferry help` lists them. */
#define FERRY_CLI_COMMANDS(X)                                                                      \
	X(demo, "live-migrate a running guest between two processes here and verify it")           \
	X(send, "live-migrate a synthetic guest to a URI (tcp:, unix:, file:, exec:, fd:)")        \
	X(listen, "receive a synthetic guest from `ferry send` and verify every page")             \
	X(sample, "write a savevm v3 stream of the sample devices to a file")                      \
	X(inspect, "decode a savevm v3 stream (ferry's or QEMU's) and print it as JSON")           \
	X(bench, "run a matrix of verified migrations against the fabric's ceiling, with reports")

#define FERRY_CLI_DECLARE_(name, help) int ferry_cmd_##name(int argc, char **argv);
FERRY_CLI_COMMANDS(FERRY_CLI_DECLARE_)
#undef FERRY_CLI_DECLARE_

/* Sizes and rates with K/M/G/T suffixes (binary), e.g. "1G", "100M", "64MiB/s". */
int cli_parse_size(const char *s, uint64_t *out);

/* A migration's statistics as a JSON object (jansson; the caller owns it). */
struct ferry_stats;
struct json_t;
struct json_t *cli_stats_json(const struct ferry_stats *st);

/* Exit statuses shared by every subcommand. */
enum {
	CLI_OK = 0,
	CLI_FAILED = 1, /* the operation failed (a broken stream, an I/O error) */
	CLI_USAGE = 2,	/* bad command line */
};

/* The most bytes read from a pipe or stdin into memory (files are mapped instead). */
#define CLI_MAX_STDIN (1ull << 30)

/* A whole input in memory: a mapped regular file, or a pipe read into a buffer. */
struct cli_input {
	const uint8_t *data;
	size_t len;
	void *map;  /* munmap() this (length len) when set */
	void *heap; /* free() this when set */
};

/*
 * cli_input_open() - map @path, or read it (or stdin for "-") into memory.
 * Prints the reason to stderr on failure. Returns 0 or -1.
 */
int cli_input_open(const char *path, struct cli_input *in);

/* cli_input_close() - release what cli_input_open() took. */
void cli_input_close(struct cli_input *in);

#endif
