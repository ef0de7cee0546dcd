/* SPDX-License-Identifier: MIT */
/*
 * `ferry`: the command line front end of libferry. It dispatches to the
 * subcommands listed in cli.h; the logic lives in the library.
 */
#include <stdio.h>
#include <string.h>

#include <ferry/log.h>
#include <ferry/version.h>

#include "cli.h"

struct cli_cmd {
	const char *name;
	int (*fn)(int argc, char **argv);
	const char *help;
};

static const struct cli_cmd cli_cmds[] = {
#define FERRY_CLI_ENTRY_(name, help) {#name, ferry_cmd_##name, help},
    FERRY_CLI_COMMANDS(FERRY_CLI_ENTRY_)
#undef FERRY_CLI_ENTRY_
};

#define CLI_NCMDS (sizeof(cli_cmds) / sizeof(cli_cmds[0]))

static const struct cli_cmd *cli_find(const char *name)
{
	for (size_t i = 0; i < CLI_NCMDS; i++)
		if (strcmp(cli_cmds[i].name, name) == 0)
			return &cli_cmds[i];
	return NULL;
}

static void cli_usage(FILE *out)
{
	fprintf(out, "usage: ferry <command> [options] [args]\n"
		     "       ferry help [command]\n"
		     "       ferry --version\n\ncommands:\n");
	for (size_t i = 0; i < CLI_NCMDS; i++)
		fprintf(out, "  %-10s %s\n", cli_cmds[i].name, cli_cmds[i].help);
	fprintf(out, "  %-10s %s\n", "help", "list the commands, or show one's options");
	fprintf(out, "\n`ferry <command> --help` shows a command's options.\n");
}

/* `ferry help [command]`: the list, or the command's own --help. */
static int cli_help(int argc, char **argv)
{
	const struct cli_cmd *cmd;

	if (argc < 2) {
		cli_usage(stdout);
		return CLI_OK;
	}
	cmd = cli_find(argv[1]);
	if (!cmd) {
		fprintf(stderr, "ferry: unknown command '%s'\n", argv[1]);
		cli_usage(stderr);
		return CLI_USAGE;
	}
	char help_opt[] = "--help";
	char *sub[] = {argv[1], help_opt, NULL};
	return cmd->fn(2, sub);
}

int main(int argc, char **argv)
{
	const struct cli_cmd *cmd;

	ferry_set_log(ferry_log_stderr, NULL, FERRY_LOG_WARN);
	if (argc < 2) {
		cli_usage(stderr);
		return CLI_USAGE;
	}
	if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "-V") == 0) {
		printf("ferry %s\n", ferry_version_string());
		return CLI_OK;
	}
	if (strcmp(argv[1], "help") == 0 || strcmp(argv[1], "--help") == 0 ||
	    strcmp(argv[1], "-h") == 0)
		return cli_help(argc - 1, argv + 1);
	cmd = cli_find(argv[1]);
	if (!cmd) {
		fprintf(stderr, "ferry: unknown command '%s'\n", argv[1]);
		cli_usage(stderr);
		return CLI_USAGE;
	}
	return cmd->fn(argc - 1, argv + 1);
}
