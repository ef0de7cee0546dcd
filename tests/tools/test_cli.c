/* SPDX-License-Identifier: MIT */
/*
 * The `ferry` binary itself (FERRY_CLI): `ferry inspect` on real streams that
 * Debian's QEMU 7.2 writes at test time (tests/tools/qemu-stream.sh; skipped
 * when QEMU is not installed), and the command-line contract (exit codes,
 * help, version).
 */
#include <criterion/criterion.h>
#include "bench/sample_devices.h"
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define QEMU_STREAM_SH FERRY_SOURCE_DIR "/tests/tools/qemu-stream.sh"

struct cli_run {
	int status; /* exit status, or -1 when killed by a signal or the timeout */
	char *out;  /* stdout, NUL-terminated */
	size_t out_len;
	char *err; /* stderr, NUL-terminated */
};

static char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf;
	long n;

	cr_assert_not_null(f, "%s: %s", path, strerror(errno));
	cr_assert_eq(fseek(f, 0, SEEK_END), 0);
	n = ftell(f);
	cr_assert_geq(n, 0);
	rewind(f);
	buf = malloc((size_t)n + 1);
	cr_assert_not_null(buf);
	cr_assert_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
	buf[n] = '\0';
	fclose(f);
	if (len)
		*len = (size_t)n;
	return buf;
}

/*
 * Run @argv with stdin from @in (NULL: /dev/null), stdout and stderr into
 * files under @dir, for at most @timeout_s seconds.
 */
static void run(const char *dir, const char *const argv[], const char *in, int timeout_s,
		struct cli_run *res)
{
	char out_path[512], err_path[512];
	struct timespec t0, now;
	int wstatus = 0;
	pid_t pid, got;

	snprintf(out_path, sizeof(out_path), "%s/stdout", dir);
	snprintf(err_path, sizeof(err_path), "%s/stderr", dir);
	pid = fork();
	cr_assert_neq(pid, -1);
	if (pid == 0) {
		int i = open(in ? in : "/dev/null", O_RDONLY);
		int o = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		int e = open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

		if (i < 0 || o < 0 || e < 0 || dup2(i, 0) < 0 || dup2(o, 1) < 0 || dup2(e, 2) < 0)
			_exit(126);
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		got = waitpid(pid, &wstatus, WNOHANG);
		if (got == pid)
			break;
		cr_assert_eq(got, 0, "waitpid: %s", strerror(errno));
		clock_gettime(CLOCK_MONOTONIC, &now);
		if (now.tv_sec - t0.tv_sec > timeout_s) {
			kill(pid, SIGKILL);
			waitpid(pid, &wstatus, 0);
			cr_assert_fail("%s did not finish within %d s", argv[0], timeout_s);
		}
		usleep(10000);
	}
	res->status = WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : -1;
	res->out = slurp(out_path, &res->out_len);
	res->err = slurp(err_path, NULL);
}

static void run_free(struct cli_run *res)
{
	free(res->out);
	free(res->err);
}

static char *tmpdir(void)
{
	char tmpl[] = "/tmp/ferry-cli-test.XXXXXX";
	char *d = mkdtemp(tmpl);

	cr_assert_not_null(d, "mkdtemp: %s", strerror(errno));
	return strdup(d);
}

static void rm_rf(const char *dir)
{
	char cmd[600];

	/* Only ever a mkdtemp() directory of ours. */
	if (strncmp(dir, "/tmp/ferry-cli-test.", 20) != 0)
		return;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		cr_log_info("could not remove %s", dir);
}

/* Have QEMU write a stream to @dir/@name; skip the test when QEMU is missing. */
static void qemu_stream(const char *dir, const char *name, const char *variant, char *path,
			size_t size)
{
	const char *argv[] = {"/bin/sh", QEMU_STREAM_SH, path, variant, NULL};
	struct cli_run r;

	snprintf(path, size, "%s/%s", dir, name);
	run(dir, argv, NULL, 120, &r);
	if (r.status == 77) {
		cr_log_info("%s", r.err);
		run_free(&r);
		rm_rf(dir);
		cr_skip_test("qemu-system-x86_64 is not installed (qemu-stream.sh exited 77)");
	}
	cr_assert_eq(r.status, 0, "qemu-stream.sh failed (%d): %s", r.status, r.err);
	run_free(&r);
}

