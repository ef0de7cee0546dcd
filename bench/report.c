/* SPDX-License-Identifier: MIT */
/*
 * What `ferry bench` writes: one JSON line and one CSV row per run (the same
 * columns, so a spreadsheet and jq see the same thing), a Markdown report
 * with each scenario's median, minimum and maximum, and gnuplot data and
 * scripts for three plots.
 */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

/* The columns, in order: JSON keys and CSV header alike. */
static const char *const columns[] = {
    "scenario",
    "rep",
    "label",
    "ram_bytes",
    "dirty_rate",
    "pattern",
    "transport",
    "channels",
    "registration",
    "page_size",
    "downtime_limit_ms",
    "vcpus",
    "status",
    "verified",
    "verify_error",
    "transport_used",
    "total_ms",
    "setup_ms",
    "registration_ms",
    "downtime_ms",
    "throughput_bps",
    "rounds",
    "transferred",
    "total_ram",
    "normal_pages",
    "zero_pages",
    "normal_bytes",
    "memcpy_bytes_src",
    "memcpy_bytes_dst",
    "dirty_rate_measured",
    "cpu_s_src",
    "cpu_s_dst",
    "ceiling_bps",
    "ratio",
    "remaining",
    "registration_ms_dst",
    "registration_used",
    "fallback_reason",
    "tls",
};

#define NCOLS (sizeof(columns) / sizeof(columns[0]))

static json_t *u64(uint64_t v)
{
	return json_integer((json_int_t)v);
}

json_t *bench_result_json(const struct bench_result *r)
{
	const struct bench_scenario *sc = &r->sc;
	json_t *o = json_object(), *rem = json_array();
	char label[128];

	bench_scenario_label(sc, label, sizeof(label));
	json_object_set_new(o, "scenario", u64(sc->index));
	json_object_set_new(o, "rep", u64(r->rep));
	json_object_set_new(o, "label", json_string(label));
	json_object_set_new(o, "ram_bytes", u64(sc->ram_bytes));
	json_object_set_new(o, "dirty_rate", u64(sc->dirty_rate));
	json_object_set_new(o, "pattern",
			    json_string(sc->dirty_rate ? bench_pattern_name(sc->pattern) : "idle"));
	json_object_set_new(o, "transport", json_string(bench_transport_name(sc->transport)));
	json_object_set_new(o, "channels", u64(sc->channels));
	json_object_set_new(o, "registration", json_string(bench_reg_name(sc->reg)));
	json_object_set_new(o, "page_size", u64(sc->page_size));
	json_object_set_new(o, "downtime_limit_ms", u64(sc->downtime_ms));
	json_object_set_new(o, "vcpus", u64(sc->vcpus));
	json_object_set_new(o, "status", json_string(r->status));
	json_object_set_new(o, "verified", json_boolean(r->verified));
	json_object_set_new(o, "verify_error", json_string(r->verify_error));
	json_object_set_new(o, "transport_used", json_string(r->transport_used));
	json_object_set_new(o, "total_ms", json_real(r->total_ms));
	json_object_set_new(o, "setup_ms", json_real(r->setup_ms));
	json_object_set_new(o, "registration_ms",
			    r->registration_ms < 0 ? json_null() : json_real(r->registration_ms));
	json_object_set_new(o, "downtime_ms", json_real(r->downtime_ms));
	json_object_set_new(o, "throughput_bps", json_real(r->throughput));
	json_object_set_new(o, "rounds", u64(r->rounds));
	json_object_set_new(o, "transferred", u64(r->transferred));
	json_object_set_new(o, "total_ram", u64(r->total_ram));
	json_object_set_new(o, "normal_pages", u64(r->normal_pages));
	json_object_set_new(o, "zero_pages", u64(r->zero_pages));
	json_object_set_new(o, "normal_bytes", u64(r->normal_bytes));
	json_object_set_new(o, "memcpy_bytes_src", u64(r->memcpy_src));
	json_object_set_new(o, "memcpy_bytes_dst", u64(r->memcpy_dst));
	json_object_set_new(o, "dirty_rate_measured", u64(r->dirty_rate_measured));
	json_object_set_new(o, "cpu_s_src", json_real(r->cpu_src_s));
	json_object_set_new(o, "cpu_s_dst", json_real(r->cpu_dst_s));
	json_object_set_new(o, "ceiling_bps", json_real(r->ceiling));
	json_object_set_new(o, "ratio", json_real(r->ratio));
	for (uint32_t i = 0; i < r->n_remaining && i < BENCH_MAX_ROUNDS; i++)
		json_array_append_new(rem, u64(r->remaining[i]));
	json_object_set_new(o, "remaining", rem);
	json_object_set_new(o, "registration_ms_dst",
			    r->registration_dst_ms < 0 ? json_null()
						       : json_real(r->registration_dst_ms));
	json_object_set_new(o, "registration_used", json_string(r->registration_used));
	json_object_set_new(o, "fallback_reason", json_string(r->fallback_reason));
	json_object_set_new(o, "tls", json_string(r->tls));
	json_object_set_new(o, "type", json_string("run"));
	return o;
}

