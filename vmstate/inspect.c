/* SPDX-License-Identifier: MIT */
/*
 * ferry_inspect(): walk a savevm v3 stream held in memory and describe it as
 * JSON (docs/inspect.md has the keys).
 *
 * The walk reads the stream through a memory ferry_reader, so every read is
 * bounded by the bytes that exist and every error carries the offset. Two
 * things in the format have no length on the wire and shape this file:
 *
 *  - A FULL (device) section is a bare sequence of fields. Only the vmdesc
 *    JSON after EOF says how many bytes each field takes, so the vmdesc is
 *    located first, by scanning back from the end, and the walk consumes the
 *    device sections through it, checking the footer after each one.
 *  - A RAM section is a sequence of self-describing records ending in EOS, so
 *    it can be walked without the vmdesc.
 *
 * JSON building never checks each jansson call: a failed allocation leaves a
 * NULL that every later jansson call accepts, and insp_set()/insp_push()
 * remember that memory ran out, which is reported once at the end.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ferry/inspect.h>

#include "internal.h"

/* Bounds on what a stream (or its vmdesc) declares. */
#define INSP_MAX_ITER_SECTIONS 1024u  /* START sections open at once */
#define INSP_MAX_BLOCKS	       4096u  /* RAM blocks in the MEM_SIZE list */
#define INSP_MAX_MACHINE_NAME  1024u  /* configuration machine-type name */
#define INSP_MAX_CAPS	       64u    /* configuration/capabilities count */
#define INSP_VALUE_SLACK       65536u /* decoded values beyond one per stream byte */
#define INSP_MIN_PAGE	       1024u  /* RAM flags must fit under the page size */
#define INSP_MAX_PAGE	       (1u << 21)
#define INSP_MAX_WARNINGS      100u /* kept in "warnings"; the rest only counted */

/* RAM record flags (FORMAT.md §8). */
enum {
	RAM_ZERO = 0x002,
	RAM_MEM_SIZE = 0x004,
	RAM_PAGE = 0x008,
	RAM_EOS = 0x010,
	RAM_CONTINUE = 0x020,
	RAM_XBZRLE = 0x040,
	RAM_HOOK = 0x080,
	RAM_COMPRESS = 0x100,
	RAM_MULTIFD_FLUSH = 0x200,
};

#define XBZRLE_ENCODING	 0x01
#define NULLPTR_MARKER	 0x30 /* '0': a null pointer of an array of pointers */
#define MAPPED_RAM_HDR_V 1u

/* Page records of one block, in one section or in the whole stream. */
struct insp_pages {
	uint64_t page, zero, xbzrle, compressed;
};

/* Every RAM record kind of a section or of the whole stream. */
struct insp_counts {
	uint64_t records, mem_size, page, zero, xbzrle, compressed, cont, multifd_flush, hook, eos;
};

struct insp_block {
	char name[256];
	uint64_t length;
	struct insp_pages sec;	 /* in the section being walked */
	struct insp_pages total; /* in the whole stream */
	json_t *out;		 /* its entry in "ram"."blocks" (borrowed) */
};

/* An iterative section opened by START, so PART/END can name it. */
struct insp_sec {
	uint32_t id, instance, version;
	char idstr[256];
};

struct insp {
	const uint8_t *data;
	size_t len;
	size_t end; /* where the walk must stop: the vmdesc's 0x06, or len */
	struct ferry_inspect_opts opts;

	json_t *root, *warnings; /* root owns everything else */
	bool oom;

	json_t *vmdesc; /* parsed vmdesc, or NULL */
	size_t vmdesc_off;
	char vmdesc_hint[256]; /* why no vmdesc was found, when something looked like one */
	size_t next_dev;       /* vmdesc device of the next FULL section */
	size_t nfull;
	bool page_size_from_vmdesc;
	uint32_t page_size;

	struct insp_sec *secs;
	size_t nsecs;

	struct insp_block *blocks;
	size_t nblocks;
	long last_block; /* index into blocks, -1 when no page record was seen */
	uint64_t mem_total;
	json_t *ram;	    /* root "ram" object (borrowed) */
	json_t *ram_blocks; /* "ram"."blocks" (borrowed) */
	struct insp_counts ram_total;

	bool postcopy_ram; /* POSTCOPY_ADVISE with a page-size summary seen */
	uint64_t page_summary;
	bool ignore_shared, mapped_ram;

	uint64_t budget; /* decoded values left before a vmdesc is deemed hostile */
	uint64_t nwarnings;
	int pkg_depth;

	/* An error whose offset is not the reader's current one. */
	char errmsg[1024];
};

/* ---- JSON helpers ----------------------------------------------------------- */

static void insp_set(struct insp *x, json_t *obj, const char *key, json_t *val)
{
	if (!val || json_object_set_new(obj, key, val) < 0)
		x->oom = true;
}

static void insp_push(struct insp *x, json_t *arr, json_t *val)
{
	if (!val || json_array_append_new(arr, val) < 0)
		x->oom = true;
}

/* A uint64 as a JSON number, or as a decimal string above INT64_MAX (jansson's limit). */
static json_t *insp_u64(uint64_t v)
{
	if (v <= (uint64_t)INT64_MAX)
		return json_integer((json_int_t)v);
	return json_sprintf("%" PRIu64, v);
}

static json_t *insp_hex(const uint8_t *p, size_t n)
{
	static const char digits[] = "0123456789abcdef";
	char *s = malloc(2 * n + 1);
	json_t *j;

	if (!s)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		s[2 * i] = digits[p[i] >> 4];
		s[2 * i + 1] = digits[p[i] & 15];
	}
	j = json_stringn(s, 2 * n);
	free(s);
	return j;
}

/*
 * Bytes from the stream as a JSON string. Names are normally ASCII; anything
 * that is not valid UTF-8 is shown with \xNN escapes instead of being
 * dropped, so a corrupted name is still visible.
 */
static json_t *insp_str(const void *p, size_t n)
{
	const uint8_t *b = p;
	json_t *j = json_stringn(p, n);
	char *s;

	if (j)
		return j;
	s = malloc(4 * n + 1);
	if (!s)
		return NULL;
	size_t k = 0;
	for (size_t i = 0; i < n; i++) {
		if (b[i] >= 0x20 && b[i] < 0x7f)
			s[k++] = (char)b[i];
		else
			k += (size_t)snprintf(s + k, 5, "\\x%02x", b[i]);
	}
	j = json_stringn(s, k);
	free(s);
	return j;
}

/* ---- errors and warnings --------------------------------------------------------- */

static size_t insp_off(struct ferry_reader *r)
{
	return (size_t)ferry_reader_offset(r);
}

/*
 * Fail at @off rather than at the reader's offset (a record's start, a
 * footer found after its payload). The reader is put in error too, so the
 * walk stops; the message kept here wins over the reader's.
 */
__attribute__((format(printf, 5, 6))) static int
insp_fail_at(struct insp *x, struct ferry_reader *r, size_t off, int err, const char *fmt, ...)
{
	char msg[768];
	va_list ap;

	if (ferry_reader_error(r))
		return ferry_reader_error(r);
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	snprintf(x->errmsg, sizeof(x->errmsg), "offset %zu: %s", off, msg);
	return ferry_reader_fail(r, err, "%s", msg);
}

/* Add a context ("section 2 'ram' instance 0") to whichever message will be reported. */
__attribute__((format(printf, 3, 4))) static void
insp_context(struct insp *x, struct ferry_reader *r, const char *fmt, ...)
{
	char ctx[384], old[sizeof(x->errmsg)];
	va_list ap;

	if (!ferry_reader_error(r))
		return;
	va_start(ap, fmt);
	vsnprintf(ctx, sizeof(ctx), fmt, ap);
	va_end(ap);
	ferry_reader_context(r, "%s", ctx);
	if (x->errmsg[0]) {
		/* "offset N: rest" becomes "offset N: ctx: rest". */
		char *rest = strstr(x->errmsg, ": ");

		if (!rest)
			return;
		memcpy(old, x->errmsg, sizeof(old));
		size_t head = (size_t)(rest - x->errmsg);
		snprintf(x->errmsg, sizeof(x->errmsg), "%.*s: %s%s", (int)head, old, ctx,
			 old + head);
	}
}

/*
 * A message for JSON and for a terminal: names from a hostile stream may hold
 * control bytes or broken UTF-8, so everything outside printable ASCII is
 * shown as \xNN. Returns a malloc'd string or NULL.
 */