static json_t *parse(const char *text)
{
	json_error_t jerr;
	json_t *j = json_loads(text, 0, &jerr);

	cr_assert_not_null(j, "not JSON: %s", jerr.text);
	return j;
}

static json_t *get(json_t *obj, const char *key)
{
	json_t *v = json_object_get(obj, key);

	cr_assert_not_null(v, "no key '%s'", key);
	return v;
}

static json_int_t get_int(json_t *obj, const char *key)
{
	json_t *v = get(obj, key);

	cr_assert(json_is_integer(v), "'%s' is not an integer", key);
	return json_integer_value(v);
}

static const char *get_str(json_t *obj, const char *key)
{
	json_t *v = get(obj, key);

	cr_assert(json_is_string(v), "'%s' is not a string", key);
	return json_string_value(v);
}

/* The blocks of `-M pc -nodefaults -m 64` (FORMAT.md §8), in MEM_SIZE order. */
static const struct {
	const char *name;
	json_int_t length;
} pc_blocks[] = {
    {"pc.ram", 0x4000000}, {"/rom@etc/acpi/tables", 0x20000}, {"pc.bios", 0x40000},
    {"pc.rom", 0x20000},   {"/rom@etc/table-loader", 0x1000}, {"/rom@etc/acpi/rsdp", 0x1000},
};

#define N_PC_BLOCKS (sizeof(pc_blocks) / sizeof(pc_blocks[0]))

/* What both variants share: the RAM of a paused guest, 30 devices, EOF, vmdesc. */
static void check_qemu_stream(json_t *j, size_t file_size, bool summary)
{
	json_t *ram = get(j, "ram"), *blocks = get(ram, "blocks"), *secs = get(j, "sections");
	json_int_t total = 0;

	cr_assert(json_is_true(get(j, "complete")));
	cr_assert_str_eq(get_str(j, "magic"), "0x5145564d");
	cr_assert_eq(get_int(j, "version"), 3);
	cr_assert_eq(get_int(j, "size"), (json_int_t)file_size);
	cr_assert_str_eq(get_str(get(j, "configuration"), "name"), "pc-i440fx-7.2");
	cr_assert_eq(json_array_size(get(j, "commands")), 0, "exec: has no return path");

	/* The block list, and every page of every block sent exactly once (a paused guest). */
	cr_assert_eq(get_int(ram, "page_size"), 4096);
	cr_assert_eq(json_array_size(blocks), N_PC_BLOCKS);
	for (size_t i = 0; i < N_PC_BLOCKS; i++) {
		json_t *b = json_array_get(blocks, i), *pages = get(b, "pages");

		cr_assert_str_eq(get_str(b, "name"), pc_blocks[i].name);
		cr_assert_eq(get_int(b, "length"), pc_blocks[i].length, "%s", pc_blocks[i].name);
		cr_assert_eq(get_int(pages, "page") + get_int(pages, "zero"),
			     pc_blocks[i].length / 4096, "%s: %lld + %lld pages", pc_blocks[i].name,
			     (long long)get_int(pages, "page"), (long long)get_int(pages, "zero"));
		total += pc_blocks[i].length;
	}
	cr_assert_eq(get_int(ram, "total_bytes"), 0x4082000);
	cr_assert_eq(total, 0x4082000);
	json_t *counts = get(ram, "counts");
	cr_assert_eq(get_int(counts, "page") + get_int(counts, "zero"), total / 4096);
	cr_assert_gt(get_int(counts, "page"), 0, "the BIOS and ROMs hold data");
	/* Everything except the 64 MiB of never-touched RAM is mostly zero pages too. */
	cr_assert_gt(get_int(counts, "zero"), 0x4000000 / 4096 - 1);
	cr_assert_eq(get_int(counts, "xbzrle"), 0);
	cr_assert_eq(get_int(counts, "compressed"), 0);
	cr_assert_eq(get_int(counts, "mem_size"), 1);

	/* Sections: RAM START, PART..., END; then 30 FULL device sections. */
	size_t n = json_array_size(secs), nfull = 0, first_full = 0;
	cr_assert_str_eq(get_str(json_array_get(secs, 0), "type"), "START");
	cr_assert_str_eq(get_str(json_array_get(secs, 0), "idstr"), "ram");
	cr_assert_eq(get_int(json_array_get(secs, 0), "version"), 4);
	for (size_t i = 0; i < n; i++) {
		json_t *s = json_array_get(secs, i);
		const char *type = get_str(s, "type");

		cr_assert_eq(get_int(s, "footer_offset"),
			     get_int(s, "payload_offset") + get_int(s, "payload_size"));
		if (strcmp(type, "FULL") != 0) {
			cr_assert_eq(nfull, 0, "iterative section after the devices");
			cr_assert_str_eq(get_str(s, "idstr"), "ram");
			get(s, "ram");
			continue;
		}
		if (nfull++ == 0) {
			first_full = i;
			cr_assert_str_eq(get_str(json_array_get(secs, i - 1), "type"), "END");
		}
		/* Every device decoded, field by field. */
		if (!summary) {
			cr_assert(json_array_size(get(s, "fields")) > 0, "%s has no fields",
				  get_str(s, "idstr"));
			get_str(s, "vmsd_name");
		} else {
			cr_assert_null(json_object_get(s, "fields"));
		}
	}
	cr_assert_eq(nfull, 30);
	cr_assert_str_eq(get_str(json_array_get(secs, first_full), "idstr"), "timer");
	cr_assert_str_eq(get_str(json_array_get(secs, n - 1), "idstr"), "globalstate");

	/* EOF right before the vmdesc, which runs to the end of the file. */
	json_t *vmdesc = get(j, "vmdesc");
	cr_assert_eq(get_int(vmdesc, "devices"), 30);
	cr_assert_eq(get_int(vmdesc, "page_size"), 4096);
	cr_assert_eq(get_int(get(j, "eof"), "offset") + 1, get_int(vmdesc, "offset"));
	cr_assert_eq(get_int(vmdesc, "offset") + 5 + get_int(vmdesc, "size"),
		     (json_int_t)file_size);
	cr_assert_eq(json_array_size(get(j, "warnings")), 0);
}

