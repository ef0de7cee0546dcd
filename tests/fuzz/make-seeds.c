/* SPDX-License-Identifier: MIT */
/*
 * make-seeds: write the seed corpora of the fuzz targets, valid streams made
 * by the library's own writer, so each fuzzer starts from inputs that reach
 * deep into the loader instead of dying at the magic.
 *
 *   make-seeds <dir>     writes <dir>/fuzz_load/ and <dir>/fuzz_stream/
 *                        (created if missing); fuzz_inspect starts from
 *                        the fuzz_load seeds, which are streams too
 *
 * The output is deterministic; the committed seeds under tests/fuzz/corpus/
 * are its output (regenerate them after a format change). Each seed is
 * checked by loading it back before it is written.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ferry/error.h>
#include <ferry/savevm.h>
#include <ferry/stream.h>

#include "fuzz_devices.h"

/* What fuzz_load configures when a stream carries capabilities. */
static const char *const fuzz_caps[] = {"x-ferry-fuzz"};
static const uint8_t fuzz_uuid[16] = {0xf0, 0x0d, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14};

static int write_file(const char *dir, const char *sub, const char *name, const void *p, size_t len)
{
	char path[4096];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, sub);
	if (mkdir(path, 0755) < 0 && errno != EEXIST) {
		perror(path);
		return -1;
	}
	snprintf(path, sizeof(path), "%s/%s/%s", dir, sub, name);
	f = fopen(path, "wb");
	if (!f || fwrite(p, 1, len, f) != len || fclose(f) != 0) {
		perror(path);
		return -1;
	}
	printf("%s (%zu bytes)\n", path, len);
	return 0;
}

/*
 * One whole stream of the fuzz devices, built step by step so it can carry
 * COMMAND records and several PARTs. @full adds capabilities, a UUID and the
 * vmdesc.
 */
static int make_stream(uint32_t seed, bool full, uint8_t **out, size_t *outlen)
{
	static struct fz_devices d;
	struct ferry_stream_config cfg = {.machine = "ferry-fuzz", .page_size = 4096};
	struct ferry_devices *reg = NULL;
	struct ferry_writer *w = NULL;
	const uint8_t *p;
	int ret;

	if (full) {
		cfg.capabilities = fuzz_caps;
		cfg.ncaps = 1;
		cfg.uuid = fuzz_uuid;
		cfg.send_vmdesc = true;
	}
	fz_devices_init(&d, seed);
	ret = ferry_devices_create(&reg);
	/* The bare stream leaves the suites' devices out: absent sections are fine. */
	if (!ret)
		ret = fz_devices_register(&d, reg, full);
	if (!ret)
		ret = ferry_writer_create_mem(0, &w);
	if (!ret)
		ret = ferry_save_begin(w, &cfg);
	if (!ret && full) {
		const uint8_t ping[4] = {0, 0, 0, 42};

		ret = ferry_save_command(w, FERRY_CMD_OPEN_RETURN_PATH, NULL, 0);
		if (!ret)
			ret = ferry_save_command(w, FERRY_CMD_PING, ping, sizeof(ping));
	}
	if (!ret)
		ret = ferry_save_setup(w, reg);
	while (!ret) {
		ret = ferry_save_iterate(w, reg);
		if (ret == 1) {
			ret = 0;
			break;
		}
	}
	if (!ret)
		ret = ferry_save_complete(w, reg, &cfg);
	if (!ret) {
		p = ferry_writer_mem_data(w, outlen);
		*out = malloc(*outlen);
		if (*out)
			memcpy(*out, p, *outlen);
		else
			ret = -ENOMEM;
	}
	ferry_writer_destroy(w);
	ferry_devices_destroy(reg);
	return ret;
}

/* The stream `ferry sample` writes: the bench devices alone. */
static int make_sample(uint8_t **out, size_t *outlen)
{
	static struct bench_devices b;
	char path[] = "/tmp/ferry-seed-XXXXXX";
	int fd = mkstemp(path);
	int ret;
	FILE *f;
	long n;

	if (fd < 0)
		return -errno;
	unlink(path);
	bench_devices_fill(&b, 7);
	ret = bench_write_sample_stream(fd, &b);
	f = fdopen(fd, "rb");
	if (!f) {
		close(fd);
		return -errno;
	}
	if (!ret && (fseek(f, 0, SEEK_END) < 0 || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) < 0))
		ret = -EIO;
	if (!ret) {
		*outlen = (size_t)n;
		*out = malloc(*outlen);
		if (!*out || fread(*out, 1, *outlen, f) != *outlen)
			ret = -EIO;
	}
	fclose(f);
	return ret;
}

