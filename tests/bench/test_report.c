/* SPDX-License-Identifier: MIT */
/* bench_report: JSON lines, CSV and Markdown of `ferry bench`, and the gnuplot data. */
#include <criterion/criterion.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

#define MIB (1ull << 20)

/* Three repetitions of one live scenario and one idle run of another. */
static void sample(struct bench_result r[4], struct bench_session *ses)
{
	struct bench_scenario live = {.index = 0,
				      .ram_bytes = 256 * MIB,
				      .dirty_rate = 50 * MIB,
				      .pattern = BENCH_PATTERN_HOT,
				      .transport = BENCH_TR_TCP,
				      .channels = 2,
				      .reg = BENCH_REG_NONE,
				      .page_size = 4096,
				      .downtime_ms = 300,
				      .vcpus = 2};
	struct bench_scenario idle = live;
	const double gbps[3] = {4e9 / 8, 2e9 / 8, 3e9 / 8};

	idle.index = 1;
	idle.dirty_rate = 0;
	idle.vcpus = 0;
	idle.channels = 1;
	memset(r, 0, 4 * sizeof(*r));
	for (int i = 0; i < 3; i++) {
		r[i].sc = live;
		r[i].rep = (uint32_t)i;
		snprintf(r[i].status, sizeof(r[i].status), "completed");
		r[i].verified = true;
		snprintf(r[i].transport_used, sizeof(r[i].transport_used), "tcp-multi");
		r[i].total_ms = 1000 + 100 * i;
		r[i].setup_ms = 5;
		r[i].registration_ms = -1;
		r[i].registration_dst_ms = -1;
		r[i].downtime_ms = 10 + 10 * i; /* 10, 20, 30 */
		r[i].throughput = gbps[i];
		r[i].ceiling = 8e9 / 8;
		r[i].ratio = gbps[i] / r[i].ceiling;
		r[i].rounds = 3;
		r[i].transferred = 300 * MIB;
		r[i].total_ram = 256 * MIB;
		r[i].normal_pages = 70000;
		r[i].zero_pages = 10;
		r[i].normal_bytes = 70000ull * 4096;
		r[i].memcpy_src = 0;
		r[i].memcpy_dst = 12345;
		r[i].dirty_rate_measured = 40 * MIB;
		r[i].cpu_src_s = 0.25;
		r[i].cpu_dst_s = 0.5;
		r[i].n_remaining = 3;
		r[i].remaining[0] = 64 * MIB;
		r[i].remaining[1] = 8 * MIB;
		r[i].remaining[2] = MIB;
	}
	r[3].sc = idle;
	snprintf(r[3].status, sizeof(r[3].status), "failed");
	r[3].verified = false;
	snprintf(r[3].verify_error, sizeof(r[3].verify_error), "page 7: \"bad\", byte 3");
	r[3].registration_ms = 12.5;
	r[3].registration_dst_ms = 7.25;
	snprintf(r[3].registration_used, sizeof(r[3].registration_used), "pin-all");
	snprintf(r[3].fallback_reason, sizeof(r[3].fallback_reason), "no RDMA device");
	snprintf(r[3].tls, sizeof(r[3].tls), "TLS1.3 AES-256-GCM x509");
	memset(ses, 0, sizeof(*ses));
	snprintf(ses->command, sizeof(ses->command), "ferry bench --ram 256M");
	snprintf(ses->mode, sizeof(ses->mode), "local");
	snprintf(ses->host, sizeof(ses->host), "testhost x86_64");
	snprintf(ses->started, sizeof(ses->started), "2026-01-01T00:00:00Z");
	ses->cpus = 2;
	ses->memcpy_bytes_per_s = 4.0 * (1 << 30);
	ses->n_ceilings = 2;
	ses->ceilings[0] = (struct bench_ceiling){BENCH_TR_TCP, 2, 2 * MIB, 8e9 / 8, "tcp streams"};
	ses->ceilings[1] = (struct bench_ceiling){BENCH_TR_TCP, 1, 2 * MIB, 6e9 / 8, "tcp streams"};
}