/* The named FULL section. */
static json_t *section(json_t *j, const char *idstr)
{
	json_t *secs = get(j, "sections"), *s;
	size_t i;

	json_array_foreach(secs, i, s)
	{
		if (strcmp(get_str(s, "idstr"), idstr) == 0 &&
		    strcmp(get_str(s, "type"), "FULL") == 0)
			return s;
	}
	cr_assert_fail("no FULL section '%s'", idstr);
	return NULL;
}

static json_t *field(json_t *s, const char *name)
{
	json_t *fields = get(s, "fields"), *f;
	size_t i;

	json_array_foreach(fields, i, f)
	{
		if (strcmp(get_str(f, "name"), name) == 0)
			return f;
	}
	cr_assert_fail("no field '%s'", name);
	return NULL;
}

Test(tools_inspect, qemu_stream_decodes, .timeout = 300)
{
	char *dir = tmpdir(), path[600];
	const char *argv[] = {FERRY_CLI, "inspect", path, NULL};
	struct cli_run r;
	struct stat st;

	qemu_stream(dir, "plain.bin", "plain", path, sizeof(path));
	cr_assert_eq(stat(path, &st), 0);
	run(dir, argv, NULL, 60, &r);
	cr_assert_eq(r.status, 0, "exit %d: %s", r.status, r.err);
	cr_assert_str_empty(r.err);
	json_t *j = parse(r.out);

	check_qemu_stream(j, (size_t)st.st_size, false);
	cr_assert_null(json_object_get(get(j, "configuration"), "uuid"));
	cr_assert_null(json_object_get(get(j, "configuration"), "capabilities"));
	/* A guest stopped by -S before its first instruction: the x86 reset state. */
	json_t *cpu = section(j, "cpu");
	cr_assert_eq(get_int(field(cpu, "env.eip"), "value"), 0xfff0);
	cr_assert_eq(get_int(cpu, "version"), 12);
	json_t *timer = section(j, "timer");
	cr_assert_eq(get_int(timer, "section_id"), 0);
	cr_assert_str_eq(get_str(field(timer, "unused"), "type"), "unused_buffer");
	cr_assert_str_eq(get_str(field(timer, "unused"), "value"), "0000000000000000");
	json_t *fw = section(j, "fw_cfg");
	cr_assert_str_eq(get_str(json_array_get(get(fw, "subsections"), 0), "name"), "fw_cfg/dma");
	json_decref(j);
	run_free(&r);
	rm_rf(dir);
	free(dir);
}

