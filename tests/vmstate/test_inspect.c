/* SPDX-License-Identifier: MIT */
/*
 * ferry_inspect() on hand-built streams: every record kind of FORMAT.md, a
 * device decoded through a hand-written vmdesc, and broken streams (every
 * prefix, every corrupted byte, targeted errors) that must fail with an
 * offset, print the JSON read so far, and never crash or leak.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ferry/error.h>
#include <ferry/inspect.h>
#include <ferry/savevm.h>
#include <ferry/stream.h>

#define PAGE 4096u

/* RAM record flags, FORMAT.md §8. */
#define F_ZERO	   0x002u
#define F_MEM_SIZE 0x004u
#define F_PAGE	   0x008u
#define F_EOS	   0x010u
#define F_CONT	   0x020u
#define F_XBZRLE   0x040u
#define F_HOOK	   0x080u
#define F_COMPRESS 0x100u
#define F_FLUSH	   0x200u

/* ---- building streams --------------------------------------------------------------- */

static struct ferry_writer *sb_new(void)
{
	struct ferry_writer *w;

	cr_assert_eq(ferry_writer_create_mem(0, &w), 0);
	ferry_put_be32(w, 0x5145564d);
	ferry_put_be32(w, 3);
	return w;
}

static void sb_config(struct ferry_writer *w, const char *machine)
{
	ferry_put_u8(w, 0x07);
	ferry_put_be32(w, (uint32_t)strlen(machine));
	ferry_put_buffer(w, machine, strlen(machine));
}

static void sb_start(struct ferry_writer *w, uint8_t type, uint32_t id, const char *idstr,
		     uint32_t instance, uint32_t version)
{
	ferry_put_u8(w, type);
	ferry_put_be32(w, id);
	ferry_put_cstr(w, idstr);
	ferry_put_be32(w, instance);
	ferry_put_be32(w, version);
}

static void sb_part(struct ferry_writer *w, uint8_t type, uint32_t id)
{
	ferry_put_u8(w, type);
	ferry_put_be32(w, id);
}

static void sb_footer(struct ferry_writer *w, uint32_t id)
{
	ferry_put_u8(w, 0x7e);
	ferry_put_be32(w, id);
}

static void sb_command(struct ferry_writer *w, uint16_t cmd, const void *data, uint16_t len)
{
	ferry_put_u8(w, 0x08);
	ferry_put_be16(w, cmd);
	ferry_put_be16(w, len);
	ferry_put_buffer(w, data, len);
}

/* A RAM page record's word, then the block name unless CONTINUE. */
static void sb_ram_rec(struct ferry_writer *w, uint64_t addr, uint32_t flags, const char *block)
{
	ferry_put_be64(w, addr | flags);
	if (!(flags & F_CONT) && block)
		ferry_put_cstr(w, block);
}

static void sb_vmdesc(struct ferry_writer *w, const char *json)
{
	ferry_put_u8(w, 0x00); /* EOF */
	ferry_put_u8(w, 0x06);
	ferry_put_be32(w, (uint32_t)strlen(json));
	ferry_put_buffer(w, json, strlen(json));
}

/* The bytes of @w, copied (the writer is destroyed). */
static uint8_t *sb_finish(struct ferry_writer *w, size_t *len)
{
	const uint8_t *p = ferry_writer_mem_data(w, len);
	uint8_t *copy;

	cr_assert_not_null(p);
	cr_assert_eq(ferry_writer_error(w), 0);
	copy = malloc(*len ? *len : 1);
	cr_assert_not_null(copy);
	memcpy(copy, p, *len);
	ferry_writer_destroy(w);
	return copy;
}

/* ---- running inspect ---------------------------------------------------------------- */

static json_t *run(const uint8_t *data, size_t len, const struct ferry_inspect_opts *opts, int *ret,
		   char **err)
{
	char *text = NULL;
	json_error_t jerr;
	json_t *j;

	*ret = ferry_inspect(data, len, opts, &text, err);
	cr_assert_not_null(text, "no JSON (ret %d)", *ret);
	j = json_loads(text, 0, &jerr);
	cr_assert_not_null(j, "output is not JSON: %s\n%s", jerr.text, text);
	free(text);
	return j;
}

static json_t *inspect_ok(const uint8_t *data, size_t len, const struct ferry_inspect_opts *opts)
{
	char *err = NULL;
	int ret;
	json_t *j = run(data, len, opts, &ret, &err);

	cr_assert_eq(ret, 0, "inspect failed: %d %s", ret, err ? err : "");
	cr_assert_null(err);
	cr_assert(json_is_true(json_object_get(j, "complete")));
	cr_assert_null(json_object_get(j, "error"));
	return j;
}

/* Inspect a broken stream: @code expected, message containing @want (and "offset "). */
static json_t *inspect_fail(const uint8_t *data, size_t len, const struct ferry_inspect_opts *opts,
			    int code, const char *want)
{
	char *err = NULL;
	int ret;
	json_t *j = run(data, len, opts, &ret, &err);

	cr_assert_eq(ret, code, "expected %s, got %d (%s): %s", ferry_err_name(code), ret,
		     ferry_err_name(ret), err ? err : "(null)");
	cr_assert_not_null(err);
	cr_assert(strncmp(err, "offset ", 7) == 0, "message without offset: %s", err);
	cr_assert_not_null(strstr(err, want), "message '%s' lacks '%s'", err, want);
	cr_assert(json_is_false(json_object_get(j, "complete")));
	json_t *e = json_object_get(j, "error");
	cr_assert_str_eq(json_string_value(json_object_get(e, "message")), err);
	cr_assert_str_eq(json_string_value(json_object_get(e, "code")), ferry_err_name(code));
	cr_assert(json_integer_value(json_object_get(e, "offset")) <= (json_int_t)len);
	free(err);
	return j;
}

/* json_object_get on a path of keys and array indexes, e.g. jget(j, "sections", 2, "type"). */
static json_t *jpath(json_t *j, const char *path)
{
	char buf[256], *save = NULL;

	snprintf(buf, sizeof(buf), "%s", path);
	for (char *tok = strtok_r(buf, ".", &save); tok && j; tok = strtok_r(NULL, ".", &save)) {
		char *end;
		long idx = strtol(tok, &end, 10);

		j = (*end == '\0' && json_is_array(j)) ? json_array_get(j, (size_t)idx)
						       : json_object_get(j, tok);
	}
	cr_assert_not_null(j, "no %s in the JSON", path);
	return j;
}

static json_int_t jint(json_t *j, const char *path)
{
	json_t *v = jpath(j, path);

	cr_assert(json_is_integer(v), "%s is not an integer", path);
	return json_integer_value(v);
}

static const char *jstr(json_t *j, const char *path)
{
	json_t *v = jpath(j, path);

	cr_assert(json_is_string(v), "%s is not a string", path);
	return json_string_value(v);
}

/* ---- the reference stream ----------------------------------------------------------- */

/*
 * A device "uart" whose vmdesc covers every shape the decoder knows: integers
 * of each width and sign, a timer, bool, buffer, uint64 above INT64_MAX,
 * null-pointer markers, a struct, an indexed struct with its own subsection,
 * an inline VMSTATE_WITH_TMP vmsd, and nested subsections. Its payload is 111
 * bytes (70 of fields, 18 + 23 of subsections). Then "legacy", an old-style device of 3 opaque
 * bytes.
 */
