/* SPDX-License-Identifier: MIT */
/* Reading a subcommand's input file, or stdin, into memory. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"

/* A pipe (or any file that cannot be mapped), read with a bound. */
static int input_read_all(int fd, const char *name, struct cli_input *in)
{
	size_t cap = 1 << 16, len = 0;
	uint8_t *buf = malloc(cap);

	if (!buf) {
		fprintf(stderr, "ferry: %s: out of memory\n", name);
		return -1;
	}
	for (;;) {
		if (len == cap) {
			if (cap >= CLI_MAX_STDIN) {
				fprintf(stderr,
					"ferry: %s: more than %llu MiB; save it to a file and "
					"give the file instead\n",
					name, CLI_MAX_STDIN >> 20);
				free(buf);
				return -1;
			}
			size_t ncap = cap * 2 > CLI_MAX_STDIN ? CLI_MAX_STDIN : cap * 2;
			uint8_t *nbuf = realloc(buf, ncap + 1);

			if (!nbuf) {
				fprintf(stderr, "ferry: %s: out of memory\n", name);
				free(buf);
				return -1;
			}
			buf = nbuf;
			cap = ncap;
		}
		ssize_t n = read(fd, buf + len, cap - len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			fprintf(stderr, "ferry: %s: %s\n", name, strerror(errno));
			free(buf);
			return -1;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	in->data = buf;
	in->len = len;
	in->heap = buf;
	return 0;
}

int cli_input_open(const char *path, struct cli_input *in)
{
	struct stat st;
	int fd, ret;

	memset(in, 0, sizeof(*in));
	if (strcmp(path, "-") == 0)
		return input_read_all(STDIN_FILENO, "stdin", in);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		fprintf(stderr, "ferry: %s: %s\n", path, strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) < 0) {
		fprintf(stderr, "ferry: %s: %s\n", path, strerror(errno));
		close(fd);
		return -1;
	}
	if (S_ISDIR(st.st_mode)) {
		fprintf(stderr, "ferry: %s: is a directory\n", path);
		close(fd);
		return -1;
	}
	if (S_ISREG(st.st_mode) && st.st_size > 0 && (uint64_t)st.st_size <= SIZE_MAX) {
		void *map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);

		if (map != MAP_FAILED) {
			close(fd);
			in->map = map;
			in->data = map;
			in->len = (size_t)st.st_size;
			return 0;
		}
	}
	ret = input_read_all(fd, path, in);
	close(fd);
	return ret;
}

void cli_input_close(struct cli_input *in)
{
	if (in->map)
		munmap(in->map, in->len);
	free(in->heap);
	memset(in, 0, sizeof(*in));
}