static char *insp_clean(const char *msg)
{
	size_t n = strlen(msg), k = 0;
	char *s = malloc(4 * n + 1);

	if (!s)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)msg[i];

		if (c >= 0x20 && c < 0x7f)
			s[k++] = (char)c;
		else
			k += (size_t)snprintf(s + k, 5, "\\x%02x", c);
	}
	s[k] = '\0';
	return s;
}

static json_t *insp_clean_json(const char *msg)
{
	char *s = insp_clean(msg);
	json_t *j = s ? json_string(s) : NULL;

	free(s);
	return j;
}

/* A warning: recorded in "warnings" and logged; an error under opts.strict. */
__attribute__((format(printf, 4, 5))) static int insp_warn(struct insp *x, struct ferry_reader *r,
							   size_t off, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (x->opts.strict)
		return insp_fail_at(x, r, off, FERRY_EBADSTREAM, "%s (an error with --strict)",
				    msg);
	/* A hostile stream could warn once per page; keep the first ones. */
	if (++x->nwarnings > INSP_MAX_WARNINGS)
		return 0;
	json_t *w = json_object();
	char *clean = insp_clean(msg);

	insp_set(x, w, "offset", json_integer((json_int_t)off));
	insp_set(x, w, "message", clean ? json_string(clean) : NULL);
	insp_push(x, x->warnings, w);
	vms_log(FERRY_LOG_WARN, "inspect: offset %zu: %s", off, clean ? clean : msg);
	free(clean);
	return 0;
}

/* ---- raw access for look-ahead ----------------------------------------------------- */

static uint32_t be32_at(const uint8_t *p)
{
	return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static uint64_t be64_at(const uint8_t *p)
{
	return ((uint64_t)be32_at(p) << 32) | be32_at(p + 4);
}

/* True (and *v set) when 8 bytes follow the reader's position before the walk's end. */
static bool insp_peek_be64(struct insp *x, struct ferry_reader *r, uint64_t *v)
{
	size_t at = insp_off(r);

	if (ferry_reader_error(r) || at > x->end || x->end - at < 8)
		return false;
	*v = be64_at(x->data + at);
	return true;
}

/*
 * Consume @n bytes and return where they are in the buffer, or NULL (the
 * reader then holds a truncation error). The memory reader is over x->data,
 * so its offset is an index into it.
 */
static const uint8_t *insp_take(struct insp *x, struct ferry_reader *r, size_t n)
{
	size_t at = insp_off(r);

	if (ferry_reader_skip(r, n) < 0)
		return NULL;
	return x->data + at;
}

/* ---- vmdesc ----------------------------------------------------------------------- */

static bool insp_is_page_size(uint64_t v)
{
	return v >= INSP_MIN_PAGE && v <= INSP_MAX_PAGE && (v & (v - 1)) == 0;
}

/*
 * Find the vmdesc: EOF (0x00), then 0x06, be32 length, and that many bytes
 * of JSON reaching exactly the end of the stream. Scanning back from the end,
 * the first 00 06 xx xx xx xx '{' is the only candidate worth parsing: valid
 * JSON never contains a raw 0x06 byte, so a real vmdesc's header is always the
 * last such pattern in the stream. One parse at most, whatever the input.
 */
static void insp_find_vmdesc(struct insp *x)
{
	const uint8_t *d = x->data;
	size_t lo = 9; /* magic, version, and at least the EOF byte */
	json_error_t jerr;

	if (x->len < lo + 7)
		return;
	if (x->len - lo > (size_t)FERRY_VMDESC_MAX_LEN + 16)
		lo = x->len - FERRY_VMDESC_MAX_LEN - 16;
	for (size_t p = x->len - 7; p >= lo; p--) {
		if (d[p] != FERRY_VM_VMDESCRIPTION || d[p - 1] != FERRY_VM_EOF || d[p + 5] != '{')
			continue;
		uint64_t n = be32_at(d + p + 1);
		size_t avail = x->len - p - 5;

		if (n != avail) {
			snprintf(x->vmdesc_hint, sizeof(x->vmdesc_hint),
				 "the vmdesc header at offset %zu declares %" PRIu64
				 " bytes of JSON, but %zu remain",
				 p, n, avail);
			return;
		}
		json_t *j = json_loadb((const char *)d + p + 5, avail, 0, &jerr);
		if (!j || !json_is_object(j)) {
			snprintf(x->vmdesc_hint, sizeof(x->vmdesc_hint),
				 "the vmdesc at offset %zu is not a JSON object: %s", p,
				 j ? "not an object" : jerr.text);
			json_decref(j);
			return;
		}
		x->vmdesc = j;
		x->vmdesc_off = p;
		x->end = p;
		return;
	}
}

/* ---- configuration (FORMAT.md §4) ------------------------------------------------- */

static int insp_config_caps(struct insp *x, struct ferry_reader *r, json_t *cfg)
{
	uint32_t count = ferry_get_be32(r);
	char name[256];
	json_t *caps;

	if (ferry_reader_error(r))
		return ferry_reader_error(r);
	if (count > INSP_MAX_CAPS)
		return insp_fail_at(x, r, insp_off(r) - 4, FERRY_ELIMIT,
				    "%" PRIu32 " capabilities (at most %u)", count, INSP_MAX_CAPS);
	caps = json_array();
	insp_set(x, cfg, "capabilities", caps);
	for (uint32_t i = 0; i < count; i++) {
		int n = ferry_get_cstr(r, name);

		if (n < 0)
			return n;
		insp_push(x, caps, insp_str(name, (size_t)n));
		if (strcmp(name, "x-ignore-shared") == 0)
			x->ignore_shared = true;
		else if (strcmp(name, "mapped-ram") == 0)
			x->mapped_ram = true;
	}
	return 0;
}

static int insp_config_sub(struct insp *x, struct ferry_reader *r, json_t *cfg)
{
	size_t at = insp_off(r);
	char name[256];
	int n;

	ferry_get_u8(r); /* 0x05, peeked by the caller */
	n = ferry_get_cstr(r, name);
	uint32_t version = ferry_get_be32(r);
	if (n < 0 || ferry_reader_error(r))
		return ferry_reader_error(r);
	if (strncmp(name, "configuration/", 14) != 0)
		return insp_fail_at(x, r, at, FERRY_EBADSTREAM,
				    "subsection '%s' does not belong to the configuration", name);
	if (version != 1)
		return insp_fail_at(x, r, at, FERRY_EVERSION,
				    "subsection '%s' version %" PRIu32 ", expected 1", name,
				    version);
	if (strcmp(name, "configuration/target-page-bits") == 0) {
		uint32_t bits = ferry_get_be32(r);

		if (ferry_reader_error(r))
			return ferry_reader_error(r);
		if (bits < 10 || bits > 21)
			return insp_fail_at(x, r, insp_off(r) - 4, FERRY_EBADSTREAM,
					    "target-page-bits %" PRIu32 " (expected 10..21)", bits);
		insp_set(x, cfg, "target_page_bits", json_integer(bits));
		if (!x->page_size_from_vmdesc)
			x->page_size = 1u << bits;
		else if (x->page_size != 1u << bits)
			return insp_warn(x, r, at,
					 "target-page-bits %" PRIu32
					 " disagrees with the vmdesc page_size %" PRIu32,
					 bits, x->page_size);
		return 0;
	}
	if (strcmp(name, "configuration/capabilities") == 0)
		return insp_config_caps(x, r, cfg);
	if (strcmp(name, "configuration/uuid") == 0) {
		const uint8_t *u = insp_take(x, r, 16);
		char s[37];

		if (!u)
			return ferry_reader_error(r);
		snprintf(s, sizeof(s),
			 "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
			 u[0], u[1], u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11],
			 u[12], u[13], u[14], u[15]);
		insp_set(x, cfg, "uuid", json_string(s));
		return 0;
	}
	return insp_fail_at(x, r, at, FERRY_ENOSUBSECTION, "unknown subsection '%s'", name);
}

static int insp_config(struct insp *x, struct ferry_reader *r, size_t at)
{
	json_t *cfg = json_object();
	uint32_t n;
	const uint8_t *name;
	int ret = 0;

	insp_set(x, x->root, "configuration", cfg);
	insp_set(x, cfg, "offset", json_integer((json_int_t)at));
	n = ferry_get_be32(r);
	if (ferry_reader_error(r))
		goto out;
	if (n > INSP_MAX_MACHINE_NAME) {
		insp_fail_at(x, r, at + 1, FERRY_ELIMIT,
			     "machine name of %" PRIu32 " bytes (at most %u)", n,
			     INSP_MAX_MACHINE_NAME);
		goto out;
	}
	name = insp_take(x, r, n);
	if (!name)
		goto out;
	insp_set(x, cfg, "name", insp_str(name, n));
	while (ferry_peek_u8(r) == FERRY_VM_SUBSECTION) {
		ret = insp_config_sub(x, r, cfg);
		if (ret < 0)
			goto out;
	}
out:
	ret = ferry_reader_error(r);
	if (ret < 0)
		insp_context(x, r, "configuration");
	return ret;
}