Test(tools_inspect, qemu_stream_with_uuid_and_capabilities, .timeout = 300)
{
	char *dir = tmpdir(), path[600];
	const char *argv[] = {FERRY_CLI, "inspect", path, NULL};
	struct cli_run r;
	struct stat st;

	qemu_stream(dir, "uuid.bin", "uuid", path, sizeof(path));
	cr_assert_eq(stat(path, &st), 0);
	run(dir, argv, NULL, 60, &r);
	cr_assert_eq(r.status, 0, "exit %d: %s", r.status, r.err);
	json_t *j = parse(r.out), *cfg = get(j, "configuration");

	check_qemu_stream(j, (size_t)st.st_size, false);
	cr_assert_eq(json_array_size(get(cfg, "capabilities")), 1);
	cr_assert_str_eq(json_string_value(json_array_get(get(cfg, "capabilities"), 0)),
			 "x-ignore-shared");
	cr_assert_str_eq(get_str(cfg, "uuid"), "6e0a1c3d-5b2f-4c8e-9a71-d4f3b2e1c0a9");
	/* x-ignore-shared: each block also carries its guest-physical address. */
	json_t *blocks = get(get(j, "ram"), "blocks");
	cr_assert_eq(get_int(json_array_get(blocks, 0), "gpa"), 0);	     /* pc.ram */
	cr_assert_eq(get_int(json_array_get(blocks, 2), "gpa"), 0xfffc0000); /* pc.bios */
	cr_assert_eq(get_int(json_array_get(blocks, 3), "gpa"), 0xc0000);    /* pc.rom */
	json_decref(j);
	run_free(&r);
	rm_rf(dir);
	free(dir);
}

Test(tools_inspect, summary_desc_and_stdin, .timeout = 300)
{
	char *dir = tmpdir(), path[600];
	struct cli_run r, r2;
	struct stat st;

	qemu_stream(dir, "plain.bin", "plain", path, sizeof(path));
	cr_assert_eq(stat(path, &st), 0);

	const char *summary[] = {FERRY_CLI, "inspect", "--summary", path, NULL};
	run(dir, summary, NULL, 60, &r);
	cr_assert_eq(r.status, 0, "exit %d: %s", r.status, r.err);
	json_t *j = parse(r.out);
	check_qemu_stream(j, (size_t)st.st_size, true);
	json_decref(j);
	run_free(&r);

	const char *desc[] = {FERRY_CLI, "inspect", "--desc", path, NULL};
	run(dir, desc, NULL, 60, &r);
	cr_assert_eq(r.status, 0, "exit %d: %s", r.status, r.err);
	j = parse(r.out);
	cr_assert_eq(get_int(j, "page_size"), 4096);
	cr_assert_eq(json_array_size(get(j, "devices")), 30);
	cr_assert_str_eq(get_str(json_array_get(get(j, "devices"), 0), "name"), "timer");
	cr_assert_null(json_object_get(j, "configuration"),
		       "7.2 has no configuration in the vmdesc");
	json_decref(j);
	run_free(&r);

	/* stdin gives the same JSON as the file. */
	const char *file[] = {FERRY_CLI, "inspect", "--compact", path, NULL};
	const char *in[] = {FERRY_CLI, "inspect", "--compact", "-", NULL};
	run(dir, file, NULL, 60, &r);
	run(dir, in, path, 60, &r2);
	cr_assert_eq(r.status, 0);
	cr_assert_eq(r2.status, 0, "exit %d: %s", r2.status, r2.err);
	cr_assert_str_eq(r.out, r2.out);
	cr_assert_eq(strchr(r.out, '\n'), r.out + r.out_len - 1, "--compact is one line");
	run_free(&r);
	run_free(&r2);
	rm_rf(dir);
	free(dir);
}