static const char uart_vmdesc[] =
    "{\"page_size\":4096,\"devices\":["
    "{\"name\":\"uart\",\"instance_id\":0,\"vmsd_name\":\"uart\",\"version\":2,\"fields\":["
    "{\"name\":\"lsr\",\"type\":\"uint8\",\"size\":1},"
    "{\"name\":\"div\",\"type\":\"uint16\",\"size\":2},"
    "{\"name\":\"regs\",\"array_len\":3,\"type\":\"uint32\",\"size\":4},"
    "{\"name\":\"off\",\"type\":\"int64\",\"size\":8},"
    "{\"name\":\"t\",\"type\":\"timer\",\"size\":8},"
    "{\"name\":\"on\",\"type\":\"bool\",\"size\":1},"
    "{\"name\":\"small\",\"type\":\"int8\",\"size\":1},"
    "{\"name\":\"buf\",\"type\":\"buffer\",\"size\":4},"
    "{\"name\":\"big\",\"type\":\"uint64\",\"size\":8},"
    "{\"name\":\"ptrs\",\"array_len\":2,\"type\":\"nullptr\",\"size\":1},"
    "{\"name\":\"fifo\",\"type\":\"struct\",\"struct\":{\"vmsd_name\":\"uart_fifo\","
    "\"version\":1,\"fields\":[{\"name\":\"head\",\"type\":\"uint8\",\"size\":1},"
    "{\"name\":\"count\",\"type\":\"uint32\",\"size\":4}]},\"size\":5},"
    "{\"name\":\"q\",\"index\":0,\"type\":\"struct\",\"struct\":{\"vmsd_name\":\"q\","
    "\"version\":1,\"fields\":[{\"name\":\"v\",\"type\":\"uint16\",\"size\":2}],"
    "\"subsections\":[{\"vmsd_name\":\"q/extra\",\"version\":3,\"fields\":"
    "[{\"name\":\"x\",\"type\":\"uint8\",\"size\":1}]}]},\"size\":16},"
    "{\"name\":\"tmp\",\"type\":\"tmp\",\"vmsd_name\":\"uart_tmp\",\"version\":0,"
    "\"fields\":[{\"name\":\"a\",\"type\":\"uint16\",\"size\":2}],\"size\":2}],"
    "\"subsections\":[{\"vmsd_name\":\"uart/ext\",\"version\":1,\"fields\":"
    "[{\"name\":\"level\",\"type\":\"uint32 equal\",\"size\":4}],\"subsections\":"
    "[{\"vmsd_name\":\"uart/ext/deep\",\"version\":2,\"fields\":"
    "[{\"name\":\"d\",\"type\":\"int32 le\",\"size\":4}]}]}]},"
    "{\"name\":\"legacy\",\"instance_id\":1,\"size\":3,\"fields\":"
    "[{\"name\":\"data\",\"size\":3,\"type\":\"buffer\"}]}]}";

static void sb_uart_payload(struct ferry_writer *w)
{
	ferry_put_u8(w, 0x60);	   /* lsr */
	ferry_put_be16(w, 0x000c); /* div */
	ferry_put_be32(w, 1);	   /* regs */
	ferry_put_be32(w, 2);
	ferry_put_be32(w, 0xffffffffu);
	ferry_put_be64(w, (uint64_t)-5);	    /* off */
	ferry_put_be64(w, UINT64_MAX);		    /* t: not armed */
	ferry_put_u8(w, 1);			    /* on */
	ferry_put_u8(w, 0xfe);			    /* small = -2 */
	ferry_put_buffer(w, "\xde\xad\xbe\xef", 4); /* buf */
	ferry_put_be64(w, UINT64_MAX);		    /* big */
	ferry_put_u8(w, 0x30);			    /* ptrs: two null markers */
	ferry_put_u8(w, 0x30);
	ferry_put_u8(w, 7); /* fifo.head */
	ferry_put_be32(w, 9);
	ferry_put_be16(w, 0x1234); /* q[0].v, then its subsection */
	ferry_put_u8(w, 0x05);
	ferry_put_cstr(w, "q/extra");
	ferry_put_be32(w, 3);
	ferry_put_u8(w, 0x42);
	ferry_put_be16(w, 0xbeef); /* tmp.a */
	ferry_put_u8(w, 0x05);	   /* uart/ext */
	ferry_put_cstr(w, "uart/ext");
	ferry_put_be32(w, 1);
	ferry_put_be32(w, 16);
	ferry_put_u8(w, 0x05); /* uart/ext/deep */
	ferry_put_cstr(w, "uart/ext/deep");
	ferry_put_be32(w, 2);
	ferry_put_be32(w, (uint32_t)-3);
}

/* Everything: configuration, commands, RAM START/PART/PART/END, two devices, EOF, vmdesc. */
static uint8_t *reference_stream(size_t *len)
{
	struct ferry_writer *w = sb_new();
	static uint8_t page[PAGE];
	static const uint8_t ping[4] = {0, 0, 0, 1};
	static const uint8_t advise[16] = {0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0, 0, 0, 0, 0, 0x10, 0};

	memset(page, 0xa5, sizeof(page));
	sb_config(w, "pc-test-1.0");
	sb_command(w, FERRY_CMD_OPEN_RETURN_PATH, NULL, 0);
	sb_command(w, FERRY_CMD_PING, ping, 4);
	sb_command(w, FERRY_CMD_POSTCOPY_ADVISE, advise, 16);

	sb_start(w, 0x01, 2, "ram", 0, 4);
	ferry_put_be64(w, 0x3000 | F_MEM_SIZE);
	ferry_put_cstr(w, "blk.a");
	ferry_put_be64(w, 0x2000);
	ferry_put_cstr(w, "blk.b");
	ferry_put_be64(w, 0x1000);
	ferry_put_be64(w, F_EOS);
	sb_footer(w, 2);

	sb_part(w, 0x02, 2);
	sb_ram_rec(w, 0x0000, F_PAGE, "blk.a");
	ferry_put_buffer(w, page, PAGE);
	sb_ram_rec(w, 0x1000, F_ZERO | F_CONT, NULL);
	ferry_put_u8(w, 0);
	sb_ram_rec(w, 0x0000, F_XBZRLE, "blk.b");
	ferry_put_u8(w, 0x01);
	ferry_put_be16(w, 3);
	ferry_put_buffer(w, "\x01\x02\x03", 3);
	ferry_put_be64(w, F_FLUSH);
	ferry_put_be64(w, F_HOOK);
	ferry_put_be64(w, F_EOS);
	sb_footer(w, 2);

	/* The last block carries over: this PART starts with CONTINUE (FORMAT.md §8). */
	sb_part(w, 0x02, 2);
	sb_ram_rec(w, 0x0000, F_ZERO | F_CONT, NULL);
	ferry_put_u8(w, 0);
	sb_ram_rec(w, 0x1000, F_COMPRESS, "blk.a");
	ferry_put_be32(w, 5);
	ferry_put_buffer(w, "\x78\x9c\x03\x00\x00", 5);
	ferry_put_be64(w, F_EOS);
	sb_footer(w, 2);

	sb_part(w, 0x03, 2);
	ferry_put_be64(w, F_EOS);
	sb_footer(w, 2);

	sb_start(w, 0x04, 3, "uart", 0, 2);
	sb_uart_payload(w);
	sb_footer(w, 3);
	sb_start(w, 0x04, 7, "legacy", 1, 1);
	ferry_put_buffer(w, "abc", 3);
	sb_footer(w, 7);
	sb_vmdesc(w, uart_vmdesc);
	return sb_finish(w, len);
}