/* ---- COMMAND records (FORMAT.md §6) ------------------------------------------------ */

static const struct {
	const char *name;
	int len; /* fixed length, or -1 when variable */
} insp_cmds[] = {
    [FERRY_CMD_OPEN_RETURN_PATH] = {"OPEN_RETURN_PATH", 0},
    [FERRY_CMD_PING] = {"PING", 4},
    [FERRY_CMD_POSTCOPY_ADVISE] = {"POSTCOPY_ADVISE", -1},
    [FERRY_CMD_POSTCOPY_LISTEN] = {"POSTCOPY_LISTEN", 0},
    [FERRY_CMD_POSTCOPY_RUN] = {"POSTCOPY_RUN", 0},
    [FERRY_CMD_POSTCOPY_RAM_DISCARD] = {"POSTCOPY_RAM_DISCARD", -1},
    [FERRY_CMD_PACKAGED] = {"PACKAGED", 4},
    [FERRY_CMD_ENABLE_COLO] = {"ENABLE_COLO", 0},
    [FERRY_CMD_POSTCOPY_RESUME] = {"POSTCOPY_RESUME", 0},
    [FERRY_CMD_RECV_BITMAP] = {"RECV_BITMAP", -1},
    [FERRY_CMD_SWITCHOVER_START] = {"SWITCHOVER_START", 0},
};

#define INSP_NCMDS (sizeof(insp_cmds) / sizeof(insp_cmds[0]))

static int insp_walk(struct insp *x, struct ferry_reader *r, json_t *commands, json_t *sections,
		     size_t stop);

static int insp_discard(struct insp *x, struct ferry_reader *r, json_t *c, const uint8_t *p,
			uint16_t len, size_t at)
{
	json_t *ranges;
	size_t nlen, pos;

	/* u8 version 0, cstr block, u8 0, then (be64 start, be64 length) pairs */
	if (len < 3 || p[0] != 0 || (size_t)p[1] + 3 > len || p[2 + p[1]] != 0)
		return insp_fail_at(x, r, at, FERRY_EBADSTREAM,
				    "POSTCOPY_RAM_DISCARD: malformed header (version %u, name "
				    "length %u, command length %u)",
				    p[0], len >= 2 ? p[1] : 0, len);
	nlen = p[1];
	pos = 3 + nlen;
	if ((len - pos) % 16 != 0)
		return insp_fail_at(
		    x, r, at, FERRY_EBADSTREAM,
		    "POSTCOPY_RAM_DISCARD: %zu bytes of ranges, not a multiple of 16", len - pos);
	insp_set(x, c, "block", insp_str(p + 2, nlen));
	ranges = json_array();
	insp_set(x, c, "ranges", ranges);
	for (; pos < len; pos += 16) {
		json_t *pair = json_array();

		insp_push(x, pair, insp_u64(be64_at(p + pos)));
		insp_push(x, pair, insp_u64(be64_at(p + pos + 8)));
		insp_push(x, ranges, pair);
	}
	return 0;
}

static int insp_packaged(struct insp *x, struct ferry_reader *r, json_t *c, const uint8_t *p)
{
	uint32_t n = be32_at(p);
	size_t start = insp_off(r);
	json_t *cmds, *secs;
	int ret;

	insp_set(x, c, "size", json_integer(n));
	if (n > x->end - start)
		return insp_fail_at(x, r, start - 4, FERRY_ETRUNCATED,
				    "PACKAGED declares %" PRIu32 " bytes, %zu remain", n,
				    x->end - start);
	if (x->pkg_depth >= 2)
		return insp_fail_at(x, r, start - 4, FERRY_ELIMIT,
				    "PACKAGED nested more than twice");
	cmds = json_array();
	secs = json_array();
	insp_set(x, c, "commands", cmds);
	insp_set(x, c, "sections", secs);
	x->pkg_depth++;
	ret = insp_walk(x, r, cmds, secs, start + n);
	x->pkg_depth--;
	return ret;
}

static int insp_command(struct insp *x, struct ferry_reader *r, json_t *commands, size_t at)
{
	json_t *c = json_object();
	uint16_t cmd = ferry_get_be16(r);
	uint16_t len = ferry_get_be16(r);
	const uint8_t *p;
	const char *name = cmd < INSP_NCMDS ? insp_cmds[cmd].name : NULL;
	int ret = 0;

	insp_push(x, commands, c);
	insp_set(x, c, "offset", json_integer((json_int_t)at));
	if (ferry_reader_error(r))
		goto out;
	insp_set(x, c, "cmd", json_integer(cmd));
	insp_set(x, c, name ? "name" : "unknown", name ? json_string(name) : json_true());
	insp_set(x, c, "len", json_integer(len));
	if (!name) {
		insp_fail_at(x, r, at, FERRY_EBADSTREAM, "unknown command %u (length %u)", cmd,
			     len);
		goto out;
	}
	if ((insp_cmds[cmd].len >= 0 && len != insp_cmds[cmd].len) ||
	    (cmd == FERRY_CMD_POSTCOPY_ADVISE && len != 0 && len != 16)) {
		insp_fail_at(x, r, at, FERRY_EBADSTREAM, "command %s with length %u, expected %s",
			     name, len,
			     cmd == FERRY_CMD_POSTCOPY_ADVISE ? "0 or 16"
			     : insp_cmds[cmd].len == 4	      ? "4"
							      : "0");
		goto out;
	}
	p = insp_take(x, r, len);
	if (!p)
		goto out;
	switch (cmd) {
	case FERRY_CMD_PING:
		insp_set(x, c, "value", json_integer(be32_at(p)));
		break;
	case FERRY_CMD_POSTCOPY_ADVISE:
		if (len == 16) {
			x->postcopy_ram = true;
			x->page_summary = be64_at(p);
			insp_set(x, c, "page_size_summary", insp_u64(be64_at(p)));
			insp_set(x, c, "target_page_size", insp_u64(be64_at(p + 8)));
		}
		break;
	case FERRY_CMD_POSTCOPY_RAM_DISCARD:
		insp_discard(x, r, c, p, len, at);
		break;
	case FERRY_CMD_RECV_BITMAP:
		if (len < 1 || (size_t)p[0] + 1 != len)
			insp_fail_at(x, r, at, FERRY_EBADSTREAM,
				     "RECV_BITMAP: name length %u in a command of length %u",
				     len ? p[0] : 0, len);
		else
			insp_set(x, c, "block", insp_str(p + 1, p[0]));
		break;
	case FERRY_CMD_PACKAGED:
		insp_packaged(x, r, c, p);
		break;
	default:
		break;
	}
out:
	ret = ferry_reader_error(r);
	if (ret < 0)
		insp_context(x, r, "command%s%s at offset %zu", name ? " " : "", name ? name : "",
			     at);
	return ret;
}

/* ---- RAM sections (FORMAT.md §8) --------------------------------------------------- */

/* A block's page counts, after its name. */
static json_t *insp_pages_json(struct insp *x, const char *name, const struct insp_pages *p)
{
	json_t *o = json_object();

	if (name)
		insp_set(x, o, "name", insp_str(name, strlen(name)));
	insp_set(x, o, "page", insp_u64(p->page));
	insp_set(x, o, "zero", insp_u64(p->zero));
	insp_set(x, o, "xbzrle", insp_u64(p->xbzrle));
	insp_set(x, o, "compressed", insp_u64(p->compressed));
	return o;
}

static json_t *insp_counts_json(const struct insp_counts *c)
{
	return json_pack("{sIsIsIsIsIsIsIsIsIsI}", "records", (json_int_t)c->records, "mem_size",
			 (json_int_t)c->mem_size, "page", (json_int_t)c->page, "zero",
			 (json_int_t)c->zero, "xbzrle", (json_int_t)c->xbzrle, "compressed",
			 (json_int_t)c->compressed, "continue", (json_int_t)c->cont,
			 "multifd_flush", (json_int_t)c->multifd_flush, "hook", (json_int_t)c->hook,
			 "eos", (json_int_t)c->eos);
}