Test(tools_inspect, truncated_qemu_stream_fails_with_offset, .timeout = 300)
{
	char *dir = tmpdir(), path[600], cut[700];
	const char *argv[] = {FERRY_CLI, "inspect", cut, NULL};
	struct cli_run r;
	size_t len;

	qemu_stream(dir, "plain.bin", "plain", path, sizeof(path));
	char *data = slurp(path, &len);
	/* Inside the RAM pages, inside the device sections, and inside the vmdesc. */
	const size_t cuts[] = {len / 3, len - 100000, len - 10};
	for (size_t i = 0; i < sizeof(cuts) / sizeof(cuts[0]); i++) {
		snprintf(cut, sizeof(cut), "%s/cut%zu.bin", dir, i);
		FILE *f = fopen(cut, "wb");
		cr_assert_not_null(f);
		cr_assert_eq(fwrite(data, 1, cuts[i], f), cuts[i]);
		fclose(f);
		run(dir, argv, NULL, 60, &r);
		cr_assert_eq(r.status, 1, "cut at %zu: exit %d", cuts[i], r.status);
		cr_assert_not_null(strstr(r.err, "offset "), "cut at %zu: %s", cuts[i], r.err);
		json_t *j = parse(r.out);
		cr_assert(json_is_false(get(j, "complete")));
		cr_assert_leq(get_int(get(j, "error"), "offset"), (json_int_t)cuts[i]);
		/* What came before the damage is still decoded. */
		cr_assert_str_eq(get_str(get(j, "configuration"), "name"), "pc-i440fx-7.2");
		cr_assert_gt(json_array_size(get(j, "sections")), 0);
		json_decref(j);
		run_free(&r);
	}
	free(data);
	rm_rf(dir);
	free(dir);
}

Test(tools_inspect, ferry_written_stream, .timeout = 120)
{
	char *dir = tmpdir(), path[600];
	struct cli_run r;
	struct bench_devices d;
	const char *sample[] = {FERRY_CLI, "sample", path, NULL};
	const char *argv[] = {FERRY_CLI, "inspect", path, NULL};

	/* The sample devices, written by ferry_save_snapshot() through the CLI. */
	snprintf(path, sizeof(path), "%s/sample.qevm", dir);
	run(dir, sample, NULL, 30, &r);
	cr_assert_eq(r.status, 0, "ferry sample: %s", r.err);
	run_free(&r);
	run(dir, argv, NULL, 30, &r);
	cr_assert_eq(r.status, 0, "inspect: %s", r.err);
	json_t *j = parse(r.out);
	cr_assert(json_is_true(get(j, "complete")));
	cr_assert_str_eq(get_str(get(j, "configuration"), "name"), "ferry-sample");
	/* Priority order: the clock (APIC priority) before the default-priority devices. */
	json_t *secs = get(j, "sections");
	cr_assert_eq(json_array_size(secs), 3);
	cr_assert_str_eq(get_str(json_array_get(secs, 0), "idstr"), "clock");
	cr_assert_str_eq(get_str(json_array_get(secs, 1), "idstr"), "serial");
	cr_assert_str_eq(get_str(json_array_get(secs, 2), "idstr"), "0000:00:04.0/vdev");
	/* Field values decoded through ferry's own vmdesc equal what was saved. */
	bench_devices_fill(&d, 42);
	json_t *serial = section(j, "serial");
	cr_assert_eq(get_int(field(serial, "lsr"), "value"), d.uart.lsr);
	cr_assert_eq(get_int(field(serial, "divider"), "value"), d.uart.divider);
	json_t *vdev = section(j, "0000:00:04.0/vdev");
	cr_assert_eq(get_int(field(vdev, "nvq"), "value"), d.vdev.nvq);
	cr_assert_eq(json_array_size(get(vdev, "subsections")), 2);
	json_decref(j);
	run_free(&r);

	/* A live migration's stream to a file: RAM records and the devices decode. */
	const char *send[] = {FERRY_CLI, "send",	 NULL, "--ram",	  "16M", "--vcpus",
			      "1",	 "--dirty-rate", "8M", "--quiet", NULL};
	char uri[700];
	snprintf(uri, sizeof(uri), "file:%s/live.qevm", dir);
	send[2] = uri;
	run(dir, send, NULL, 60, &r);
	cr_assert_eq(r.status, 0, "ferry send: %s", r.err);
	run_free(&r);
	snprintf(path, sizeof(path), "%s/live.qevm", dir);
	run(dir, argv, NULL, 60, &r);
	cr_assert_eq(r.status, 0, "inspect: %s", r.err);
	j = parse(r.out);
	cr_assert(json_is_true(get(j, "complete")));
	cr_assert_str_eq(get_str(json_array_get(get(j, "sections"), 0), "idstr"), "ram");
	json_decref(j);
	run_free(&r);
	rm_rf(dir);
	free(dir);
}