/* ---- well-formed streams -------------------------------------------------------------- */

Test(vmstate_inspect, configuration_golden_bytes)
{
	/* FORMAT.md §4: the 7.2 stream with x-ignore-shared, then -uuid with validate-uuid. */
	static const uint8_t s[] = {
	    0x51, 0x45, 0x56, 0x4d, 0x00, 0x00, 0x00, 0x03, 0x07, 0x00, 0x00, 0x00, 0x0d, 'p',
	    'c',  '-',	'i',  '4',  '4',  '0',	'f',  'x',  '-',  '7',	'.',  '2',  0x05, 0x1a,
	    'c',  'o',	'n',  'f',  'i',  'g',	'u',  'r',  'a',  't',	'i',  'o',  'n',  '/',
	    'c',  'a',	'p',  'a',  'b',  'i',	'l',  'i',  't',  'i',	'e',  's',  0x00, 0x00,
	    0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x0f, 'x',  '-',  'i',	'g',  'n',  'o',  'r',
	    'e',  '-',	's',  'h',  'a',  'r',	'e',  'd',  0x05, 0x12, 'c',  'o',  'n',  'f',
	    'i',  'g',	'u',  'r',  'a',  't',	'i',  'o',  'n',  '/',	'u',  'u',  'i',  'd',
	    0x00, 0x00, 0x00, 0x01, 0x6e, 0x0a, 0x1c, 0x3d, 0x5b, 0x2f, 0x4c, 0x8e, 0x9a, 0x71,
	    0xd4, 0xf3, 0xb2, 0xe1, 0xc0, 0xa9, 0x00};
	json_t *j = inspect_ok(s, sizeof(s), NULL);

	cr_assert_str_eq(jstr(j, "magic"), "0x5145564d");
	cr_assert_eq(jint(j, "version"), 3);
	cr_assert_eq(jint(j, "configuration.offset"), 8);
	cr_assert_str_eq(jstr(j, "configuration.name"), "pc-i440fx-7.2");
	cr_assert_eq(json_array_size(jpath(j, "configuration.capabilities")), 1);
	cr_assert_str_eq(jstr(j, "configuration.capabilities.0"), "x-ignore-shared");
	cr_assert_str_eq(jstr(j, "configuration.uuid"), "6e0a1c3d-5b2f-4c8e-9a71-d4f3b2e1c0a9");
	cr_assert_eq(jint(j, "eof.offset"), (json_int_t)sizeof(s) - 1);
	cr_assert(json_is_null(jpath(j, "vmdesc")));
	cr_assert(json_is_null(jpath(j, "ram")));
	cr_assert_eq(json_array_size(jpath(j, "sections")), 0);
	cr_assert_eq(json_array_size(jpath(j, "warnings")), 0);
	json_decref(j);
}

Test(vmstate_inspect, target_page_bits_sets_the_ram_page_size)
{
	struct ferry_writer *w = sb_new();
	static uint8_t page[16384];
	size_t len;

	sb_config(w, "arm");
	ferry_put_u8(w, 0x05);
	ferry_put_cstr(w, "configuration/target-page-bits");
	ferry_put_be32(w, 1);
	ferry_put_be32(w, 14);
	sb_start(w, 0x01, 0, "ram", 0, 4);
	ferry_put_be64(w, 0x8000 | F_MEM_SIZE);
	ferry_put_cstr(w, "mach.ram");
	ferry_put_be64(w, 0x8000);
	sb_ram_rec(w, 0x4000, F_PAGE, "mach.ram"); /* 16 KiB pages: 0x4000 is the 2nd page */
	ferry_put_buffer(w, page, sizeof(page));
	ferry_put_be64(w, F_EOS);
	sb_footer(w, 0);
	ferry_put_u8(w, 0x00);
	uint8_t *s = sb_finish(w, &len);
	json_t *j = inspect_ok(s, len, NULL);

	cr_assert_eq(jint(j, "configuration.target_page_bits"), 14);
	cr_assert_eq(jint(j, "ram.page_size"), 16384);
	cr_assert_eq(jint(j, "ram.blocks.0.pages.page"), 1);
	json_decref(j);
	free(s);
}

