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
	X(inspect, "decode a savevm v3 stream (ferry's or QEMU's) and print it as JSON")

#define FERRY_CLI_DECLARE_(name, help) int ferry_cmd_##name(int argc, char **argv);
FERRY_CLI_COMMANDS(FERRY_CLI_DECLARE_)
#undef FERRY_CLI_DECLARE_

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