static void insp_counts_add(struct insp_counts *to, const struct insp_counts *c)
{
	to->records += c->records;
	to->mem_size += c->mem_size;
	to->page += c->page;
	to->zero += c->zero;
	to->xbzrle += c->xbzrle;
	to->compressed += c->compressed;
	to->cont += c->cont;
	to->multifd_flush += c->multifd_flush;
	to->hook += c->hook;
	to->eos += c->eos;
}

/* The optional per-block fields of a MEM_SIZE entry. */
static int insp_block_extras(struct insp *x, struct ferry_reader *r, json_t *b, uint64_t length)
{
	uint64_t v;

	/*
	 * The block page size is sent only for blocks whose page size differs
	 * from the host's, which the stream does not say. It is taken to be
	 * there when postcopy advertised pages larger than the target's and the
	 * next be64 is one of them; a block name (u8 length + text) never reads
	 * as such a power of two.
	 */
	if (x->postcopy_ram && (x->page_summary & ~(uint64_t)x->page_size) &&
	    insp_peek_be64(x, r, &v) && v > x->page_size && (v & (v - 1)) == 0 &&
	    (v & x->page_summary)) {
		ferry_get_be64(r);
		insp_set(x, b, "page_size", insp_u64(v));
	}
	if (x->ignore_shared) {
		v = ferry_get_be64(r);
		insp_set(x, b, "gpa", insp_u64(v));
	}
	if (x->mapped_ram) {
		size_t at = insp_off(r);
		uint32_t version = ferry_get_be32(r);
		uint64_t psize = ferry_get_be64(r);
		uint64_t bitmap = ferry_get_be64(r);
		uint64_t pages = ferry_get_be64(r);
		json_t *m = json_object();

		insp_set(x, b, "mapped_ram", m);
		if (ferry_reader_error(r))
			return ferry_reader_error(r);
		insp_set(x, m, "version", json_integer(version));
		insp_set(x, m, "page_size", insp_u64(psize));
		insp_set(x, m, "bitmap_offset", insp_u64(bitmap));
		insp_set(x, m, "pages_offset", insp_u64(pages));
		if (version != MAPPED_RAM_HDR_V)
			return insp_fail_at(x, r, at, FERRY_EVERSION,
					    "mapped-ram header version %" PRIu32 ", expected 1",
					    version);
		/* The pages live at pages_offset; the stream resumes after them. */
		size_t here = insp_off(r);
		if (pages > x->end || length > x->end - pages || pages + length < here)
			return insp_fail_at(x, r, at, FERRY_EBADSTREAM,
					    "mapped-ram pages at 0x%" PRIx64 " + 0x%" PRIx64
					    " do not lie between offset %zu and the end %zu",
					    pages, length, here, x->end);
		ferry_reader_skip(r, pages + length - here);
	}
	return ferry_reader_error(r);
}

static int insp_mem_size(struct insp *x, struct ferry_reader *r, uint64_t total, size_t at)
{
	uint64_t sum = 0;
	char name[256];
	int ret;

	if (x->nblocks > 0) {
		ret = insp_warn(x, r, at, "a second MEM_SIZE record replaces the block list");
		if (ret < 0)
			return ret;
	}
	x->nblocks = 0;
	x->last_block = -1;
	x->mem_total = total;
	x->ram_blocks = json_array();
	insp_set(x, x->ram, "total_bytes", insp_u64(total));
	insp_set(x, x->ram, "blocks", x->ram_blocks);
	while (sum < total) {
		size_t bat = insp_off(r);
		int n = ferry_get_cstr(r, name);
		uint64_t length = ferry_get_be64(r);

		if (n < 0 || ferry_reader_error(r))
			return ferry_reader_error(r);
		if (n == 0)
			return insp_fail_at(x, r, bat, FERRY_EBADSTREAM,
					    "MEM_SIZE: a block with an empty name");
		if (x->nblocks >= INSP_MAX_BLOCKS)
			return insp_fail_at(x, r, bat, FERRY_ELIMIT,
					    "MEM_SIZE: more than %u blocks", INSP_MAX_BLOCKS);
		if (length > total - sum)
			return insp_fail_at(x, r, bat, FERRY_EBADSTREAM,
					    "MEM_SIZE: block '%s' of 0x%" PRIx64
					    " bytes overruns the total 0x%" PRIx64 " (0x%" PRIx64
					    " listed before it)",
					    name, length, total, sum);
		struct insp_block *blk = &x->blocks[x->nblocks++];
		json_t *b = json_object();

		memset(blk, 0, sizeof(*blk));
		memcpy(blk->name, name, (size_t)n + 1);
		blk->length = length;
		blk->out = b;
		insp_push(x, x->ram_blocks, b);
		insp_set(x, b, "name", insp_str(name, (size_t)n));
		insp_set(x, b, "length", insp_u64(length));
		ret = insp_block_extras(x, r, b, length);
		if (ret < 0) {
			insp_context(x, r, "MEM_SIZE block '%s'", name);
			return ret;
		}
		sum += length;
	}
	return 0;
}

/* The block a page record is for: named, or the previous one (CONTINUE). */
static struct insp_block *insp_page_block(struct insp *x, struct ferry_reader *r, uint64_t flags,
					  size_t at)
{
	char name[256];
	size_t nat;
	int n;

	if (flags & RAM_CONTINUE) {
		if (x->last_block < 0) {
			insp_fail_at(x, r, at, FERRY_EBADSTREAM,
				     "page record with CONTINUE but no block named before it");
			return NULL;
		}
		return &x->blocks[x->last_block];
	}
	nat = insp_off(r);
	n = ferry_get_cstr(r, name);
	if (n < 0)
		return NULL;
	for (size_t i = 0; i < x->nblocks; i++) {
		if (strcmp(x->blocks[i].name, name) == 0) {
			x->last_block = (long)i;
			return &x->blocks[i];
		}
	}
	insp_fail_at(x, r, nat, FERRY_EBADSTREAM, "block '%s' is not in the MEM_SIZE list", name);
	return NULL;
}

/* One page record's payload (after the be64 word). */
static int insp_page(struct insp *x, struct ferry_reader *r, struct insp_counts *c, uint64_t flags,
		     uint64_t addr, size_t at)
{
	uint64_t kind = flags & ~(uint64_t)RAM_CONTINUE;
	struct insp_block *blk = insp_page_block(x, r, flags, at);
	size_t pat;

	if (!blk)
		return ferry_reader_error(r);
	if (addr >= blk->length)
		return insp_fail_at(x, r, at, FERRY_EBADSTREAM,
				    "page at 0x%" PRIx64
				    " of block '%s', whose length is 0x%" PRIx64,
				    addr, blk->name, blk->length);
	pat = insp_off(r);
	switch (kind) {
	case RAM_ZERO: {
		uint8_t fill = ferry_get_u8(r);

		if (ferry_reader_error(r))
			return ferry_reader_error(r);
		c->zero++;
		blk->sec.zero++;
		if (fill != 0)
			return insp_warn(x, r, pat,
					 "ZERO page at 0x%" PRIx64 " of '%s' with fill byte 0x%02x",
					 addr, blk->name, fill);
		return 0;
	}
	case RAM_PAGE:
		c->page++;
		blk->sec.page++;
		return ferry_reader_skip(r, x->page_size);
	case RAM_XBZRLE: {
		uint8_t enc = ferry_get_u8(r);
		uint16_t n = ferry_get_be16(r);

		if (ferry_reader_error(r))
			return ferry_reader_error(r);
		if (enc != XBZRLE_ENCODING)
			return insp_fail_at(x, r, pat, FERRY_EBADSTREAM,
					    "XBZRLE encoding byte 0x%02x, expected 0x01", enc);
		if (n > x->page_size)
			return insp_fail_at(x, r, pat + 1, FERRY_ELIMIT,
					    "XBZRLE data of %u bytes for a page of %" PRIu32, n,
					    x->page_size);
		c->xbzrle++;
		blk->sec.xbzrle++;
		return ferry_reader_skip(r, n);
	}
	default: { /* RAM_COMPRESS, 7.2: be32 length, then zlib data */
		uint32_t n = ferry_get_be32(r);
		/* zlib's compressBound() of a page stays well under this. */
		uint32_t bound = x->page_size + x->page_size / 256 + 64;

		if (ferry_reader_error(r))
			return ferry_reader_error(r);
		if (n > bound)
			return insp_fail_at(
			    x, r, pat, FERRY_ELIMIT,
			    "compressed page of %" PRIu32 " bytes (at most %" PRIu32 ")", n, bound);
		c->compressed++;
		blk->sec.compressed++;
		return ferry_reader_skip(r, n);
	}
	}
}