Test(bench_report, json_has_every_parameter_and_metric)
{
	struct bench_result r[4];
	struct bench_session ses;
	json_t *j, *rem;

	sample(r, &ses);
	j = bench_result_json(&r[1]);
	cr_assert_str_eq(json_string_value(json_object_get(j, "type")), "run");
	cr_assert_eq(json_integer_value(json_object_get(j, "scenario")), 0);
	cr_assert_eq(json_integer_value(json_object_get(j, "rep")), 1);
	cr_assert_str_eq(json_string_value(json_object_get(j, "label")),
			 "256M 50M/s hot tcp ch2 4k dt300");
	cr_assert_eq(json_integer_value(json_object_get(j, "ram_bytes")), 256 * MIB);
	cr_assert_eq(json_integer_value(json_object_get(j, "dirty_rate")), 50 * MIB);
	cr_assert_str_eq(json_string_value(json_object_get(j, "pattern")), "hot");
	cr_assert_str_eq(json_string_value(json_object_get(j, "transport")), "tcp");
	cr_assert_eq(json_integer_value(json_object_get(j, "channels")), 2);
	cr_assert_str_eq(json_string_value(json_object_get(j, "registration")), "-");
	cr_assert_eq(json_integer_value(json_object_get(j, "page_size")), 4096);
	cr_assert_eq(json_integer_value(json_object_get(j, "downtime_limit_ms")), 300);
	cr_assert(json_is_true(json_object_get(j, "verified")));
	cr_assert_str_eq(json_string_value(json_object_get(j, "transport_used")), "tcp-multi");
	cr_assert_float_eq(json_real_value(json_object_get(j, "total_ms")), 1100, 1e-9);
	cr_assert_float_eq(json_real_value(json_object_get(j, "downtime_ms")), 20, 1e-9);
	cr_assert_float_eq(json_real_value(json_object_get(j, "setup_ms")), 5, 1e-9);
	cr_assert(json_is_null(json_object_get(j, "registration_ms")));
	cr_assert(json_is_null(json_object_get(j, "registration_ms_dst")));
	cr_assert_float_eq(json_real_value(json_object_get(j, "throughput_bps")), 2e9 / 8, 1e-3);
	cr_assert_float_eq(json_real_value(json_object_get(j, "ratio")), 0.25, 1e-12);
	cr_assert_eq(json_integer_value(json_object_get(j, "rounds")), 3);
	cr_assert_eq(json_integer_value(json_object_get(j, "normal_pages")), 70000);
	cr_assert_eq(json_integer_value(json_object_get(j, "zero_pages")), 10);
	cr_assert_eq(json_integer_value(json_object_get(j, "memcpy_bytes_dst")), 12345);
	cr_assert_eq(json_integer_value(json_object_get(j, "dirty_rate_measured")), 40 * MIB);
	cr_assert_float_eq(json_real_value(json_object_get(j, "cpu_s_src")), 0.25, 1e-12);
	cr_assert_float_eq(json_real_value(json_object_get(j, "cpu_s_dst")), 0.5, 1e-12);
	rem = json_object_get(j, "remaining");
	cr_assert_eq(json_array_size(rem), 3);
	cr_assert_eq(json_integer_value(json_array_get(rem, 1)), 8 * MIB);
	json_decref(j);
	j = bench_result_json(&r[3]);
	cr_assert_str_eq(json_string_value(json_object_get(j, "pattern")), "idle");
	cr_assert(json_is_false(json_object_get(j, "verified")));
	cr_assert_float_eq(json_real_value(json_object_get(j, "registration_ms")), 12.5, 1e-12);
	cr_assert_float_eq(json_real_value(json_object_get(j, "registration_ms_dst")), 7.25, 1e-12);
	cr_assert_str_eq(json_string_value(json_object_get(j, "registration_used")), "pin-all");
	cr_assert_str_eq(json_string_value(json_object_get(j, "fallback_reason")),
			 "no RDMA device");
	cr_assert_str_eq(json_string_value(json_object_get(j, "tls")), "TLS1.3 AES-256-GCM x509");
	json_decref(j);
	j = bench_session_json(&ses);
	cr_assert_str_eq(json_string_value(json_object_get(j, "type")), "session");
	cr_assert_eq(json_array_size(json_object_get(j, "ceilings")), 2);
	cr_assert_eq(json_integer_value(json_object_get(
			 json_array_get(json_object_get(j, "ceilings"), 0), "streams")),
		     2);
	json_decref(j);
}

