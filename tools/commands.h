/* SPDX-License-Identifier: MIT */
/* Subcommands of the ferry CLI, one function each: (argc, argv) with argv[0] the command name. */
#ifndef FERRY_TOOLS_COMMANDS_H
#define FERRY_TOOLS_COMMANDS_H

#include <jansson.h>
#include <stdint.h>

#include <ferry/engine.h>

int cmd_send(int argc, char **argv);
int cmd_listen(int argc, char **argv);
int cmd_sample(int argc, char **argv);

/* Helpers shared by commands. */
int cli_parse_size(const char *s, uint64_t *out);
json_t *cli_stats_json(const struct ferry_stats *st);

#endif