static void insp_ram_section_out(struct insp *x, json_t *s, const struct insp_counts *c)
{
	json_t *ram = json_object(), *blocks = json_array();

	insp_set(x, s, "ram", ram);
	insp_set(x, ram, "counts", insp_counts_json(c));
	insp_set(x, ram, "blocks", blocks);
	for (size_t i = 0; i < x->nblocks; i++) {
		struct insp_block *b = &x->blocks[i];

		if (!b->sec.page && !b->sec.zero && !b->sec.xbzrle && !b->sec.compressed)
			continue;
		insp_push(x, blocks, insp_pages_json(x, b->name, &b->sec));
		b->total.page += b->sec.page;
		b->total.zero += b->sec.zero;
		b->total.xbzrle += b->sec.xbzrle;
		b->total.compressed += b->sec.compressed;
		memset(&b->sec, 0, sizeof(b->sec));
	}
	insp_counts_add(&x->ram_total, c);
}

static int insp_ram(struct insp *x, struct ferry_reader *r, json_t *s)
{
	struct insp_counts c = {0};
	uint64_t mask = x->page_size - 1;
	int ret = 0;

	if (!x->ram) {
		x->ram = json_object();
		insp_set(x, x->root, "ram", x->ram);
		insp_set(x, x->ram, "page_size", json_integer(x->page_size));
	}
	for (;;) {
		size_t at = insp_off(r);
		uint64_t word = ferry_get_be64(r);
		uint64_t flags = word & mask, addr = word & ~mask;

		ret = ferry_reader_error(r);
		if (ret < 0)
			break;
		c.records++;
		switch (flags & ~(uint64_t)RAM_CONTINUE) {
		case RAM_MEM_SIZE:
			c.mem_size++;
			ret = insp_mem_size(x, r, addr, at);
			break;
		case RAM_ZERO:
		case RAM_PAGE:
		case RAM_XBZRLE:
		case RAM_COMPRESS:
			if (flags & RAM_CONTINUE)
				c.cont++;
			ret = insp_page(x, r, &c, flags, addr, at);
			break;
		case RAM_MULTIFD_FLUSH:
			c.multifd_flush++;
			break;
		case RAM_HOOK:
			c.hook++;
			break;
		case RAM_EOS:
			c.eos++;
			if (addr != 0)
				ret = insp_warn(x, r, at, "EOS with address bits 0x%" PRIx64, addr);
			goto done;
		default:
			ret = insp_fail_at(x, r, at, FERRY_EBADSTREAM,
					   "unknown combination of RAM flags 0x%03" PRIx64
					   " (record word 0x%016" PRIx64 ")",
					   flags, word);
			break;
		}
		if (ret < 0)
			break;
	}
done:
	insp_ram_section_out(x, s, &c);
	return ret;
}

/* ---- device sections through the vmdesc (FORMAT.md §7, §9) --------------------------- */

/* The wire width and reading of the vmdesc types with a fixed encoding. */
enum insp_kind { K_BOOL, K_SIGNED, K_UNSIGNED };

static const struct {
	const char *type;
	uint8_t width;
	enum insp_kind kind;
} insp_types[] = {
    {"bool", 1, K_BOOL},
    {"int8", 1, K_SIGNED},
    {"uint8", 1, K_UNSIGNED},
    {"int16", 2, K_SIGNED},
    {"uint16", 2, K_UNSIGNED},
    {"int32", 4, K_SIGNED},
    {"uint32", 4, K_UNSIGNED},
    {"int64", 8, K_SIGNED},
    {"uint64", 8, K_UNSIGNED},
    {"timer", 8, K_SIGNED},
    {"CPU_Double_U", 8, K_UNSIGNED},
    {"float64", 8, K_UNSIGNED},
    {"uint8 equal", 1, K_UNSIGNED},
    {"uint16 equal", 2, K_UNSIGNED},
    {"int32 equal", 4, K_SIGNED},
    {"uint32 equal", 4, K_UNSIGNED},
    {"int64 equal", 8, K_SIGNED},
    {"uint64 equal", 8, K_UNSIGNED},
    {"int32 le", 4, K_SIGNED},
};

static json_t *insp_value(struct insp *x, struct ferry_reader *r, const char *type,
			  const uint8_t *p, size_t size, size_t at)
{
	for (size_t i = 0; i < sizeof(insp_types) / sizeof(insp_types[0]); i++) {
		if (strcmp(type, insp_types[i].type) != 0 || size != insp_types[i].width)
			continue;
		uint64_t v = 0;

		for (size_t k = 0; k < size; k++)
			v = (v << 8) | p[k];
		switch (insp_types[i].kind) {
		case K_BOOL:
			if (v <= 1)
				return json_boolean(v);
			if (insp_warn(x, r, at, "bool of value %u", (unsigned)v) < 0)
				return NULL;
			return json_integer((json_int_t)v);
		case K_SIGNED: {
			unsigned shift = 64 - 8 * (unsigned)size;
			/* Sign-extend through the unsigned value; no implementation-defined shifts.
			 */
			uint64_t sign = (uint64_t)1 << (63 - shift);
			int64_t sv = (int64_t)((v ^ sign) - sign);

			return json_integer(sv);
		}
		case K_UNSIGNED:
			return insp_u64(v);
		}
	}
	if (strcmp(type, "nullptr") == 0 && size == 1) {
		if (p[0] == NULLPTR_MARKER)
			return json_null();
		if (insp_warn(x, r, at, "null-pointer marker 0x%02x, expected 0x30", p[0]) < 0)
			return NULL;
	}
	return insp_hex(p, size);
}

static int insp_vmsd(struct insp *x, struct ferry_reader *r, json_t *desc, json_t *out, int depth);

/* A vmdesc integer member: -1 when absent, -2 when present but not an integer >= 0. */
static json_int_t insp_desc_int(json_t *obj, const char *key)
{
	json_t *v = json_object_get(obj, key);

	if (!v)
		return -1;
	if (!json_is_integer(v) || json_integer_value(v) < 0)
		return -2;
	return json_integer_value(v);
}

static int insp_field(struct insp *x, struct ferry_reader *r, json_t *f, json_t *outf, int depth)
{
	const char *name = json_string_value(json_object_get(f, "name"));
	const char *type = json_string_value(json_object_get(f, "type"));
	json_int_t size = insp_desc_int(f, "size");
	json_int_t array_len = insp_desc_int(f, "array_len");
	json_int_t index = insp_desc_int(f, "index");
	json_t *sdesc = json_object_get(f, "struct");
	size_t at = insp_off(r);
	json_t *o = NULL, *values = NULL;
	json_int_t count;

	/* VMSTATE_WITH_TMP describes its temporary inline: the field is the vmsd. */
	if (!sdesc && json_is_array(json_object_get(f, "fields")))
		sdesc = f;
	if (!name || !type || size < 0 || array_len == -2 || index == -2 ||
	    (sdesc && !json_is_object(sdesc)))
		return insp_fail_at(x, r, at, FERRY_EBADSTREAM,
				    "vmdesc field %s%s%s lacks a name, type or size, or has a "
				    "malformed array_len, index or struct",
				    name ? "'" : "", name ? name : "", name ? "'" : "");
	count = array_len >= 0 ? array_len : 1;
	if (size > 0 && (uint64_t)count > (x->end - at) / (uint64_t)size)
		return insp_fail_at(x, r, at, FERRY_ETRUNCATED,
				    "field '%s': %lld x %lld bytes, but %zu remain before %s", name,
				    (long long)count, (long long)size, x->end - at,
				    x->vmdesc ? "the vmdesc" : "the end");
	if ((uint64_t)count > x->budget)
		return insp_fail_at(x, r, at, FERRY_ELIMIT,
				    "field '%s': %lld elements, more than the stream can hold",
				    name, (long long)count);
	x->budget -= (uint64_t)count;
	if (outf) {
		o = json_object();
		insp_push(x, outf, o);
		insp_set(x, o, "name", json_string(name));
		insp_set(x, o, "type", json_string(type));
		insp_set(x, o, "size", json_integer(size));
		if (array_len >= 0)
			insp_set(x, o, "array_len", json_integer(array_len));
		if (index >= 0)
			insp_set(x, o, "index", json_integer(index));
		if (array_len >= 0) {
			values = json_array();
			insp_set(x, o, "value", values);
		}
	}
	for (json_int_t i = 0; i < count; i++) {
		size_t eat = insp_off(r);
		json_t *v = NULL;

		if (sdesc) {
			v = outf ? json_object() : NULL;
			if (insp_vmsd(x, r, sdesc, v, depth + 1) < 0) {
				json_decref(v);
				return ferry_reader_error(r);
			}
			if (insp_off(r) - eat != (size_t)size) {
				json_decref(v);
				return insp_fail_at(
				    x, r, eat, FERRY_EBADSTREAM,
				    "field '%s': struct '%s' takes %zu bytes, the "
				    "vmdesc says %lld",
				    name,
				    json_string_value(json_object_get(sdesc, "vmsd_name")) ?: "?",
				    insp_off(r) - eat, (long long)size);
			}
		} else {
			const uint8_t *p = insp_take(x, r, (size_t)size);

			if (!p)
				return ferry_reader_error(r);
			if (outf) {
				v = insp_value(x, r, type, p, (size_t)size, eat);
				if (!v && ferry_reader_error(r))
					return ferry_reader_error(r);
			} else if (x->opts.strict) {
				/* Summary mode skips the values but still applies --strict. */
				json_decref(insp_value(x, r, type, p, (size_t)size, eat));
				if (ferry_reader_error(r))
					return ferry_reader_error(r);
			}
		}
		if (!outf)
			continue;
		if (values)
			insp_push(x, values, v);
		else
			insp_set(x, o, "value", v);
	}
	return 0;
}