json_t *bench_session_json(const struct bench_session *s)
{
	json_t *o = json_object(), *c = json_array();

	json_object_set_new(o, "type", json_string("session"));
	json_object_set_new(o, "command", json_string(s->command));
	json_object_set_new(o, "mode", json_string(s->mode));
	if (s->peer[0])
		json_object_set_new(o, "peer", json_string(s->peer));
	json_object_set_new(o, "host", json_string(s->host));
	json_object_set_new(o, "kernel", json_string(s->kernel));
	json_object_set_new(o, "cpus", json_integer(s->cpus));
	json_object_set_new(o, "loadavg_start", json_real(s->loadavg_start));
	json_object_set_new(o, "started", json_string(s->started));
	json_object_set_new(o, "memcpy_bps", json_real(s->memcpy_bytes_per_s));
	for (uint32_t i = 0; i < s->n_ceilings; i++) {
		const struct bench_ceiling *x = &s->ceilings[i];
		json_t *e = json_object();

		json_object_set_new(e, "transport",
				    json_string(bench_transport_name(x->transport)));
		json_object_set_new(e, "streams", json_integer(x->streams));
		json_object_set_new(e, "msg_size", u64(x->msg_size));
		json_object_set_new(e, "method", json_string(x->method));
		json_object_set_new(e, "bps", json_real(x->bytes_per_s));
		json_array_append_new(c, e);
	}
	json_object_set_new(o, "ceilings", c);
	return o;
}

void bench_csv_header(FILE *f)
{
	for (size_t i = 0; i < NCOLS; i++)
		fprintf(f, "%s%s", i ? "," : "", columns[i]);
	fputc('\n', f);
}

static void csv_string(FILE *f, const char *s)
{
	if (!strpbrk(s, ",\"\n\r")) {
		fputs(s, f);
		return;
	}
	fputc('"', f);
	for (; *s; s++) {
		if (*s == '"')
			fputc('"', f);
		fputc(*s == '\n' || *s == '\r' ? ' ' : *s, f);
	}
	fputc('"', f);
}

static void csv_value(FILE *f, json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_STRING:
		csv_string(f, json_string_value(v));
		break;
	case JSON_INTEGER:
		fprintf(f, "%lld", (long long)json_integer_value(v));
		break;
	case JSON_REAL:
		fprintf(f, "%.6g", json_real_value(v));
		break;
	case JSON_TRUE:
		fputs("true", f);
		break;
	case JSON_FALSE:
		fputs("false", f);
		break;
	case JSON_ARRAY: {
		size_t i;
		json_t *e;

		/* Rounds' remaining bytes: one field, ';' between rounds. */
		json_array_foreach(v, i, e)
		    fprintf(f, "%s%lld", i ? ";" : "", (long long)json_integer_value(e));
		break;
	}
	default:
		break;
	}
}