Test(vmstate_inspect, reference_stream_decodes_everything)
{
	size_t len;
	uint8_t *s = reference_stream(&len);
	json_t *j = inspect_ok(s, len, NULL);

	cr_assert_str_eq(jstr(j, "configuration.name"), "pc-test-1.0");
	cr_assert_eq(jint(j, "size"), (json_int_t)len);

	/* commands */
	cr_assert_eq(json_array_size(jpath(j, "commands")), 3);
	cr_assert_str_eq(jstr(j, "commands.0.name"), "OPEN_RETURN_PATH");
	cr_assert_eq(jint(j, "commands.0.len"), 0);
	cr_assert_str_eq(jstr(j, "commands.1.name"), "PING");
	cr_assert_eq(jint(j, "commands.1.value"), 1);
	cr_assert_str_eq(jstr(j, "commands.2.name"), "POSTCOPY_ADVISE");
	cr_assert_eq(jint(j, "commands.2.page_size_summary"), 4096);
	cr_assert_eq(jint(j, "commands.2.target_page_size"), 4096);

	/* sections: START, PART, PART, END of ram, then two FULL */
	json_t *secs = jpath(j, "sections");
	static const char *const types[] = {"START", "PART", "PART", "END", "FULL", "FULL"};
	cr_assert_eq(json_array_size(secs), 6);
	for (size_t i = 0; i < 6; i++) {
		json_t *sec = json_array_get(secs, i);

		cr_assert_str_eq(jstr(sec, "type"), types[i]);
		/* payload + footer: the footer sits right after the payload. */
		cr_assert_eq(jint(sec, "footer_offset"),
			     jint(sec, "payload_offset") + jint(sec, "payload_size"));
	}
	cr_assert_str_eq(jstr(j, "sections.1.idstr"), "ram");
	cr_assert_eq(jint(j, "sections.1.section_id"), 2);
	cr_assert_eq(jint(j, "sections.1.version"), 4);

	/* RAM per section */
	cr_assert_eq(jint(j, "sections.0.ram.counts.mem_size"), 1);
	cr_assert_eq(jint(j, "sections.0.ram.counts.eos"), 1);
	cr_assert_eq(jint(j, "sections.0.payload_size"), 8 + 6 + 8 + 6 + 8 + 8);
	cr_assert_eq(jint(j, "sections.1.ram.counts.page"), 1);
	cr_assert_eq(jint(j, "sections.1.ram.counts.zero"), 1);
	cr_assert_eq(jint(j, "sections.1.ram.counts.xbzrle"), 1);
	cr_assert_eq(jint(j, "sections.1.ram.counts.continue"), 1);
	cr_assert_eq(jint(j, "sections.1.ram.counts.multifd_flush"), 1);
	cr_assert_eq(jint(j, "sections.1.ram.counts.hook"), 1);
	cr_assert_eq(jint(j, "sections.1.ram.counts.eos"), 1);
	cr_assert_eq(jint(j, "sections.1.ram.counts.records"), 6);
	cr_assert_str_eq(jstr(j, "sections.1.ram.blocks.0.name"), "blk.a");
	cr_assert_eq(jint(j, "sections.1.ram.blocks.0.page"), 1);
	cr_assert_eq(jint(j, "sections.1.ram.blocks.0.zero"), 1);
	cr_assert_str_eq(jstr(j, "sections.1.ram.blocks.1.name"), "blk.b");
	cr_assert_eq(jint(j, "sections.1.ram.blocks.1.xbzrle"), 1);
	cr_assert_eq(jint(j, "sections.2.ram.counts.zero"), 1);
	cr_assert_eq(jint(j, "sections.2.ram.counts.continue"), 1);
	cr_assert_eq(jint(j, "sections.2.ram.counts.compressed"), 1);
	cr_assert_eq(jint(j, "sections.3.ram.counts.records"), 1);

	/* RAM totals and the block list */
	cr_assert_eq(jint(j, "ram.page_size"), 4096);
	cr_assert_eq(jint(j, "ram.total_bytes"), 0x3000);
	cr_assert_eq(json_array_size(jpath(j, "ram.blocks")), 2);
	cr_assert_str_eq(jstr(j, "ram.blocks.0.name"), "blk.a");
	cr_assert_eq(jint(j, "ram.blocks.0.length"), 0x2000);
	cr_assert_eq(jint(j, "ram.blocks.0.pages.page"), 1);
	cr_assert_eq(jint(j, "ram.blocks.0.pages.zero"), 1);
	cr_assert_eq(jint(j, "ram.blocks.0.pages.compressed"), 1);
	cr_assert_eq(jint(j, "ram.blocks.1.length"), 0x1000);
	cr_assert_eq(jint(j, "ram.blocks.1.pages.xbzrle"), 1);
	cr_assert_eq(jint(j, "ram.blocks.1.pages.zero"), 1);
	cr_assert_eq(jint(j, "ram.counts.eos"), 4);
	cr_assert_eq(jint(j, "ram.counts.records"), 2 + 6 + 3 + 1);

	/* the device, field by field */
	json_t *u = jpath(j, "sections.4");
	cr_assert_str_eq(jstr(u, "idstr"), "uart");
	cr_assert_str_eq(jstr(u, "vmsd_name"), "uart");
	cr_assert_eq(jint(u, "section_id"), 3);
	cr_assert_eq(jint(u, "version"), 2);
	cr_assert_eq(jint(u, "payload_size"), 111);
	cr_assert_str_eq(jstr(u, "fields.0.name"), "lsr");
	cr_assert_eq(jint(u, "fields.0.value"), 0x60);
	cr_assert_eq(jint(u, "fields.1.value"), 12);
	cr_assert_eq(jint(u, "fields.2.array_len"), 3);
	cr_assert_eq(jint(u, "fields.2.value.0"), 1);
	cr_assert_eq(jint(u, "fields.2.value.1"), 2);
	cr_assert_eq(jint(u, "fields.2.value.2"), 0xffffffffll);
	cr_assert_eq(jint(u, "fields.3.value"), -5);
	cr_assert_str_eq(jstr(u, "fields.4.type"), "timer");
	cr_assert_eq(jint(u, "fields.4.value"), -1);
	cr_assert(json_is_true(jpath(u, "fields.5.value")));
	cr_assert_eq(jint(u, "fields.6.value"), -2);
	cr_assert_str_eq(jstr(u, "fields.7.value"), "deadbeef");
	cr_assert_str_eq(jstr(u, "fields.8.value"), "18446744073709551615");
	cr_assert(json_is_null(jpath(u, "fields.9.value.0")));
	cr_assert(json_is_null(jpath(u, "fields.9.value.1")));
	cr_assert_str_eq(jstr(u, "fields.10.value.vmsd_name"), "uart_fifo");
	cr_assert_eq(jint(u, "fields.10.value.fields.0.value"), 7);
	cr_assert_eq(jint(u, "fields.10.value.fields.1.value"), 9);
	cr_assert_eq(jint(u, "fields.11.index"), 0);
	cr_assert_eq(jint(u, "fields.11.value.fields.0.value"), 0x1234);
	cr_assert_str_eq(jstr(u, "fields.11.value.subsections.0.name"), "q/extra");
	cr_assert_eq(jint(u, "fields.11.value.subsections.0.version"), 3);
	cr_assert_eq(jint(u, "fields.11.value.subsections.0.fields.0.value"), 0x42);
	cr_assert_str_eq(jstr(u, "fields.12.value.vmsd_name"), "uart_tmp");
	cr_assert_eq(jint(u, "fields.12.value.fields.0.value"), 0xbeef);
	cr_assert_str_eq(jstr(u, "subsections.0.name"), "uart/ext");
	cr_assert_eq(jint(u, "subsections.0.fields.0.value"), 16);
	cr_assert_str_eq(jstr(u, "subsections.0.subsections.0.name"), "uart/ext/deep");
	cr_assert_eq(jint(u, "subsections.0.subsections.0.fields.0.value"), -3);

	json_t *l = jpath(j, "sections.5");
	cr_assert_str_eq(jstr(l, "idstr"), "legacy");
	cr_assert_eq(jint(l, "instance_id"), 1);
	cr_assert_str_eq(jstr(l, "fields.0.name"), "data");
	cr_assert_str_eq(jstr(l, "fields.0.value"), "616263");

	cr_assert_eq(jint(j, "vmdesc.devices"), 2);
	cr_assert_eq(jint(j, "vmdesc.page_size"), 4096);
	cr_assert_eq(jint(j, "vmdesc.size"), (json_int_t)strlen(uart_vmdesc));
	cr_assert_eq(jint(j, "vmdesc.offset"), (json_int_t)(len - strlen(uart_vmdesc) - 5));
	cr_assert_eq(jint(j, "eof.offset"), jint(j, "vmdesc.offset") - 1);
	cr_assert_eq(json_array_size(jpath(j, "warnings")), 0);
	json_decref(j);
	free(s);
}

Test(vmstate_inspect, summary_counts_without_fields)
{
	struct ferry_inspect_opts o = {.summary = true};
	size_t len;
	uint8_t *s = reference_stream(&len);
	json_t *j = inspect_ok(s, len, &o);

	cr_assert_eq(json_array_size(jpath(j, "sections")), 6);
	cr_assert_null(json_object_get(jpath(j, "sections.4"), "fields"));
	cr_assert_eq(jint(j, "sections.4.payload_size"), 111);
	cr_assert_eq(jint(j, "ram.blocks.0.pages.page"), 1);
	json_decref(j);
	free(s);
}

Test(vmstate_inspect, desc_prints_the_vmdesc_alone)
{
	struct ferry_inspect_opts o = {.desc_only = true, .indent = 2};
	json_t *want = json_loads(uart_vmdesc, 0, NULL);
	size_t len;
	uint8_t *s = reference_stream(&len);
	char *text = NULL, *err = NULL;

	cr_assert_eq(ferry_inspect(s, len, &o, &text, &err), 0);
	cr_assert_null(err);
	json_t *got = json_loads(text, 0, NULL);
	cr_assert_not_null(got);
	cr_assert(json_equal(got, want));
	cr_assert_not_null(strchr(text, '\n')); /* indented */
	json_decref(got);
	json_decref(want);
	free(text);
	free(s);
}