/* Split one CSV line honouring quotes; returns the field count. */
static int csv_split(char *line, char **f, int max)
{
	int n = 0;
	char *p = line, *w;

	while (n < max) {
		f[n++] = w = p;
		if (*p == '"') {
			p++;
			for (;;) {
				if (*p == '"' && p[1] == '"') {
					*w++ = '"';
					p += 2;
				} else if (*p == '"') {
					p++;
					break;
				} else {
					*w++ = *p++;
				}
			}
		} else {
			while (*p && *p != ',' && *p != '\n')
				*w++ = *p++;
		}
		if (*p != ',') {
			*w = 0;
			break;
		}
		*w = 0;
		p++;
	}
	return n;
}

Test(bench_report, csv_rows_match_the_header)
{
	struct bench_result r[4];
	struct bench_session ses;
	char *buf = NULL, *hdr, *row, *fh[64], *fr[64];
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	int nh, nr;

	sample(r, &ses);
	bench_csv_header(f);
	bench_csv_row(f, &r[0]);
	bench_csv_row(f, &r[3]);
	fclose(f);
	hdr = strtok(buf, "\n");
	row = strtok(NULL, "\n");
	cr_assert_not_null(row);
	nh = csv_split(hdr, fh, 64);
	nr = csv_split(row, fr, 64);
	cr_assert_eq(nh, 39);
	cr_assert_str_eq(fh[38], "tls");
	cr_assert_eq(nr, nh, "%d fields under %d columns", nr, nh);
	cr_assert_str_eq(fh[0], "scenario");
	cr_assert_str_eq(fh[20], "throughput_bps");
	cr_assert_str_eq(fr[20], "5e+08");
	cr_assert_str_eq(fh[34], "remaining");
	cr_assert_str_eq(fr[34], "67108864;8388608;1048576");
	cr_assert_str_eq(fh[13], "verified");
	cr_assert_str_eq(fr[13], "true");
	cr_assert_str_eq(fr[2], "256M 50M/s hot tcp ch2 4k dt300");
	/* The failed run: its message has a comma and quotes. */
	row = strtok(NULL, "\n");
	cr_assert_not_null(row);
	nr = csv_split(row, fr, 64);
	cr_assert_eq(nr, nh);
	cr_assert_str_eq(fr[13], "false");
	cr_assert_str_eq(fr[14], "page 7: \"bad\", byte 3");
	cr_assert_str_eq(fr[18], "12.5"); /* registration_ms */
	cr_assert_str_eq(fr[34], "");
	cr_assert_str_eq(fh[35], "registration_ms_dst");
	cr_assert_str_eq(fr[35], "7.25");
	cr_assert_str_eq(fr[36], "pin-all");
	cr_assert_str_eq(fr[37], "no RDMA device");
	cr_assert_str_eq(fr[38], "TLS1.3 AES-256-GCM x509");
	free(buf);
}