void bench_csv_row(FILE *f, const struct bench_result *r)
{
	json_t *o = bench_result_json(r);

	for (size_t i = 0; i < NCOLS; i++) {
		if (i)
			fputc(',', f);
		csv_value(f, json_object_get(o, columns[i]));
	}
	fputc('\n', f);
	json_decref(o);
}

/* ---- Markdown ----------------------------------------------------------------- */

#define GBIT(bps) ((bps)*8 / 1e9)

typedef double (*metric_fn)(const struct bench_result *r);

static double m_gbit(const struct bench_result *r)
{
	return GBIT(r->throughput);
}
static double m_ratio(const struct bench_result *r)
{
	return r->ratio;
}
static double m_total(const struct bench_result *r)
{
	return r->total_ms;
}
static double m_downtime(const struct bench_result *r)
{
	return r->downtime_ms;
}
static double m_setup(const struct bench_result *r)
{
	return r->setup_ms;
}
static double m_rounds(const struct bench_result *r)
{
	return (double)r->rounds;
}
static double m_cpu_src(const struct bench_result *r)
{
	return r->cpu_src_s;
}
static double m_cpu_dst(const struct bench_result *r)
{
	return r->cpu_dst_s;
}
static double m_dirty(const struct bench_result *r)
{
	return (double)r->dirty_rate_measured / 1048576.0;
}

/* "median (min-max)" of one metric over a scenario's verified runs, as a table cell. */
static void md_summary(FILE *f, const struct bench_result *r, size_t n, uint32_t scenario,
		       metric_fn get, int decimals)
{
	double v[BENCH_MAX_REPS];
	struct bench_summary s;
	size_t k = 0;
	char a[32], b[32], c[32];

	for (size_t i = 0; i < n && k < BENCH_MAX_REPS; i++)
		if (r[i].sc.index == scenario && r[i].verified)
			v[k++] = get(&r[i]);
	bench_summarize(v, k, &s);
	if (!k) {
		fputs(" - |", f);
		return;
	}
	snprintf(a, sizeof(a), "%.*f", decimals, s.median);
	snprintf(b, sizeof(b), "%.*f", decimals, s.min);
	snprintf(c, sizeof(c), "%.*f", decimals, s.max);
	if (k == 1)
		fprintf(f, " %s |", a);
	else
		fprintf(f, " **%s** (%s-%s) |", a, b, c);
}