Test(vmstate_inspect, desc_without_vmdesc_fails)
{
	struct ferry_inspect_opts o = {.desc_only = true};
	struct ferry_writer *w = sb_new();
	size_t len;

	sb_config(w, "m");
	ferry_put_u8(w, 0x00);
	uint8_t *s = sb_finish(w, &len);
	json_decref(inspect_fail(s, len, &o, FERRY_ENOSECTION, "no vmdesc"));
	free(s);
}

Test(vmstate_inspect, commands_decoded_by_name)
{
	struct ferry_writer *w = sb_new();
	uint8_t discard[3 + 6 + 32] = {0, 6, 'p', 'c', '.', 'r', 'a', 'm', 0};
	size_t len;

	/* ranges (be64 start, be64 length) from byte 9: (0x1000, 0x2000), (0x10000, 1) */
	discard[9 + 6] = 0x10;
	discard[17 + 6] = 0x20;
	discard[25 + 5] = 0x01;
	discard[33 + 7] = 0x01;
	sb_config(w, "m");
	sb_command(w, FERRY_CMD_POSTCOPY_RAM_DISCARD, discard, sizeof(discard));
	sb_command(w, FERRY_CMD_RECV_BITMAP, "\x06pc.ram", 7);
	sb_command(w, FERRY_CMD_ENABLE_COLO, NULL, 0);
	sb_command(w, FERRY_CMD_POSTCOPY_RESUME, NULL, 0);
	sb_command(w, FERRY_CMD_SWITCHOVER_START, NULL, 0);
	/* PACKAGED: LISTEN, PING 3, RUN inside 21 bytes of nested stream */
	ferry_put_u8(w, 0x08);
	ferry_put_be16(w, FERRY_CMD_PACKAGED);
	ferry_put_be16(w, 4);
	ferry_put_be32(w, 5 + 9 + 5);
	sb_command(w, FERRY_CMD_POSTCOPY_LISTEN, NULL, 0);
	sb_command(w, FERRY_CMD_PING, "\0\0\0\3", 4);
	sb_command(w, FERRY_CMD_POSTCOPY_RUN, NULL, 0);
	sb_command(w, FERRY_CMD_PING, "\0\0\0\4", 4);
	ferry_put_u8(w, 0x00);
	uint8_t *s = sb_finish(w, &len);
	json_t *j = inspect_ok(s, len, NULL);

	cr_assert_eq(json_array_size(jpath(j, "commands")), 7);
	cr_assert_str_eq(jstr(j, "commands.0.name"), "POSTCOPY_RAM_DISCARD");
	cr_assert_str_eq(jstr(j, "commands.0.block"), "pc.ram");
	cr_assert_eq(jint(j, "commands.0.ranges.0.0"), 0x1000);
	cr_assert_eq(jint(j, "commands.0.ranges.0.1"), 0x2000);
	cr_assert_eq(jint(j, "commands.0.ranges.1.0"), 0x10000);
	cr_assert_eq(jint(j, "commands.0.ranges.1.1"), 1);
	cr_assert_str_eq(jstr(j, "commands.1.name"), "RECV_BITMAP");
	cr_assert_str_eq(jstr(j, "commands.1.block"), "pc.ram");
	cr_assert_str_eq(jstr(j, "commands.2.name"), "ENABLE_COLO");
	cr_assert_str_eq(jstr(j, "commands.3.name"), "POSTCOPY_RESUME");
	cr_assert_str_eq(jstr(j, "commands.4.name"), "SWITCHOVER_START");
	cr_assert_str_eq(jstr(j, "commands.5.name"), "PACKAGED");
	cr_assert_eq(jint(j, "commands.5.size"), 19);
	cr_assert_eq(json_array_size(jpath(j, "commands.5.commands")), 3);
	cr_assert_str_eq(jstr(j, "commands.5.commands.0.name"), "POSTCOPY_LISTEN");
	cr_assert_eq(jint(j, "commands.5.commands.1.value"), 3);
	cr_assert_str_eq(jstr(j, "commands.5.commands.2.name"), "POSTCOPY_RUN");
	cr_assert_eq(jint(j, "commands.6.value"), 4);
	json_decref(j);
	free(s);
}

Test(vmstate_inspect, block_extras_gpa_hugepage_mapped_ram)
{
	/* x-ignore-shared adds a GPA per block; postcopy with 2 MiB pages a page size. */
	struct ferry_writer *w = sb_new();
	static const uint8_t advise[16] = {0, 0, 0, 0, 0, 0x20, 0x10, 0, 0, 0, 0, 0, 0, 0, 0x10, 0};
	size_t len;

	sb_config(w, "m");
	ferry_put_u8(w, 0x05);
	ferry_put_cstr(w, "configuration/capabilities");
	ferry_put_be32(w, 1);
	ferry_put_be32(w, 1);
	ferry_put_cstr(w, "x-ignore-shared");
	sb_command(w, FERRY_CMD_POSTCOPY_ADVISE, advise, 16);
	sb_start(w, 0x01, 1, "ram", 0, 4);
	ferry_put_be64(w, 0x201000 | F_MEM_SIZE);
	ferry_put_cstr(w, "huge");
	ferry_put_be64(w, 0x200000);
	ferry_put_be64(w, 0x200000);   /* block page size */
	ferry_put_be64(w, 0x40000000); /* gpa */
	ferry_put_cstr(w, "small");
	ferry_put_be64(w, 0x1000);
	ferry_put_be64(w, 0xfffc0000); /* gpa; no page size: a 4 KiB block */
	ferry_put_be64(w, F_EOS);
	sb_footer(w, 1);
	ferry_put_u8(w, 0x00);
	uint8_t *s = sb_finish(w, &len);
	json_t *j = inspect_ok(s, len, NULL);

	cr_assert_eq(jint(j, "ram.blocks.0.page_size"), 0x200000);
	cr_assert_eq(jint(j, "ram.blocks.0.gpa"), 0x40000000);
	cr_assert_null(json_object_get(jpath(j, "ram.blocks.1"), "page_size"));
	cr_assert_eq(jint(j, "ram.blocks.1.gpa"), 0xfffc0000ll);
	json_decref(j);
	free(s);

	/* mapped-ram: a 28-byte header per block, then the stream resumes after its pages. */
	w = sb_new();
	sb_config(w, "m");
	ferry_put_u8(w, 0x05);
	ferry_put_cstr(w, "configuration/capabilities");
	ferry_put_be32(w, 1);
	ferry_put_be32(w, 1);
	ferry_put_cstr(w, "mapped-ram");
	sb_start(w, 0x01, 1, "ram", 0, 4);
	ferry_put_be64(w, 0x2000 | F_MEM_SIZE);
	ferry_put_cstr(w, "r");
	ferry_put_be64(w, 0x2000);
	ferry_put_be32(w, 1);
	ferry_put_be64(w, 4096);
	uint64_t here = ferry_writer_offset(w) + 16;
	ferry_put_be64(w, here);     /* bitmap: 8 bytes */
	ferry_put_be64(w, here + 8); /* pages */
	ferry_put_be64(w, 0x3);
	for (unsigned i = 0; i < 0x2000; i++)
		ferry_put_u8(w, 0xee);
	ferry_put_be64(w, F_EOS);
	sb_footer(w, 1);
	ferry_put_u8(w, 0x00);
	s = sb_finish(w, &len);
	j = inspect_ok(s, len, NULL);
	cr_assert_eq(jint(j, "ram.blocks.0.mapped_ram.version"), 1);
	cr_assert_eq(jint(j, "ram.blocks.0.mapped_ram.pages_offset"), (json_int_t)here + 8);
	cr_assert_eq(jint(j, "sections.0.ram.counts.eos"), 1);
	json_decref(j);
	free(s);
}