static int insp_subsection(struct insp *x, struct ferry_reader *r, json_t *sub, json_t *outs,
			   int depth)
{
	const char *want = json_string_value(json_object_get(sub, "vmsd_name"));
	json_int_t version = insp_desc_int(sub, "version");
	size_t at = insp_off(r);
	json_t *o = NULL;
	char name[256];
	int b, n;

	if (!want || version < 0)
		return insp_fail_at(x, r, at, FERRY_EBADSTREAM,
				    "vmdesc subsection without a vmsd_name or version");
	b = ferry_peek_u8(r);
	if (b != FERRY_VM_SUBSECTION) {
		if (b < 0)
			return ferry_reader_fail(r, b, "expected subsection '%s', found the end",
						 want);
		return insp_fail_at(x, r, at, FERRY_EBADSTREAM,
				    "expected subsection 0x05 '%s', found 0x%02x", want, b);
	}
	ferry_get_u8(r);
	n = ferry_get_cstr(r, name);
	uint32_t wire_version = ferry_get_be32(r);
	if (n < 0 || ferry_reader_error(r))
		return ferry_reader_error(r);
	if (strcmp(name, want) != 0)
		return insp_fail_at(x, r, at, FERRY_EBADSTREAM,
				    "subsection '%s', the vmdesc expects '%s'", name, want);
	if ((json_int_t)wire_version != version)
		return insp_fail_at(x, r, at, FERRY_EBADSTREAM,
				    "subsection '%s' version %" PRIu32 ", the vmdesc says %lld",
				    name, wire_version, (long long)version);
	if (outs) {
		o = json_object();
		insp_push(x, outs, o);
		insp_set(x, o, "name", json_string(name));
		insp_set(x, o, "version", json_integer(wire_version));
		insp_set(x, o, "offset", json_integer((json_int_t)at));
	}
	if (insp_vmsd(x, r, sub, o, depth + 1) < 0) {
		insp_context(x, r, "subsection '%s'", name);
		return ferry_reader_error(r);
	}
	return 0;
}

/*
 * Walk one vmsd's payload: its fields, then its subsections in the order the
 * vmdesc lists them (the order they were written). @out is NULL in summary
 * mode; otherwise it receives "fields" (and "subsections").
 */
static int insp_vmsd(struct insp *x, struct ferry_reader *r, json_t *desc, json_t *out, int depth)
{
	json_t *fields = json_object_get(desc, "fields");
	json_t *subs = json_object_get(desc, "subsections");
	json_t *outf = NULL, *outs = NULL, *f;
	size_t i;

	if (depth > FERRY_MAX_NESTING)
		return insp_fail_at(x, r, insp_off(r), FERRY_ELIMIT,
				    "the vmdesc nests structs and subsections deeper than %d",
				    FERRY_MAX_NESTING);
	if ((fields && !json_is_array(fields)) || (subs && !json_is_array(subs)))
		return insp_fail_at(x, r, insp_off(r), FERRY_EBADSTREAM,
				    "vmdesc 'fields' or 'subsections' is not an array");
	if (out) {
		const char *vname = json_string_value(json_object_get(desc, "vmsd_name"));

		if (vname && !json_object_get(out, "vmsd_name") && !json_object_get(out, "name"))
			insp_set(x, out, "vmsd_name", json_string(vname));
		outf = json_array();
		insp_set(x, out, "fields", outf);
	}
	json_array_foreach(fields, i, f)
	{
		if (insp_field(x, r, f, outf, depth) < 0) {
			const char *name = json_string_value(json_object_get(f, "name"));

			if (name)
				insp_context(x, r, "field '%s'", name);
			return ferry_reader_error(r);
		}
	}
	if (json_array_size(subs) == 0)
		return 0;
	if (out) {
		outs = json_array();
		insp_set(x, out, "subsections", outs);
	}
	json_array_foreach(subs, i, f)
	{
		if (insp_subsection(x, r, f, outs, depth) < 0)
			return ferry_reader_error(r);
	}
	return 0;
}

static int insp_device(struct insp *x, struct ferry_reader *r, json_t *s, const char *idstr,
		       uint32_t instance, uint32_t version)
{
	json_t *devices, *dev;
	const char *dname;
	json_int_t dinst, dver, dsize;
	size_t at = insp_off(r);

	x->nfull++;
	if (!x->vmdesc)
		return insp_fail_at(x, r, at, FERRY_ENOSECTION,
				    "a FULL section has no length on the wire and the stream has "
				    "no vmdesc to size it, so the walk stops here%s%s%s",
				    x->vmdesc_hint[0] ? " (" : "", x->vmdesc_hint,
				    x->vmdesc_hint[0] ? ")" : "");
	devices = json_object_get(x->vmdesc, "devices");
	dev = json_array_get(devices, x->next_dev);
	if (!dev)
		return insp_fail_at(x, r, at, FERRY_EBADSTREAM,
				    "the vmdesc lists %zu devices; this is FULL section %zu",
				    json_array_size(devices), x->nfull);
	x->next_dev++;
	dname = json_string_value(json_object_get(dev, "name"));
	dinst = insp_desc_int(dev, "instance_id");
	dver = insp_desc_int(dev, "version");
	dsize = insp_desc_int(dev, "size");
	if (!dname || strcmp(dname, idstr) != 0 || dinst != (json_int_t)instance)
		return insp_fail_at(x, r, at, FERRY_EBADSTREAM,
				    "vmdesc device %zu is '%s' instance %lld, not this section",
				    x->next_dev - 1, dname ? dname : "?", (long long)dinst);
	if (dver >= 0 && dver != (json_int_t)version)
		return insp_fail_at(x, r, at, FERRY_EBADSTREAM,
				    "the vmdesc says version %lld, the section header %" PRIu32,
				    (long long)dver, version);
	if (dver == -2 || dsize == -2)
		return insp_fail_at(x, r, at, FERRY_EBADSTREAM,
				    "vmdesc device %zu has a malformed version or size",
				    x->next_dev - 1);
	if (insp_vmsd(x, r, dev, x->opts.summary ? NULL : s, 0) < 0)
		return ferry_reader_error(r);
	/* Devices with their own save function state their payload size. */
	if (dsize >= 0 && insp_off(r) - at != (size_t)dsize)
		return insp_fail_at(x, r, at, FERRY_EBADSTREAM,
				    "payload of %zu bytes, the vmdesc says %lld", insp_off(r) - at,
				    (long long)dsize);
	return 0;
}

/* ---- sections (FORMAT.md §5) ------------------------------------------------------- */

static const char *const insp_sec_types[] = {
    [FERRY_VM_SECTION_START] = "START",
    [FERRY_VM_SECTION_PART] = "PART",
    [FERRY_VM_SECTION_END] = "END",
    [FERRY_VM_SECTION_FULL] = "FULL",
};

static struct insp_sec *insp_sec_find(struct insp *x, uint32_t id)
{
	for (size_t i = 0; i < x->nsecs; i++)
		if (x->secs[i].id == id)
			return &x->secs[i];
	return NULL;
}