void bench_report_markdown(FILE *f, const struct bench_session *s, const struct bench_result *r,
			   size_t n, const char *const *plots, size_t n_plots)
{
	static const struct {
		metric_fn get;
		int decimals;
	} cols[] = {{m_gbit, 2},   {m_ratio, 2},   {m_total, 0},   {m_downtime, 0}, {m_setup, 0},
		    {m_rounds, 0}, {m_cpu_src, 2}, {m_cpu_dst, 2}, {m_dirty, 0}};
	bool *seen = calloc(BENCH_MAX_SCENARIOS, sizeof(*seen));

	if (!seen)
		return;
	fprintf(f, "# ferry bench report\n\n");
	fprintf(f, "- started: %s (UTC), mode: %s%s%s\n", s->started, s->mode,
		s->peer[0] ? ", peer " : "", s->peer);
	fprintf(f, "- command: `%s`\n", s->command);
	fprintf(f,
		"- machine: %s, kernel %s, %d CPUs, load average %.2f at the start, %.2f at "
		"the end\n",
		s->host, s->kernel, s->cpus, s->loadavg_start, s->loadavg_end);
	fprintf(f, "- memcpy (one thread, 64 MiB buffers): %.2f GiB/s\n",
		s->memcpy_bytes_per_s / (1024.0 * 1024 * 1024));
	{
		const char *tls = "";

		for (size_t i = 0; i < n && !tls[0]; i++)
			tls = r[i].tls;
		fprintf(f, "- TLS on the main stream and lanes: %s\n",
			tls[0] ? tls : "none (plaintext)");
	}
	if (s->interrupted)
		fprintf(f, "- **interrupted**: the results below are the runs that finished\n");
	fprintf(f, "\n## Fabric ceiling (ferry's own microbenchmark, same session)\n\n");
	fprintf(f, "| transport | streams | message | method | Gbit/s |\n|---|---|---|---|---|\n");
	for (uint32_t i = 0; i < s->n_ceilings; i++) {
		const struct bench_ceiling *c = &s->ceilings[i];

		fprintf(f, "| %s | %u | %llu KiB | %s | %.2f |\n",
			bench_transport_name(c->transport), c->streams,
			(unsigned long long)(c->msg_size >> 10), c->method, GBIT(c->bytes_per_s));
	}
	fprintf(f, "\n## Scenarios\n\nMedian over the verified repetitions, (minimum-maximum) "
		   "when there are several. Throughput is wire bytes from the first page to the "
		   "destination's confirmation; the ratio is to the ceiling with the same "
		   "transport and stream count (streams = channels, at least 1).\n\n");
	fprintf(f, "| scenario | verified | Gbit/s | ratio to ceiling | total ms | downtime ms | "
		   "setup ms | rounds | CPU s source | CPU s destination | dirty rate MiB/s "
		   "(last round) |\n|---|---|---|---|---|---|---|---|---|---|---|\n");
	for (size_t i = 0; i < n; i++) {
		uint32_t sc = r[i].sc.index;
		size_t ok = 0, all = 0;
		char label[128];

		if (sc >= BENCH_MAX_SCENARIOS || seen[sc])
			continue;
		seen[sc] = true;
		for (size_t j = 0; j < n; j++)
			if (r[j].sc.index == sc) {
				all++;
				ok += r[j].verified;
			}
		bench_scenario_label(&r[i].sc, label, sizeof(label));
		fprintf(f, "| %s | %zu/%zu |", label, ok, all);
		for (size_t c = 0; c < sizeof(cols) / sizeof(cols[0]); c++)
			md_summary(f, r, n, sc, cols[c].get, cols[c].decimals);
		fputc('\n', f);
	}
	free(seen);

	fprintf(f, "\n## Every run\n\n| scenario | rep | status | verified | transport used | "
		   "Gbit/s | ratio | total ms | setup ms | downtime ms | rounds | sent MiB | "
		   "normal / zero pages | memcpy MiB src / dst | CPU s src / dst | "
		   "registration ms src / dst |\n"
		   "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
	for (size_t i = 0; i < n; i++) {
		char label[128], reg[64] = "-";

		bench_scenario_label(&r[i].sc, label, sizeof(label));
		if (r[i].registration_ms >= 0 || r[i].registration_dst_ms >= 0)
			snprintf(reg, sizeof(reg), "%s %.1f / %.1f", r[i].registration_used,
				 r[i].registration_ms, r[i].registration_dst_ms);
		fprintf(
		    f,
		    "| %s | %u | %s | %s | %s | %.2f | %.2f | %.0f | %.0f | %.0f | %llu | %.0f | "
		    "%llu / %llu | %.0f / %.0f | %.2f / %.2f | %s |\n",
		    label, r[i].rep + 1, r[i].status, r[i].verified ? "yes" : "**no**",
		    r[i].transport_used[0] ? r[i].transport_used : "-", GBIT(r[i].throughput),
		    r[i].ratio, r[i].total_ms, r[i].setup_ms, r[i].downtime_ms,
		    (unsigned long long)r[i].rounds, (double)r[i].transferred / 1048576.0,
		    (unsigned long long)r[i].normal_pages, (unsigned long long)r[i].zero_pages,
		    (double)r[i].memcpy_src / 1048576.0, (double)r[i].memcpy_dst / 1048576.0,
		    r[i].cpu_src_s, r[i].cpu_dst_s, reg);
	}
	for (size_t i = 0; i < n; i++)
		if (r[i].fallback_reason[0]) {
			char label[128];

			bench_scenario_label(&r[i].sc, label, sizeof(label));
			fprintf(f, "\n- %s, rep %u: no rdma: %s\n", label, r[i].rep + 1,
				r[i].fallback_reason);
		}
	for (size_t i = 0; i < n; i++)
		if (!r[i].verified && r[i].verify_error[0]) {
			char label[128];

			bench_scenario_label(&r[i].sc, label, sizeof(label));
			fprintf(f, "\n- %s, rep %u: %s\n", label, r[i].rep + 1, r[i].verify_error);
		}
	if (n_plots) {
		fprintf(f, "\n## Plots\n\n");
		for (size_t i = 0; i < n_plots; i++)
			if (plots[i])
				fprintf(f, "![%s](%s)\n\n", plots[i], plots[i]);
	}
}

/* ---- gnuplot ------------------------------------------------------------------ */

enum dim_skip { SKIP_CHANNELS, SKIP_DIRTY };

/* A series label: the scenario without the plotted dimension. */
static void series_label(const struct bench_scenario *sc, enum dim_skip skip, char *buf, size_t len)
{
	struct bench_scenario x = *sc;
	char l[128];

	if (skip == SKIP_CHANNELS) {
		x.channels = 0;
		bench_scenario_label(&x, l, sizeof(l));
		/* "ch0" carries no meaning here: drop it. */
		char *p = strstr(l, " ch0");

		if (p)
			memmove(p, p + 4, strlen(p + 4) + 1);
	} else {
		x.dirty_rate = 1; /* labelled as live; the rate is the x axis */
		x.vcpus = sc->vcpus;
		bench_scenario_label(&x, l, sizeof(l));
		char *p = strchr(l, ' ');
		char *q = p ? strchr(p + 1, ' ') : NULL;

		if (p && q)
			memmove(p, q, strlen(q) + 1);
	}
	snprintf(buf, len, "%s", l);
}

struct point {
	double x, y;
};

static int cmp_point(const void *a, const void *b)
{
	const struct point *p = a, *q = b;

	return (p->x > q->x) - (p->x < q->x);
}

/*
 * One plot: series of (x, median y) points grouped by label, as gnuplot
 * index blocks. Returns the number of series written.
 */
static int write_series(FILE *dat, FILE *gp, const char *datname, const struct bench_result *r,
			size_t n, enum dim_skip skip, bool live_only, const char *style)
{
	char(*labels)[128] = calloc(n ? n : 1, sizeof(*labels));
	size_t nl = 0;
	int written = 0;

	if (!labels)
		return 0;
	for (size_t i = 0; i < n; i++) {
		char l[128];
		bool dup = false;

		if (!r[i].verified || (live_only && !r[i].sc.dirty_rate))
			continue;
		series_label(&r[i].sc, skip, l, sizeof(l));
		for (size_t j = 0; j < nl; j++)
			dup |= strcmp(labels[j], l) == 0;
		if (!dup)
			snprintf(labels[nl++], sizeof(labels[0]), "%s", l);
	}
	for (size_t s = 0; s < nl; s++) {
		struct point pts[BENCH_MAX_SCENARIOS / 16];
		size_t np = 0;
		bool done_sc[BENCH_MAX_SCENARIOS] = {false};

		for (size_t i = 0; i < n && np < sizeof(pts) / sizeof(pts[0]); i++) {
			char l[128];
			double v[BENCH_MAX_REPS];
			struct bench_summary sm;
			size_t k = 0;
			uint32_t sc = r[i].sc.index;

			if (!r[i].verified || (live_only && !r[i].sc.dirty_rate) || done_sc[sc])
				continue;
			series_label(&r[i].sc, skip, l, sizeof(l));
			if (strcmp(l, labels[s]))
				continue;
			done_sc[sc] = true;
			for (size_t j = 0; j < n && k < BENCH_MAX_REPS; j++)
				if (r[j].sc.index == sc && r[j].verified)
					v[k++] = skip == SKIP_CHANNELS ? GBIT(r[j].throughput)
								       : r[j].downtime_ms;
			bench_summarize(v, k, &sm);
			pts[np].x = skip == SKIP_CHANNELS ? (double)r[i].sc.channels
							  : (double)r[i].sc.dirty_rate / 1048576.0;
			pts[np++].y = sm.median;
		}
		qsort(pts, np, sizeof(pts[0]), cmp_point);
		fprintf(dat, "# %s\n", labels[s]);
		for (size_t p = 0; p < np; p++)
			fprintf(dat, "%g %g\n", pts[p].x, pts[p].y);
		fprintf(dat, "\n\n");
		fprintf(gp, "%s'%s' index %d using 1:2 with %s title '%s'",
			written ? ", \\\n     " : "plot ", datname, written, style, labels[s]);
		written++;
	}
	free(labels);
	return written; /* the plot command is left open: the caller ends its line */
}

static FILE *open_in(const char *dir, const char *name)
{
	char path[4096];

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	return fopen(path, "w");
}

static const char gp_head[] = "set terminal pngcairo size 820,400 font 'sans,9'\n"
			      "set key outside right top vertical font ',8'\n"
			      "set grid\n";

/* The ceilings as dashed series after @written ones: x = channels, y = the ceiling's Gbit/s. */
static int write_ceilings(FILE *dat, FILE *gp, const char *datname, const struct bench_session *ses,
			  const struct bench_result *r, size_t n, int written)
{
	for (int t = 0; ses && t < BENCH_TR_COUNT; t++) {
		bool any = false;
		uint64_t seen = 0; /* channel counts 0..63 drawn */

		for (size_t i = 0; i < n; i++) {
			const struct bench_ceiling *c;
			uint32_t ch = r[i].sc.channels;

			if (r[i].sc.transport != (enum bench_transport)t || ch > 63 ||
			    (seen & (1ull << ch)))
				continue;
			seen |= 1ull << ch;
			c = bench_session_ceiling(ses, r[i].sc.transport, ch ? ch : 1);
			if (!c || c->bytes_per_s <= 0)
				continue;
			if (!any)
				fprintf(dat, "# ceiling %s\n",
					bench_transport_name(r[i].sc.transport));
			any = true;
		}
		if (!any)
			continue;
		for (uint32_t ch = 0; ch < 64; ch++) {
			const struct bench_ceiling *c;

			if (!(seen & (1ull << ch)))
				continue;
			c = bench_session_ceiling(ses, (enum bench_transport)t, ch ? ch : 1);
			if (c && c->bytes_per_s > 0)
				fprintf(dat, "%u %g\n", ch, GBIT(c->bytes_per_s));
		}
		fprintf(dat, "\n\n");
		fprintf(gp,
			"%s'%s' index %d using 1:2 with linespoints dt 2 pt 6 title 'ceiling %s'",
			written ? ", \\\n     " : "plot ", datname, written,
			bench_transport_name((enum bench_transport)t));
		written++;
	}
	return written;
}

int bench_plots_write(const char *dir, const struct bench_session *ses,
		      const struct bench_result *r, size_t n, const char **names, size_t max)
{
	static const char *const pngs[] = {"throughput-vs-workers.png",
					   "downtime-vs-dirty-rate.png", "remaining-per-round.png"};
	bool made[3] = {false};
	FILE *dat, *gp;
	int count = 0;
	char cmd[4400];

	/* 1. Throughput against data-path workers (channels). */
	dat = open_in(dir, "throughput-vs-workers.dat");
	gp = open_in(dir, "throughput-vs-workers.gp");
	if (dat && gp) {
		fprintf(gp,
			"%sset output 'throughput-vs-workers.png'\n"
			"set title 'Throughput against data-path workers (median)'\n"
			"set xlabel 'channels (workers; 0 = main stream)'\n"
			"set ylabel 'Gbit/s'\nset yrange [0:*]\nset xtics 1\n",
			gp_head);
		int w = write_series(dat, gp, "throughput-vs-workers.dat", r, n, SKIP_CHANNELS,
				     false, "linespoints pt 7");

		if (w > 0)
			w = write_ceilings(dat, gp, "throughput-vs-workers.dat", ses, r, n, w);
		fputc('\n', gp);
		made[0] = w > 0;
	}
	if (dat)
		fclose(dat);
	if (gp)
		fclose(gp);

	/* 2. Downtime against dirty rate (live scenarios). */
	dat = open_in(dir, "downtime-vs-dirty-rate.dat");
	gp = open_in(dir, "downtime-vs-dirty-rate.gp");
	if (dat && gp) {
		fprintf(gp,
			"%sset output 'downtime-vs-dirty-rate.png'\n"
			"set title 'Downtime against requested dirty rate (median)'\n"
			"set xlabel 'dirty rate, MiB/s'\nset ylabel 'downtime, ms'\n"
			"set yrange [0:*]\n",
			gp_head);
		made[1] = write_series(dat, gp, "downtime-vs-dirty-rate.dat", r, n, SKIP_DIRTY,
				       true, "linespoints pt 7") > 0;
	}
	if (dat)
		fclose(dat);
	if (gp)
		fclose(gp);

	/* 3. Remaining bytes after each round: the first verified run of each live scenario. */
	dat = open_in(dir, "remaining-per-round.dat");
	gp = open_in(dir, "remaining-per-round.gp");
	if (dat && gp) {
		bool done_sc[BENCH_MAX_SCENARIOS] = {false};
		int series = 0;

		fprintf(gp,
			"%sset output 'remaining-per-round.png'\n"
			"set title 'Dirty bytes remaining after each round (first run)'\n"
			"set xlabel 'round'\nset ylabel 'MiB'\nset logscale y\nset xrange "
			"[0.5:*]\nset format x '%%.0f'\n",
			gp_head);
		for (size_t i = 0; i < n && series < 12; i++) {
			char l[128];

			if (!r[i].verified || !r[i].sc.dirty_rate || !r[i].n_remaining ||
			    done_sc[r[i].sc.index])
				continue;
			done_sc[r[i].sc.index] = true;
			bench_scenario_label(&r[i].sc, l, sizeof(l));
			fprintf(dat, "# %s\n", l);
			for (uint32_t k = 0; k < r[i].n_remaining; k++)
				/* log scale: an empty round is drawn at 1 KiB */
				fprintf(dat, "%u %g\n", k + 1,
					fmax((double)r[i].remaining[k], 1024.0) / 1048576.0);
			fprintf(dat, "\n\n");
			fprintf(gp,
				"%s'remaining-per-round.dat' index %d using 1:2 with linespoints "
				"pt 7 title '%s'",
				series ? ", \\\n     " : "plot ", series, l);
			series++;
		}
		if (series)
			fputc('\n', gp);
		made[2] = series > 0;
	}
	if (dat)
		fclose(dat);
	if (gp)
		fclose(gp);

	if (system("command -v gnuplot >/dev/null 2>&1") != 0)
		return -ENOENT;
	for (int i = 0; i < 3; i++) {
		char gpname[64];

		if (!made[i])
			continue;
		snprintf(gpname, sizeof(gpname), "%.*s.gp", (int)(strlen(pngs[i]) - 4), pngs[i]);
		snprintf(cmd, sizeof(cmd), "cd '%s' && gnuplot '%s' 2>gnuplot.log", dir, gpname);
		if (system(cmd) == 0 && (size_t)count < max)
			names[count++] = pngs[i];
	}
	return count;
}