Test(vmstate_inspect, trailing_bytes_warn_or_fail_with_strict)
{
	struct ferry_inspect_opts strict = {.strict = true};
	struct ferry_writer *w = sb_new();
	size_t len;

	sb_config(w, "m");
	sb_start(w, 0x01, 1, "ram", 0, 4);
	ferry_put_be64(w, 0x1000 | F_MEM_SIZE);
	ferry_put_cstr(w, "r");
	ferry_put_be64(w, 0x1000);
	sb_ram_rec(w, 0, F_ZERO, "r");
	ferry_put_u8(w, 0x11); /* 7.2 would memset with it; 10.2 refuses */
	ferry_put_be64(w, F_EOS);
	sb_footer(w, 1);
	ferry_put_u8(w, 0x00);
	ferry_put_buffer(w, "junk", 4);
	uint8_t *s = sb_finish(w, &len);
	json_t *j = inspect_ok(s, len, NULL);

	cr_assert_eq(json_array_size(jpath(j, "warnings")), 2);
	cr_assert_not_null(strstr(jstr(j, "warnings.0.message"), "fill byte 0x11"));
	cr_assert_not_null(strstr(jstr(j, "warnings.1.message"), "4 bytes after EOF"));
	cr_assert_eq(jint(j, "warnings.1.offset"), (json_int_t)len - 4);
	json_decref(j);
	json_decref(inspect_fail(s, len, &strict, FERRY_EBADSTREAM, "fill byte 0x11"));
	free(s);
}

/* ---- broken streams ------------------------------------------------------------------- */

Test(vmstate_inspect, every_prefix_fails_with_an_offset)
{
	size_t len;
	uint8_t *s = reference_stream(&len);

	for (size_t n = 0; n < len; n++) {
		char *text = NULL, *err = NULL;
		/* A copy of exactly n bytes, so a sanitizer sees any read past it. */
		uint8_t *cut = malloc(n ? n : 1);

		cr_assert_not_null(cut);
		memcpy(cut, s, n);
		int ret = ferry_inspect(cut, n, NULL, &text, &err);

		cr_assert_lt(ret, 0, "prefix of %zu bytes accepted", n);
		cr_assert_not_null(err);
		cr_assert(strncmp(err, "offset ", 7) == 0, "prefix %zu: %s", n, err);
		cr_assert_leq(strtoull(err + 7, NULL, 10), n, "prefix %zu: %s", n, err);
		json_t *j = json_loads(text, 0, NULL);
		cr_assert_not_null(j, "prefix %zu: bad JSON", n);
		cr_assert(json_is_false(json_object_get(j, "complete")));
		json_decref(j);
		free(text);
		free(err);
		free(cut);
	}
	free(s);
}

Test(vmstate_inspect, corrupted_bytes_fail_or_decode_cleanly)
{
	static const uint8_t flips[] = {0x01, 0x80, 0xff};
	size_t len;
	uint8_t *s = reference_stream(&len);
	uint8_t *c = malloc(len), run[64];
	size_t fails = 0, runs = 0;

	cr_assert_not_null(c);
	/* Page contents are opaque: flipping them changes nothing worth testing. */
	memset(run, 0xa5, sizeof(run));
	const uint8_t *pg = memmem(s, len, run, sizeof(run));
	cr_assert_not_null(pg);
	size_t pg_lo = (size_t)(pg - s) + 16, pg_hi = (size_t)(pg - s) + PAGE - 16;
	for (size_t i = 0; i < len; i++) {
		if (i >= pg_lo && i < pg_hi)
			continue;
		for (size_t f = 0; f < sizeof(flips); f++) {
			char *text = NULL, *err = NULL;

			memcpy(c, s, len);
			c[i] ^= flips[f];
			int ret = ferry_inspect(c, len, NULL, &text, &err);

			runs++;
			cr_assert_not_null(text, "byte %zu ^ 0x%02x: no JSON", i, flips[f]);
			json_t *j = json_loads(text, 0, NULL);
			cr_assert_not_null(j, "byte %zu ^ 0x%02x: bad JSON", i, flips[f]);
			if (ret < 0) {
				fails++;
				cr_assert_not_null(err);
				cr_assert(strncmp(err, "offset ", 7) == 0, "%s", err);
				cr_assert_not_null(json_object_get(j, "error"));
			} else {
				cr_assert_null(err);
				cr_assert(json_is_true(json_object_get(j, "complete")));
			}
			json_decref(j);
			free(text);
			free(err);
		}
	}
	cr_log_info("%zu of %zu corruptions failed", fails, runs);
	/* Most single-byte damage outside page data must be caught. */
	cr_assert_gt(fails, runs / 2, "%zu of %zu corruptions failed", fails, runs);
	free(c);
	free(s);
}

/* Build: header, config, one FULL "dev" (id 5) with @payload, EOF, and @vmdesc. */
static uint8_t *device_stream(const void *payload, size_t plen, const char *vmdesc, size_t *len)
{
	struct ferry_writer *w = sb_new();

	sb_config(w, "m");
	sb_start(w, 0x04, 5, "serial", 0, 1);
	ferry_put_buffer(w, payload, plen);
	sb_footer(w, 5);
	sb_vmdesc(w, vmdesc);
	return sb_finish(w, len);
}

#define DEV_DESC(fields)                                                                           \
	"{\"page_size\":4096,\"devices\":[{\"name\":\"serial\",\"instance_id\":0,"                 \
	"\"vmsd_name\":\"serial\",\"version\":1,\"fields\":[" fields "]}]}"

Test(vmstate_inspect, footer_mismatch_names_section_and_bytes)
{
	/* The vmdesc describes 1 byte; the payload has 2: the footer is not where it should be. */
	size_t len;
	uint8_t *s = device_stream(
	    "\x01\x12", 2, DEV_DESC("{\"name\":\"lsr\",\"type\":\"uint8\",\"size\":1}"), &len);
	/* header 8 + config 6 + FULL header 1+4+1+6+4+4 = 34; payload at 34, footer expected at 35
	 */
	json_t *j = inspect_fail(s, len, NULL, FERRY_EFOOTER,
				 "offset 35: section 5 'serial' instance 0: expected footer 0x7e, "
				 "found 0x12");

	/* What was read before the error is still there. */
	cr_assert_eq(jint(j, "sections.0.fields.0.value"), 1);
	cr_assert_eq(jint(j, "error.offset"), 35);
	json_decref(j);
	free(s);
}