/* Remember an iterative section's START so its PART/END can be named. */
static int insp_sec_open(struct insp *x, struct ferry_reader *r, const struct insp_sec *sec,
			 size_t at)
{
	struct insp_sec *old = insp_sec_find(x, sec->id);

	if (old) {
		*old = *sec;
		return 0;
	}
	if (x->nsecs >= INSP_MAX_ITER_SECTIONS)
		return insp_fail_at(x, r, at, FERRY_ELIMIT, "more than %u iterative sections",
				    INSP_MAX_ITER_SECTIONS);
	if (!x->secs) {
		x->secs = calloc(INSP_MAX_ITER_SECTIONS, sizeof(*x->secs));
		if (!x->secs)
			return ferry_reader_fail(r, -ENOMEM, "out of memory");
	}
	x->secs[x->nsecs++] = *sec;
	return 0;
}

static int insp_footer(struct insp *x, struct ferry_reader *r, uint32_t id, json_t *s)
{
	size_t at = insp_off(r);
	int b = ferry_peek_u8(r);

	if (b < 0)
		return ferry_reader_fail(r, b, "expected footer 0x7e, found the end of the %s",
					 x->vmdesc ? "stream before the vmdesc" : "stream");
	if (b != FERRY_VM_SECTION_FOOTER)
		return insp_fail_at(x, r, at, FERRY_EFOOTER, "expected footer 0x7e, found 0x%02x",
				    b);
	ferry_get_u8(r);
	uint32_t fid = ferry_get_be32(r);
	if (ferry_reader_error(r))
		return ferry_reader_error(r);
	if (fid != id)
		return insp_fail_at(x, r, at + 1, FERRY_EFOOTER,
				    "footer names section %" PRIu32 ", expected %" PRIu32, fid, id);
	insp_set(x, s, "footer_offset", json_integer((json_int_t)at));
	return 0;
}

static int insp_section(struct insp *x, struct ferry_reader *r, uint8_t type, json_t *sections,
			size_t at)
{
	json_t *s = json_object();
	struct insp_sec sec = {0}, *open;
	size_t payload;
	int n, ret;

	insp_push(x, sections, s);
	insp_set(x, s, "type", json_string(insp_sec_types[type]));
	insp_set(x, s, "offset", json_integer((json_int_t)at));
	sec.id = ferry_get_be32(r);
	if (type == FERRY_VM_SECTION_START || type == FERRY_VM_SECTION_FULL) {
		n = ferry_get_cstr(r, sec.idstr);
		sec.instance = ferry_get_be32(r);
		sec.version = ferry_get_be32(r);
		if (n < 0 || ferry_reader_error(r)) {
			insp_context(x, r, "%s section header at offset %zu", insp_sec_types[type],
				     at);
			return ferry_reader_error(r);
		}
		if (type == FERRY_VM_SECTION_START && insp_sec_open(x, r, &sec, at) < 0)
			return ferry_reader_error(r);
	} else {
		if (ferry_reader_error(r)) {
			insp_context(x, r, "%s section header at offset %zu", insp_sec_types[type],
				     at);
			return ferry_reader_error(r);
		}
		open = insp_sec_find(x, sec.id);
		if (!open)
			return insp_fail_at(x, r, at, FERRY_EBADSTREAM,
					    "%s for section id %" PRIu32 ", which no START opened",
					    insp_sec_types[type], sec.id);
		sec = *open;
	}
	insp_set(x, s, "section_id", json_integer(sec.id));
	insp_set(x, s, "idstr", insp_str(sec.idstr, strlen(sec.idstr)));
	insp_set(x, s, "instance_id", json_integer(sec.instance));
	insp_set(x, s, "version", json_integer(sec.version));
	payload = insp_off(r);
	insp_set(x, s, "payload_offset", json_integer((json_int_t)payload));
	/* Known once the payload is walked; null in the JSON of a walk that failed inside. */
	insp_set(x, s, "payload_size", json_null());
	insp_set(x, s, "footer_offset", json_null());

	if (type == FERRY_VM_SECTION_FULL) {
		ret = insp_device(x, r, s, sec.idstr, sec.instance, sec.version);
	} else if (strcmp(sec.idstr, "ram") == 0) {
		if (sec.version != 4)
			ret = insp_fail_at(x, r, at, FERRY_EVERSION,
					   "RAM section version %" PRIu32 ", expected 4",
					   sec.version);
		else
			ret = insp_ram(x, r, s);
	} else {
		ret = insp_fail_at(x, r, payload, FERRY_ENOSECTION,
				   "the payload of iterative section '%s' has no length on the "
				   "wire and inspect only knows the format of 'ram'",
				   sec.idstr);
	}
	if (ret == 0) {
		insp_set(x, s, "payload_size", json_integer((json_int_t)(insp_off(r) - payload)));
		ret = insp_footer(x, r, sec.id, s);
	}
	if (ret < 0)
		insp_context(x, r, "section %" PRIu32 " '%s' instance %" PRIu32, sec.id, sec.idstr,
			     sec.instance);
	return ret;
}

/* ---- the walk -------------------------------------------------------------------- */

/*
 * Walk records until EOF (the top level, @stop == 0) or until the reader
 * reaches @stop (inside a PACKAGED command). Records go into @commands and
 * @sections.
 */
static int insp_walk(struct insp *x, struct ferry_reader *r, json_t *commands, json_t *sections,
		     size_t stop)
{
	bool first = stop == 0;

	for (;;) {
		size_t at = insp_off(r);
		int t, ret = 0;

		if (stop && at == stop)
			return 0;
		if (stop && at > stop)
			return insp_fail_at(x, r, at, FERRY_EBADSTREAM,
					    "a record inside PACKAGED runs %zu bytes past its end",
					    at - stop);
		t = ferry_peek_u8(r);
		if (t < 0) {
			if (x->vmdesc)
				return ferry_reader_fail(r, t,
							 "expected a record or EOF (0x00) before "
							 "the vmdesc");
			return ferry_reader_fail(r, t,
						 "expected a record or EOF (0x00), found "
						 "the end of the stream%s%s%s",
						 x->vmdesc_hint[0] ? " (" : "", x->vmdesc_hint,
						 x->vmdesc_hint[0] ? ")" : "");
		}
		switch (t) {
		case FERRY_VM_EOF:
			ferry_get_u8(r);
			if (stop)
				return insp_fail_at(x, r, at, FERRY_EBADSTREAM,
						    "EOF (0x00) inside PACKAGED data");
			insp_set(x, x->root, "eof", json_pack("{sI}", "offset", (json_int_t)at));
			return 0;
		case FERRY_VM_CONFIGURATION:
			if (!first)
				return insp_fail_at(
				    x, r, at, FERRY_EBADSTREAM, "configuration (0x07) %s",
				    stop ? "inside PACKAGED data" : "after the first record");
			ferry_get_u8(r);
			ret = insp_config(x, r, at);
			break;
		case FERRY_VM_COMMAND:
			ferry_get_u8(r);
			ret = insp_command(x, r, commands, at);
			break;
		case FERRY_VM_SECTION_START:
		case FERRY_VM_SECTION_PART:
		case FERRY_VM_SECTION_END:
		case FERRY_VM_SECTION_FULL:
			ferry_get_u8(r);
			ret = insp_section(x, r, (uint8_t)t, sections, at);
			break;
		default:
			return insp_fail_at(x, r, at, FERRY_EBADSTREAM,
					    "unknown record type 0x%02x (expected 0x00-0x04, "
					    "0x07 or 0x08)",
					    t);
		}
		if (ret < 0)
			return ret;
		first = false;
	}
}

/* After EOF: the vmdesc, or whatever else follows. */
static int insp_after_eof(struct insp *x, struct ferry_reader *r)
{
	size_t at = insp_off(r);
	size_t ndev = json_array_size(json_object_get(x->vmdesc, "devices"));

	if (x->vmdesc) {
		if (at != x->vmdesc_off)
			return insp_fail_at(x, r, at, FERRY_EBADSTREAM,
					    "%zu bytes between EOF and the vmdesc at offset %zu",
					    x->vmdesc_off - at, x->vmdesc_off);
		if (ndev != x->next_dev)
			return insp_warn(x, r, x->vmdesc_off,
					 "the vmdesc lists %zu devices, the stream has %zu FULL "
					 "sections",
					 ndev, x->next_dev);
		return 0;
	}
	if (at == x->len)
		return 0;
	if (x->data[at] == FERRY_VM_VMDESCRIPTION)
		return insp_fail_at(x, r, at, FERRY_EBADSTREAM, "broken vmdesc: %s",
				    x->vmdesc_hint[0] ? x->vmdesc_hint
						      : "no JSON object reaching the end");
	return insp_warn(x, r, at, "%zu bytes after EOF are not a vmdesc (first byte 0x%02x)",
			 x->len - at, x->data[at]);
}