/* Load @p back the way fuzz_load does; a seed that does not load is a bug here. */
static int check_loads(const uint8_t *p, size_t len, bool full)
{
	static struct fz_devices d;
	struct ferry_load_config cfg = {0};
	struct ferry_devices *reg = NULL;
	struct ferry_reader *r = NULL;
	int ret;

	if (full) {
		cfg.capabilities = fuzz_caps;
		cfg.ncaps = 1;
		cfg.uuid = fuzz_uuid;
	}
	fz_devices_init(&d, 0);
	ret = ferry_devices_create(&reg);
	if (!ret)
		ret = fz_devices_register(&d, reg, true);
	if (!ret)
		ret = ferry_reader_create_mem(p, len, &r);
	if (!ret) {
		ret = ferry_load(r, reg, &cfg);
		if (ret)
			fprintf(stderr, "seed does not load: %s\n", ferry_reader_errmsg(r));
	}
	ferry_reader_destroy(r);
	ferry_devices_destroy(reg);
	return ret;
}

/*
 * fuzz_stream seeds: byte 0 the program length, the program, then the
 * stream. Programs that walk a real stream's header with each primitive.
 */
static int stream_seeds(const char *dir, const uint8_t *s, size_t slen)
{
	/* be32 magic, be32 version, u8 type, be32 machine length, buffer 16, cstr... */
	static const uint8_t walk[] = {0x02, 0x02, 0x00, 0x02, 0x14, 0x00, 0x05, 0x07,
				       0x08, 0x10, 0x09, 0x01, 0x03, 0x06, 0x20, 0x0b};
	/* Every primitive, with odd chunk sizes from the same bytes. */
	static const uint8_t all[] = {0x00, 0x01, 0x02, 0x03, 0x34, 0x02, 0x05, 0x16,
				      0x03, 0x07, 0xf8, 0x40, 0x09, 0x0b, 0x00, 0x46,
				      0x01, 0x03, 0x0a, 0xee, 0x00, 0x01};
	uint8_t buf[1024];
	size_t n;

	if (slen > sizeof(buf) - 1 - sizeof(all))
		slen = sizeof(buf) - 1 - sizeof(all);

	buf[0] = sizeof(walk);
	memcpy(buf + 1, walk, sizeof(walk));
	n = slen < 200 ? slen : 200;
	memcpy(buf + 1 + sizeof(walk), s, n);
	if (write_file(dir, "fuzz_stream", "walk-header", buf, 1 + sizeof(walk) + n) < 0)
		return -1;

	buf[0] = sizeof(all);
	memcpy(buf + 1, all, sizeof(all));
	n = slen < 600 ? slen : 600;
	memcpy(buf + 1 + sizeof(all), s, n);
	if (write_file(dir, "fuzz_stream", "all-ops", buf, 1 + sizeof(all) + n) < 0)
		return -1;

	/* No program: the reader is created and destroyed over a short stream. */
	buf[0] = 0;
	memcpy(buf + 1, s, 16);
	return write_file(dir, "fuzz_stream", "empty-program", buf, 17);
}

int main(int argc, char **argv)
{
	uint8_t *full = NULL, *bare = NULL, *sample = NULL;
	size_t full_len = 0, bare_len = 0, sample_len = 0;
	int ret = 1;

	if (argc != 2) {
		fprintf(stderr, "usage: %s <corpus-dir>\n", argv[0]);
		return 2;
	}
	if (mkdir(argv[1], 0755) < 0 && errno != EEXIST) {
		perror(argv[1]);
		return 1;
	}
	/*
	 * Seed 2: every device, one PART, extra subsection on, gated field off;
	 * 5: not the suites' devices, several PARTs, the opposite, no vmdesc.
	 */
	if (make_stream(2, true, &full, &full_len) < 0 ||
	    make_stream(5, false, &bare, &bare_len) < 0 || make_sample(&sample, &sample_len) < 0) {
		fprintf(stderr, "cannot write the seed streams\n");
		goto out;
	}
	if (check_loads(full, full_len, true) || check_loads(bare, bare_len, false) ||
	    check_loads(sample, sample_len, false))
		goto out;
	if (write_file(argv[1], "fuzz_load", "full.qevm", full, full_len) ||
	    write_file(argv[1], "fuzz_load", "bare.qevm", bare, bare_len) ||
	    write_file(argv[1], "fuzz_load", "sample.qevm", sample, sample_len) ||
	    stream_seeds(argv[1], full, full_len))
		goto out;
	ret = 0;
out:
	free(full);
	free(bare);
	free(sample);
	return ret;
}