Test(vmstate_inspect, footer_with_another_section_id)
{
	struct ferry_writer *w = sb_new();
	size_t len;

	sb_config(w, "m");
	sb_start(w, 0x04, 5, "serial", 0, 1);
	ferry_put_u8(w, 1);
	sb_footer(w, 6);
	sb_vmdesc(w, DEV_DESC("{\"name\":\"lsr\",\"type\":\"uint8\",\"size\":1}"));
	uint8_t *s = sb_finish(w, &len);
	json_decref(
	    inspect_fail(s, len, NULL, FERRY_EFOOTER,
			 "offset 36: section 5 'serial' instance 0: footer names section 6, "
			 "expected 5"));
	free(s);
}

Test(vmstate_inspect, vmdesc_disagreements)
{
	size_t len;
	uint8_t *s;

	/* a struct whose fields do not add up to its size */
	s = device_stream("\x01\x02", 2,
			  DEV_DESC("{\"name\":\"st\",\"type\":\"struct\",\"size\":3,\"struct\":"
				   "{\"vmsd_name\":\"x\",\"version\":1,\"fields\":[{\"name\":\"a\","
				   "\"type\":\"uint16\",\"size\":2}]}}"),
			  &len);
	json_decref(inspect_fail(s, len, NULL, FERRY_EBADSTREAM, "struct 'x' takes 2 bytes"));
	free(s);

	/* a subsection that is not there */
	s = device_stream(
	    "\x01", 1,
	    "{\"devices\":[{\"name\":\"serial\",\"instance_id\":0,\"version\":1,\"fields\":[{"
	    "\"name\":\"a\",\"type\":\"uint8\",\"size\":1}],\"subsections\":[{\"vmsd_name\":"
	    "\"serial/x\",\"version\":1,\"fields\":[]}]}]}",
	    &len);
	json_decref(inspect_fail(s, len, NULL, FERRY_EBADSTREAM,
				 "expected subsection 0x05 'serial/x', found 0x7e"));
	free(s);

	/* the vmdesc names another device */
	s = device_stream(
	    "\x01", 1, "{\"devices\":[{\"name\":\"uart\",\"instance_id\":0,\"fields\":[]}]}", &len);
	json_decref(inspect_fail(s, len, NULL, FERRY_EBADSTREAM, "vmdesc device 0 is 'uart'"));
	free(s);

	/* a version that differs from the section header */
	s = device_stream("\x01", 1,
			  "{\"devices\":[{\"name\":\"serial\",\"instance_id\":0,\"version\":9,"
			  "\"fields\":[]}]}",
			  &len);
	json_decref(inspect_fail(s, len, NULL, FERRY_EBADSTREAM, "the vmdesc says version 9"));
	free(s);

	/* fewer devices in the vmdesc than FULL sections */
	s = device_stream("\x01", 1, "{\"devices\":[]}", &len);
	json_decref(inspect_fail(s, len, NULL, FERRY_EBADSTREAM, "the vmdesc lists 0 devices"));
	free(s);

	/* a field without a size */
	s = device_stream("\x01", 1, DEV_DESC("{\"name\":\"a\",\"type\":\"uint8\"}"), &len);
	json_decref(inspect_fail(s, len, NULL, FERRY_EBADSTREAM, "lacks a name, type or size"));
	free(s);

	/* a bad page_size */
	s = device_stream("\x01", 1, "{\"page_size\":1000,\"devices\":[]}", &len);
	json_decref(inspect_fail(s, len, NULL, FERRY_EBADSTREAM, "page_size is not a power"));
	free(s);
}

Test(vmstate_inspect, hostile_vmdesc_sizes_are_bounded)
{
	size_t len;
	uint8_t *s;

	/* a billion zero-sized elements: refused, not looped over */
	s = device_stream("\x01", 1,
			  DEV_DESC("{\"name\":\"a\",\"array_len\":1000000000,\"type\":\"uint8\","
				   "\"size\":0}"),
			  &len);
	json_decref(inspect_fail(s, len, NULL, FERRY_ELIMIT, "more than the stream can hold"));
	free(s);

	/* sizes whose product overflows */
	s = device_stream("\x01", 1,
			  DEV_DESC("{\"name\":\"a\",\"array_len\":9223372036854775807,\"type\":"
				   "\"uint8\",\"size\":4611686018427387904}"),
			  &len);
	json_decref(inspect_fail(s, len, NULL, FERRY_ETRUNCATED, "remain before the vmdesc"));
	free(s);

	/* structs nested 40 deep */
	char desc[4096] = "";
	size_t k = 0;
	for (int i = 0; i < 40; i++)
		k += (size_t)snprintf(desc + k, sizeof(desc) - k,
				      "{\"name\":\"s\",\"type\":\"struct\",\"size\":0,\"struct\":{"
				      "\"vmsd_name\":\"v\",\"version\":1,\"fields\":[");
	for (int i = 0; i < 40; i++)
		k += (size_t)snprintf(desc + k, sizeof(desc) - k, "]}}");
	char full[4608];
	snprintf(full, sizeof(full), DEV_DESC("%s"), desc);
	s = device_stream("", 0, full, &len);
	json_decref(inspect_fail(s, len, NULL, FERRY_ELIMIT, "deeper than"));
	free(s);
}

Test(vmstate_inspect, full_section_without_vmdesc_stops_the_walk)
{
	struct ferry_writer *w = sb_new();
	size_t len;

	sb_config(w, "m");
	sb_start(w, 0x01, 1, "ram", 0, 4);
	ferry_put_be64(w, F_MEM_SIZE);
	ferry_put_be64(w, F_EOS);
	sb_footer(w, 1);
	sb_start(w, 0x04, 5, "serial", 0, 1);
	ferry_put_u8(w, 1);
	sb_footer(w, 5);
	ferry_put_u8(w, 0x00);
	uint8_t *s = sb_finish(w, &len);
	json_t *j = inspect_fail(s, len, NULL, FERRY_ENOSECTION,
				 "section 5 'serial' instance 0: a FULL section has no length on "
				 "the wire and the stream has no vmdesc");

	cr_assert_eq(json_array_size(jpath(j, "sections")), 2);
	cr_assert_str_eq(jstr(j, "sections.0.type"), "START");
	cr_assert(json_is_null(jpath(j, "sections.1.payload_size")));
	json_decref(j);
	free(s);
}

/* A stream of header + config + the bytes in @tail. */
static uint8_t *tail_stream(const void *tail, size_t tlen, size_t *len)
{
	struct ferry_writer *w = sb_new();

	sb_config(w, "m");
	ferry_put_buffer(w, tail, tlen);
	return sb_finish(w, len);
}

struct bad_case {
	const char *name;
	const uint8_t *tail;
	size_t tlen;
	int code;
	const char *want;
};

#define TAIL(...) (const uint8_t[]){__VA_ARGS__}, sizeof((const uint8_t[]){__VA_ARGS__})

/* START id 1 "ram" instance 0 version 4 */
#define RAM_START 0x01, 0, 0, 0, 1, 3, 'r', 'a', 'm', 0, 0, 0, 0, 0, 0, 0, 4
/* MEM_SIZE 0x1000 with one block "r" of 0x1000 */
#define MEM_1 0, 0, 0, 0, 0, 0, 0x10, 0x04, 1, 'r', 0, 0, 0, 0, 0, 0, 0x10, 0