Test(bench_report, markdown_summarises_each_scenario)
{
	struct bench_result r[4];
	struct bench_session ses;
	const char *plots[] = {"throughput-vs-workers.png"};
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	sample(r, &ses);
	bench_report_markdown(f, &ses, r, 4, plots, 1);
	fclose(f);
	cr_assert(strstr(buf, "- command: `ferry bench --ram 256M`"));
	cr_assert(strstr(buf, "memcpy (one thread, 64 MiB buffers): 4.00 GiB/s"));
	cr_assert(strstr(buf, "- TLS on the main stream and lanes: TLS1.3 AES-256-GCM x509\n"));
	cr_assert(strstr(buf, "| tcp | 2 | 2048 KiB | tcp streams | 8.00 |"), "%s", buf);
	/* Median (min-max) of 4, 2, 3 Gbit/s; ratios 0.5, 0.25, 0.375; downtime 10, 20, 30. */
	cr_assert(strstr(buf,
			 "| 256M 50M/s hot tcp ch2 4k dt300 | 3/3 | **3.00** (2.00-4.00) | "
			 "**0.38** (0.25-0.50) | **1100** (1000-1200) | **20** (10-30) | "
			 "**5** (5-5) | **3** (3-3) | **0.25** (0.25-0.25) | **0.50** (0.50-0.50) "
			 "| **40** (40-40) |"),
		  "%s", buf);
	/* The failed run: counted, not summarised, its reason listed. */
	cr_assert(strstr(buf, "| 256M idle tcp ch1 4k dt300 | 0/1 | - | - |"), "%s", buf);
	cr_assert(strstr(buf, "| 256M idle tcp ch1 4k dt300 | 1 | failed | **no** |"), "%s", buf);
	cr_assert(strstr(buf, "- 256M idle tcp ch1 4k dt300, rep 1: page 7: \"bad\", byte 3"));
	cr_assert(strstr(buf, "| 0.00 / 0.00 | pin-all 12.5 / 7.2 |\n"), "%s", buf);
	cr_assert(strstr(buf, "- 256M idle tcp ch1 4k dt300, rep 1: no rdma: no RDMA device"));
	cr_assert(strstr(buf,
			 "| 256M 50M/s hot tcp ch2 4k dt300 | 2 | completed | yes | tcp-multi | "
			 "2.00 | 0.25 | 1100 | 5 | 20 | 3 | 300 | 70000 / 10 |"),
		  "%s", buf);
	cr_assert(strstr(buf, "![throughput-vs-workers.png](throughput-vs-workers.png)"));
	cr_assert_null(strstr(buf, "interrupted"));
	free(buf);
}

static char *slurp(const char *dir, const char *name)
{
	char path[512], *buf = NULL;
	size_t len = 0;
	FILE *f, *m = open_memstream(&buf, &len);
	int c;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "r");
	cr_assert_not_null(f, "%s missing", path);
	while ((c = fgetc(f)) != EOF)
		fputc(c, m);
	fclose(f);
	fclose(m);
	return buf;
}

Test(bench_report, plot_data_and_scripts)
{
	struct bench_result r[4];
	struct bench_session ses;
	char dir[] = "/tmp/ferry-bench-plots-XXXXXX";
	const char *names[3];
	char *s;
	int n;

	sample(r, &ses);
	cr_assert_not_null(mkdtemp(dir));
	n = bench_plots_write(dir, &ses, r, 4, names, 3);
	s = slurp(dir, "throughput-vs-workers.dat");
	/* The live scenario's median at 2 channels, then the tcp ceiling at every channel count. */
	cr_assert(strstr(s, "# 256M 50M/s hot tcp 4k dt300\n2 3\n"), "%s", s);
	cr_assert(strstr(s, "\n\n\n# ceiling tcp\n1 6\n2 8\n"), "%s", s);
	free(s);
	s = slurp(dir, "throughput-vs-workers.gp");
	cr_assert(strstr(s, "set output 'throughput-vs-workers.png'"));
	cr_assert(strstr(s, "index 1 using 1:2 with linespoints dt 2 pt 6 title 'ceiling tcp'"));
	free(s);
	s = slurp(dir, "downtime-vs-dirty-rate.dat");
	cr_assert(strstr(s, "# 256M hot tcp ch2 4k dt300\n50 20\n"), "%s", s);
	free(s);
	s = slurp(dir, "remaining-per-round.dat");
	cr_assert(strstr(s, "1 64\n2 8\n3 1\n"), "%s", s);
	free(s);
	if (n == -ENOENT) {
		cr_log_warn("gnuplot not installed: the PNGs were not drawn");
	} else {
		cr_assert_eq(n, 3);
		cr_assert_str_eq(names[0], "throughput-vs-workers.png");
		s = slurp(dir, "remaining-per-round.png");
		cr_assert_eq(memcmp(s, "\x89PNG", 4), 0);
		free(s);
	}
	char cmd[600];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	cr_assert_eq(system(cmd), 0);
}