/* ---- the command-line contract ------------------------------------------------------- */

static int cli(const char *dir, const char *const argv[], struct cli_run *r)
{
	run(dir, argv, NULL, 30, r);
	return r->status;
}

Test(tools_cli, help_version_and_usage_errors)
{
	char *dir = tmpdir();
	struct cli_run r;

	const char *version[] = {FERRY_CLI, "--version", NULL};
	cr_assert_eq(cli(dir, version, &r), 0);
	cr_assert(strncmp(r.out, "ferry ", 6) == 0, "%s", r.out);
	run_free(&r);

	const char *help[] = {FERRY_CLI, "help", NULL};
	cr_assert_eq(cli(dir, help, &r), 0);
	cr_assert_not_null(strstr(r.out, "inspect"));
	run_free(&r);

	const char *help_inspect[] = {FERRY_CLI, "help", "inspect", NULL};
	cr_assert_eq(cli(dir, help_inspect, &r), 0);
	cr_assert_not_null(strstr(r.out, "usage: ferry inspect"));
	run_free(&r);

	const char *inspect_help[] = {FERRY_CLI, "inspect", "--help", NULL};
	cr_assert_eq(cli(dir, inspect_help, &r), 0);
	cr_assert_not_null(strstr(r.out, "--desc"));
	run_free(&r);

	const char *none[] = {FERRY_CLI, NULL};
	cr_assert_eq(cli(dir, none, &r), 2);
	cr_assert_not_null(strstr(r.err, "usage"));
	run_free(&r);

	const char *unknown[] = {FERRY_CLI, "frobnicate", NULL};
	cr_assert_eq(cli(dir, unknown, &r), 2);
	cr_assert_not_null(strstr(r.err, "unknown command 'frobnicate'"));
	run_free(&r);

	const char *no_file[] = {FERRY_CLI, "inspect", NULL};
	cr_assert_eq(cli(dir, no_file, &r), 2);
	run_free(&r);

	const char *bad_opt[] = {FERRY_CLI, "inspect", "--bogus", "x", NULL};
	cr_assert_eq(cli(dir, bad_opt, &r), 2);
	run_free(&r);

	const char *missing[] = {FERRY_CLI, "inspect", "/nonexistent/stream", NULL};
	cr_assert_eq(cli(dir, missing, &r), 1);
	cr_assert_not_null(strstr(r.err, "No such file"));
	run_free(&r);

	rm_rf(dir);
	free(dir);
}

Test(tools_cli, inspect_of_garbage_exits_1_with_json)
{
	char *dir = tmpdir(), path[600];
	const char *argv[] = {FERRY_CLI, "inspect", path, NULL};
	struct cli_run r;

	snprintf(path, sizeof(path), "%s/garbage", dir);
	FILE *f = fopen(path, "wb");
	cr_assert_not_null(f);
	fputs("not a migration stream", f);
	fclose(f);
	run(dir, argv, NULL, 30, &r);
	cr_assert_eq(r.status, 1);
	cr_assert_not_null(strstr(r.err, "offset 0: expected magic 0x5145564d"), "%s", r.err);
	json_t *j = parse(r.out);
	cr_assert_str_eq(get_str(get(j, "error"), "code"), "EBADMAGIC");
	json_decref(j);
	run_free(&r);
	rm_rf(dir);
	free(dir);
}