Test(vmstate_inspect, malformed_records)
{
	const struct bad_case cases[] = {
	    {"unknown record type", TAIL(0x09), FERRY_EBADSTREAM,
	     "offset 14: unknown record type 0x09"},
	    {"subsection after the configuration is its own", TAIL(0x05), FERRY_ETRUNCATED,
	     "offset 15: configuration: stream ends here"},
	    {"configuration twice", TAIL(0x07, 0, 0, 0, 0), FERRY_EBADSTREAM,
	     "configuration (0x07) after the first record"},
	    {"unknown command", TAIL(0x08, 0, 12, 0, 0), FERRY_EBADSTREAM, "unknown command 12"},
	    {"PING with 3 bytes", TAIL(0x08, 0, 2, 0, 3, 1, 2, 3), FERRY_EBADSTREAM,
	     "command PING with length 3, expected 4"},
	    {"PACKAGED past the end", TAIL(0x08, 0, 7, 0, 4, 0, 0, 1, 0, 0), FERRY_ETRUNCATED,
	     "PACKAGED declares 256 bytes, 1 remain"},
	    {"PACKAGED record crossing its end",
	     TAIL(0x08, 0, 7, 0, 4, 0, 0, 0, 3, 0x08, 0, 2, 0, 4, 0, 0, 0, 1, 0), FERRY_EBADSTREAM,
	     "runs 6 bytes past its end"},
	    {"PART without START", TAIL(0x02, 0, 0, 0, 9), FERRY_EBADSTREAM,
	     "PART for section id 9, which no START opened"},
	    {"iterative section not ram",
	     TAIL(0x01, 0, 0, 0, 1, 5, 'b', 'l', 'o', 'c', 'k', 0, 0, 0, 0, 0, 0, 0, 1),
	     FERRY_ENOSECTION, "inspect only knows the format of 'ram'"},
	    {"ram version 3", TAIL(0x01, 0, 0, 0, 1, 3, 'r', 'a', 'm', 0, 0, 0, 0, 0, 0, 0, 3),
	     FERRY_EVERSION, "RAM section version 3, expected 4"},
	    {"CONTINUE with no block", TAIL(RAM_START, MEM_1, 0, 0, 0, 0, 0, 0, 0, 0x22, 0),
	     FERRY_EBADSTREAM, "CONTINUE but no block named before it"},
	    {"page beyond its block",
	     TAIL(RAM_START, MEM_1, 0, 0, 0, 0, 0, 0, 0x10, 0x02, 1, 'r', 0), FERRY_EBADSTREAM,
	     "page at 0x1000 of block 'r', whose length is 0x1000"},
	    {"unknown block", TAIL(RAM_START, MEM_1, 0, 0, 0, 0, 0, 0, 0, 0x02, 1, 'q', 0),
	     FERRY_EBADSTREAM, "block 'q' is not in the MEM_SIZE list"},
	    {"ZERO|PAGE flags", TAIL(RAM_START, 0, 0, 0, 0, 0, 0, 0, 0x0a), FERRY_EBADSTREAM,
	     "unknown combination of RAM flags 0x00a"},
	    {"blocks overrun MEM_SIZE",
	     TAIL(RAM_START, 0, 0, 0, 0, 0, 0, 0x10, 0x04, 1, 'r', 0, 0, 0, 0, 0, 0, 0x20, 0),
	     FERRY_EBADSTREAM, "overruns the total 0x1000"},
	    {"XBZRLE bad encoding",
	     TAIL(RAM_START, MEM_1, 0, 0, 0, 0, 0, 0, 0, 0x40, 1, 'r', 2, 0, 3), FERRY_EBADSTREAM,
	     "XBZRLE encoding byte 0x02"},
	    {"XBZRLE too long",
	     TAIL(RAM_START, MEM_1, 0, 0, 0, 0, 0, 0, 0, 0x40, 1, 'r', 1, 0x10, 1), FERRY_ELIMIT,
	     "XBZRLE data of 4097 bytes"},
	    {"no EOF", TAIL(RAM_START, MEM_1, 0, 0, 0, 0, 0, 0, 0, 0x10, 0x7e, 0, 0, 0, 1),
	     FERRY_ETRUNCATED, "expected a record or EOF (0x00), found the end"},
	    {"broken vmdesc after EOF", TAIL(0x00, 0x06, 0, 0, 0, 9, '{', '}'), FERRY_EBADSTREAM,
	     "broken vmdesc: the vmdesc header at offset 15 declares 9 bytes"},
	    {"unknown configuration subsection",
	     TAIL(0x05, 16, 'c', 'o', 'n', 'f', 'i', 'g', 'u', 'r', 'a', 't', 'i', 'o', 'n', '/',
		  'x', 'y', 0, 0, 0, 1),
	     FERRY_ENOSUBSECTION, "unknown subsection 'configuration/xy'"},
	    {"too many capabilities",
	     TAIL(0x05, 26, 'c', 'o', 'n', 'f', 'i', 'g', 'u', 'r', 'a', 't', 'i', 'o', 'n', '/',
		  'c', 'a', 'p', 'a', 'b', 'i', 'l', 'i', 't', 'i', 'e', 's', 0, 0, 0, 1, 0xff,
		  0xff, 0xff, 0xff),
	     FERRY_ELIMIT, "4294967295 capabilities"},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t len;
		uint8_t *s = tail_stream(cases[i].tail, cases[i].tlen, &len);

		cr_log_info("case: %s", cases[i].name);
		json_decref(inspect_fail(s, len, NULL, cases[i].code, cases[i].want));
		free(s);
	}
}

Test(vmstate_inspect, bad_header)
{
	static const uint8_t magic[] = {'Q', 'E', 'V', 'N', 0, 0, 0, 3};
	static const uint8_t v2[] = {'Q', 'E', 'V', 'M', 0, 0, 0, 2};
	static const uint8_t v4[] = {'Q', 'E', 'V', 'M', 0, 0, 0, 4};

	json_decref(
	    inspect_fail(magic, sizeof(magic), NULL, FERRY_EBADMAGIC,
			 "offset 0: expected magic 0x5145564d (\"QEVM\"), found 0x5145564e"));
	json_decref(inspect_fail(v2, sizeof(v2), NULL, FERRY_EVERSION,
				 "offset 4: version 2 is the obsolete"));
	json_decref(inspect_fail(v4, sizeof(v4), NULL, FERRY_EVERSION,
				 "offset 4: expected version 3, found 4"));
	char *text = (char *)1, *err = (char *)1;
	cr_assert_eq(ferry_inspect(NULL, 4, NULL, &text, &err), -EINVAL);
	cr_assert_null(err);
}

Test(vmstate_inspect, control_bytes_in_names_are_escaped)
{
	/* A section name with a newline and invalid UTF-8 still gives valid JSON and a clean
	 * message. */
	static const uint8_t tail[] = {0x01, 0, 0, 0, 1, 3, 'a', '\n', 0xff,
				       0,    0, 0, 0, 0, 0, 0,	 1};
	size_t len;
	uint8_t *s = tail_stream(tail, sizeof(tail), &len);
	json_t *j = inspect_fail(s, len, NULL, FERRY_ENOSECTION, "'a\\x0a\\xff'");

	cr_assert_str_eq(jstr(j, "sections.0.idstr"), "a\\x0a\\xff");
	json_decref(j);
	free(s);
}