static int insp_header(struct insp *x, struct ferry_reader *r)
{
	uint32_t magic, version;

	if (x->len < 8)
		return ferry_reader_fail(r, FERRY_ETRUNCATED,
					 "expected the 8-byte header (magic, version), the stream "
					 "has %zu bytes",
					 x->len);
	magic = be32_at(x->data);
	version = be32_at(x->data + 4);
	insp_set(x, x->root, "magic", json_sprintf("0x%08" PRIx32, magic));
	insp_set(x, x->root, "version", json_integer(version));
	if (magic != FERRY_VM_FILE_MAGIC)
		return ferry_reader_fail(r, FERRY_EBADMAGIC,
					 "expected magic 0x5145564d (\"QEVM\"), found 0x%08" PRIx32,
					 magic);
	ferry_reader_skip(r, 4);
	if (version == 2)
		return ferry_reader_fail(r, FERRY_EVERSION,
					 "version 2 is the obsolete savevm v2 format");
	if (version != FERRY_VM_FILE_VERSION)
		return ferry_reader_fail(r, FERRY_EVERSION, "expected version 3, found %" PRIu32,
					 version);
	return ferry_reader_skip(r, 4);
}

/* Validate the vmdesc's top level and take the page size from it. */
static int insp_vmdesc_top(struct insp *x, struct ferry_reader *r)
{
	json_t *ps = json_object_get(x->vmdesc, "page_size");
	json_t *devices = json_object_get(x->vmdesc, "devices");
	json_t *v = json_object();

	insp_set(x, x->root, "vmdesc", v);
	insp_set(x, v, "offset", json_integer((json_int_t)x->vmdesc_off));
	insp_set(x, v, "size", json_integer((json_int_t)(x->len - x->vmdesc_off - 5)));
	insp_set(x, v, "devices", json_integer((json_int_t)json_array_size(devices)));
	if (devices && !json_is_array(devices))
		return insp_fail_at(x, r, x->vmdesc_off, FERRY_EBADSTREAM,
				    "vmdesc: 'devices' is not an array");
	if (ps) {
		if (!json_is_integer(ps) || !insp_is_page_size((uint64_t)json_integer_value(ps)))
			return insp_fail_at(x, r, x->vmdesc_off, FERRY_EBADSTREAM,
					    "vmdesc: page_size is not a power of two from %u to %u",
					    INSP_MIN_PAGE, INSP_MAX_PAGE);
		x->page_size = (uint32_t)json_integer_value(ps);
		x->page_size_from_vmdesc = true;
		insp_set(x, v, "page_size", json_integer(x->page_size));
	}
	return 0;
}

/* Take the JSON text of @j, in a buffer from malloc() whatever jansson's allocator is. */
static char *insp_dump(const json_t *j, unsigned indent)
{
	size_t flags = JSON_PRESERVE_ORDER | JSON_INDENT(indent > 31 ? 31 : indent) |
		       (indent ? 0 : JSON_COMPACT);
	size_t n = json_dumpb(j, NULL, 0, flags);
	char *s;

	if (n == 0)
		return NULL;
	s = malloc(n + 2);
	if (!s)
		return NULL;
	if (json_dumpb(j, s, n, flags) != n) {
		free(s);
		return NULL;
	}
	s[n] = '\n';
	s[n + 1] = '\0';
	return s;
}

/* The whole stream's RAM totals, per block and per record kind. */
static void insp_ram_totals(struct insp *x)
{
	if (!x->ram)
		return;
	for (size_t i = 0; i < x->nblocks; i++)
		insp_set(x, x->blocks[i].out, "pages",
			 insp_pages_json(x, NULL, &x->blocks[i].total));
	insp_set(x, x->ram, "counts", insp_counts_json(&x->ram_total));
}

/* Set *@err_out and the root's "error" member from the failed reader. */
static int insp_report(struct insp *x, struct ferry_reader *r, int err, char **err_out)
{
	const char *msg = x->errmsg[0] ? x->errmsg : ferry_reader_errmsg(r);
	char fallback[64];
	json_t *e = json_object();

	if (!msg[0]) {
		snprintf(fallback, sizeof(fallback), "offset %zu: %s", insp_off(r),
			 ferry_strerror(err));
		msg = fallback;
	}
	insp_set(x, x->root, "error", e);
	insp_set(x, e, "code", json_string(ferry_err_name(err)));
	/* Every message starts with "offset N: ". */
	insp_set(x, e, "offset", json_integer((json_int_t)strtoull(msg + 7, NULL, 10)));
	insp_set(x, e, "message", insp_clean_json(msg));
	if (err_out) {
		*err_out = insp_clean(msg);
		if (!*err_out)
			return -ENOMEM;
	}
	return err;
}

int ferry_inspect(const uint8_t *data, size_t len, const struct ferry_inspect_opts *opts,
		  char **json_out, char **err_out)
{
	struct insp x = {0};
	struct ferry_reader *r = NULL;
	int ret;

	if (err_out)
		*err_out = NULL;
	if (!json_out || (!data && len))
		return -EINVAL;
	*json_out = NULL;
	if (opts)
		x.opts = *opts;
	x.data = data;
	x.len = x.end = len;
	x.page_size = 4096;
	x.last_block = -1;
	x.budget = (uint64_t)len + INSP_VALUE_SLACK;
	x.root = json_object();
	x.warnings = json_array();
	x.blocks = calloc(INSP_MAX_BLOCKS, sizeof(*x.blocks));
	if (!x.root || !x.warnings || !x.blocks) {
		ret = -ENOMEM;
		goto out_free;
	}
	/* Fixed key order; members not found in the stream stay null. */
	insp_set(&x, x.root, "size", json_integer((json_int_t)len));
	insp_set(&x, x.root, "magic", json_null());
	insp_set(&x, x.root, "version", json_null());
	if (!x.opts.desc_only) {
		insp_set(&x, x.root, "configuration", json_null());
		insp_set(&x, x.root, "commands", json_array());
		insp_set(&x, x.root, "sections", json_array());
		insp_set(&x, x.root, "ram", json_null());
		insp_set(&x, x.root, "eof", json_null());
	}
	insp_set(&x, x.root, "vmdesc", json_null());

	insp_find_vmdesc(&x);
	ret = ferry_reader_create_mem(data, x.end, &r);
	if (ret < 0)
		goto out_free;
	ret = insp_header(&x, r);
	if (ret == 0 && x.opts.desc_only) {
		if (!x.vmdesc) {
			ret = ferry_reader_fail(r, FERRY_ENOSECTION,
						"the stream has no vmdesc (no 00 06 <be32 length> "
						"<JSON> reaching its end)%s%s%s",
						x.vmdesc_hint[0] ? " (" : "", x.vmdesc_hint,
						x.vmdesc_hint[0] ? ")" : "");
		} else {
			*json_out = insp_dump(x.vmdesc, x.opts.indent);
			ret = *json_out ? 0 : -ENOMEM;
			goto out_free;
		}
	}
	if (ret == 0 && x.vmdesc)
		ret = insp_vmdesc_top(&x, r);
	if (ret == 0 && !x.opts.desc_only)
		ret = insp_walk(&x, r, json_object_get(x.root, "commands"),
				json_object_get(x.root, "sections"), 0);
	if (ret == 0 && !x.opts.desc_only)
		ret = insp_after_eof(&x, r);
	insp_ram_totals(&x);
	insp_set(&x, x.root, "complete", json_boolean(ret == 0));
	insp_set(&x, x.root, "warnings", json_incref(x.warnings));
	if (x.nwarnings > INSP_MAX_WARNINGS)
		insp_set(&x, x.root, "warnings_dropped",
			 json_integer((json_int_t)(x.nwarnings - INSP_MAX_WARNINGS)));
	if (ret < 0)
		ret = insp_report(&x, r, ret, err_out);
	if (x.oom) {
		ret = -ENOMEM;
		goto out_free;
	}
	*json_out = insp_dump(x.root, x.opts.indent);
	if (!*json_out)
		ret = -ENOMEM;
out_free:
	if (ret == -ENOMEM && err_out) {
		free(*err_out);
		*err_out = NULL;
	}
	ferry_reader_destroy(r);
	json_decref(x.vmdesc);
	json_decref(x.warnings);
	json_decref(x.root);
	free(x.blocks);
	free(x.secs);
	return ret;
}
