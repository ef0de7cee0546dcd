/* SPDX-License-Identifier: MIT */
/*
 * Sections of a savevm v3 stream: the device registry, the source's writer
 * side (header, configuration, START/PART/END/FULL with footers, EOF, vmdesc)
 * and the destination's loader (FORMAT.md §3-§6, §9, §13).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

enum dev_kind { DEV_VMSD, DEV_LEGACY, DEV_ITER };

struct dev {
	char idstr[256];
	uint32_t instance_id;
	uint32_t section_id;
	enum dev_kind kind;
	int priority;
	const struct ferry_vmsd *vmsd;
	const struct ferry_legacy_ops *legacy;
	const struct ferry_iter_ops *iter;
	void *opaque;
	/* loader state */
	int load_version;
	uint32_t load_id; /* the sender's section id, from its START */
	bool started, ended, loaded;
};

struct ferry_devices {
	struct dev *devs;
	size_t n, cap;
	uint32_t next_section_id;
	/* indices into devs, highest priority first, registration order within one */
	size_t *order;
	/* vmdesc entries of the early-setup FULL sections the last setup wrote */
	json_t *early;
};

/* ---- registry ------------------------------------------------------------------------ */

int ferry_devices_create(struct ferry_devices **out)
{
	struct ferry_devices *d = calloc(1, sizeof(*d));

	if (!d)
		return -ENOMEM;
	*out = d;
	return 0;
}

void ferry_devices_destroy(struct ferry_devices *devs)
{
	if (!devs)
		return;
	free(devs->devs);
	free(devs->order);
	json_decref(devs->early);
	free(devs);
}

static int effective_priority(int p)
{
	return p == FERRY_PRI_DEFAULT ? FERRY_PRI_NORMAL : p;
}

/* Rebuild the save order: stable by descending priority. */
static int rebuild_order(struct ferry_devices *d)
{
	size_t *order = realloc(d->order, d->n * sizeof(*order));
	size_t k = 0;

	if (!order)
		return -ENOMEM;
	d->order = order;
	for (int p = FERRY_PRI_GICV3; p >= FERRY_PRI_LOW; p--)
		for (size_t i = 0; i < d->n; i++)
			if (d->devs[i].priority == p)
				order[k++] = i;
	/* Priorities outside the known range keep registration order, last. */
	for (size_t i = 0; i < d->n; i++)
		if (d->devs[i].priority < FERRY_PRI_LOW || d->devs[i].priority > FERRY_PRI_GICV3)
			order[k++] = i;
	return 0;
}

static struct dev *find_dev(struct ferry_devices *d, const char *idstr, uint32_t instance)
{
	for (size_t i = 0; i < d->n; i++)
		if (d->devs[i].instance_id == instance && strcmp(d->devs[i].idstr, idstr) == 0)
			return &d->devs[i];
	return NULL;
}

static int add_dev(struct ferry_devices *d, const char *idstr, uint32_t instance, struct dev *nd)
{
	struct dev *slot;
	int ret;

	if (!idstr || !idstr[0] || strlen(idstr) > 255) {
		vms_log(FERRY_LOG_ERROR, "device name missing or longer than 255 bytes");
		return -EINVAL;
	}
	if (find_dev(d, idstr, instance)) {
		vms_log(FERRY_LOG_ERROR, "device '%s' instance %" PRIu32 " registered twice", idstr,
			instance);
		return -EEXIST;
	}
	if (d->n == d->cap) {
		size_t cap = d->cap ? d->cap * 2 : 16;
		struct dev *p = realloc(d->devs, cap * sizeof(*p));

		if (!p)
			return -ENOMEM;
		d->devs = p;
		d->cap = cap;
	}
	slot = &d->devs[d->n];
	*slot = *nd;
	memcpy(slot->idstr, idstr, strlen(idstr) + 1);
	slot->instance_id = instance;
	slot->section_id = d->next_section_id;
	slot->priority = effective_priority(nd->priority);
	d->n++;
	ret = rebuild_order(d);
	if (ret < 0) {
		d->n--;
		return ret;
	}
	d->next_section_id++;
	return 0;
}

int ferry_devices_add(struct ferry_devices *devs, const char *idstr, uint32_t instance_id,
		      const struct ferry_vmsd *vmsd, void *opaque)
{
	struct dev nd = {.kind = DEV_VMSD, .vmsd = vmsd, .opaque = opaque};
	int ret = vms_check(vmsd);

	if (ret < 0)
		return ret;
	nd.priority = vmsd->priority;
	return add_dev(devs, idstr, instance_id, &nd);
}

int ferry_devices_add_legacy(struct ferry_devices *devs, const char *idstr, uint32_t instance_id,
			     const struct ferry_legacy_ops *ops, void *opaque)
{
	struct dev nd = {.kind = DEV_LEGACY, .legacy = ops, .opaque = opaque};

	if (!ops || !ops->save || !ops->load || ops->version_id < 0)
		return -EINVAL;
	nd.priority = ops->priority;
	return add_dev(devs, idstr, instance_id, &nd);
}

int ferry_devices_add_iterative(struct ferry_devices *devs, const char *idstr, uint32_t instance_id,
				const struct ferry_iter_ops *ops, void *opaque)
{
	struct dev nd = {.kind = DEV_ITER, .iter = ops, .opaque = opaque};

	if (!ops || !ops->setup || !ops->iterate || !ops->complete || !ops->load ||
	    ops->version_id < 0)
		return -EINVAL;
	nd.priority = ops->priority;
	return add_dev(devs, idstr, instance_id, &nd);
}

uint64_t ferry_devices_pending(struct ferry_devices *devs)
{
	uint64_t sum = 0;

	for (size_t i = 0; i < devs->n; i++)
		if (devs->devs[i].kind == DEV_ITER && devs->devs[i].iter->pending)
			sum += devs->devs[i].iter->pending(devs->devs[i].opaque);
	return sum;
}

/* ---- save ------------------------------------------------------------------------------ */

static void put_section_header(struct ferry_writer *w, uint8_t type, const struct dev *d,
			       int version)
{
	ferry_put_u8(w, type);
	ferry_put_be32(w, d->section_id);
	if (type == FERRY_VM_SECTION_START || type == FERRY_VM_SECTION_FULL) {
		ferry_put_cstr(w, d->idstr);
		ferry_put_be32(w, d->instance_id);
		ferry_put_be32(w, (uint32_t)version);
	}
}

static void put_footer(struct ferry_writer *w, const struct dev *d)
{
	ferry_put_u8(w, FERRY_VM_SECTION_FOOTER);
	ferry_put_be32(w, d->section_id);
}

static json_t *json_field(const char *name, const char *type, uint64_t size)
{
	json_t *o = json_object();

	json_object_set_new(o, "name", json_string(name));
	json_object_set_new(o, "type", json_string(type));
	json_object_set_new(o, "size", json_integer((json_int_t)size));
	return o;
}

/*
 * The configuration section is QEMU's "configuration" vmsd: be32 len, the
 * machine name, then optional subsections (FORMAT.md §4). Written by hand,
 * since its capability list is a list of counted strings, with a description
 * built alongside for the vmdesc.
 */
static int put_configuration(struct ferry_writer *w, const struct ferry_stream_config *cfg,
			     json_t *desc)
{
	const char *machine = cfg->machine ? cfg->machine : "";
	size_t mlen = strlen(machine);
	json_t *fields = json_array(), *subs = NULL;

	if (mlen > 255)
		return FERRY_ELIMIT;
	ferry_put_u8(w, FERRY_VM_CONFIGURATION);
	ferry_put_be32(w, (uint32_t)mlen);
	ferry_put_buffer(w, machine, mlen);
	json_object_set_new(desc, "vmsd_name", json_string("configuration"));
	json_object_set_new(desc, "version", json_integer(1));
	json_array_append_new(fields, json_field("len", "uint32", 4));
	json_array_append_new(fields, json_field("name", "buffer", mlen));
	json_object_set_new(desc, "fields", fields);

	if (cfg->ncaps > 0) {
		json_t *sd = json_object(), *sf = json_array();

		subs = json_array();
		ferry_put_u8(w, FERRY_VM_SUBSECTION);
		ferry_put_cstr(w, "configuration/capabilities");
		ferry_put_be32(w, 1);
		ferry_put_be32(w, (uint32_t)cfg->ncaps);
		json_object_set_new(sd, "vmsd_name", json_string("configuration/capabilities"));
		json_object_set_new(sd, "version", json_integer(1));
		json_array_append_new(sf, json_field("caps_count", "uint32", 4));
		for (size_t i = 0; i < cfg->ncaps; i++) {
			json_t *f = json_object();

			ferry_put_cstr(w, cfg->capabilities[i]);
			json_object_set_new(f, "name", json_string("capabilities"));
			json_object_set_new(f, "index", json_integer((json_int_t)i));
			json_object_set_new(f, "type", json_string("capability"));
			json_object_set_new(
			    f, "size", json_integer((json_int_t)strlen(cfg->capabilities[i]) + 1));
			json_array_append_new(sf, f);
		}
		json_object_set_new(sd, "fields", sf);
		json_array_append_new(subs, sd);
	}
	if (cfg->uuid) {
		json_t *sd = json_object(), *sf = json_array(), *f;

		if (!subs)
			subs = json_array();
		ferry_put_u8(w, FERRY_VM_SUBSECTION);
		ferry_put_cstr(w, "configuration/uuid");
		ferry_put_be32(w, 1);
		ferry_put_buffer(w, cfg->uuid, 16);
		json_object_set_new(sd, "vmsd_name", json_string("configuration/uuid"));
		json_object_set_new(sd, "version", json_integer(1));
		f = json_object();
		json_object_set_new(f, "name", json_string("uuid.data"));
		json_object_set_new(f, "array_len", json_integer(16));
		json_object_set_new(f, "type", json_string("uint8"));
		json_object_set_new(f, "size", json_integer(1));
		json_array_append_new(sf, f);
		json_object_set_new(sd, "fields", sf);
		json_array_append_new(subs, sd);
	}
	if (subs)
		json_object_set_new(desc, "subsections", subs);
	return ferry_writer_error(w);
}

int ferry_save_begin(struct ferry_writer *w, const struct ferry_stream_config *cfg)
{
	json_t *desc = json_object();
	int ret;

	ferry_put_be32(w, FERRY_VM_FILE_MAGIC);
	ferry_put_be32(w, FERRY_VM_FILE_VERSION);
	ret = put_configuration(w, cfg, desc);
	json_decref(desc);
	if (ret < 0)
		ferry_writer_set_error(w, ret);
	return ferry_writer_error(w);
}

int ferry_save_command(struct ferry_writer *w, uint16_t cmd, const void *data, uint16_t len)
{
	ferry_put_u8(w, FERRY_VM_COMMAND);
	ferry_put_be16(w, cmd);
	ferry_put_be16(w, len);
	if (len)
		ferry_put_buffer(w, data, len);
	return ferry_writer_error(w);
}

static int save_full(struct ferry_writer *w, struct dev *d, json_t *devices);

static bool is_early(const struct dev *d)
{
	return d->kind == DEV_VMSD && d->vmsd->early_setup;
}

int ferry_save_setup(struct ferry_writer *w, struct ferry_devices *devs)
{
	json_decref(devs->early);
	devs->early = json_array();
	if (!devs->early)
		return -ENOMEM;
	for (size_t k = 0; k < devs->n; k++) {
		struct dev *d = &devs->devs[devs->order[k]];
		int ret;

		/* Early-setup devices go here, in handler order, as QEMU 8.0+ sends them. */
		if (is_early(d)) {
			ret = save_full(w, d, devs->early);
			if (ret < 0)
				return ret;
			continue;
		}
		if (d->kind != DEV_ITER)
			continue;
		put_section_header(w, FERRY_VM_SECTION_START, d, d->iter->version_id);
		ret = d->iter->setup(w, d->opaque);
		if (ret < 0) {
			vms_log(FERRY_LOG_ERROR, "'%s': setup failed: %s", d->idstr,
				ferry_strerror(ret));
			ferry_writer_set_error(w, ret);
			return ret;
		}
		put_footer(w, d);
	}
	return ferry_writer_error(w);
}

int ferry_save_iterate(struct ferry_writer *w, struct ferry_devices *devs)
{
	bool all_done = true;

	for (size_t k = 0; k < devs->n; k++) {
		struct dev *d = &devs->devs[devs->order[k]];
		int ret;

		if (d->kind != DEV_ITER)
			continue;
		put_section_header(w, FERRY_VM_SECTION_PART, d, 0);
		ret = d->iter->iterate(w, d->opaque);
		if (ret < 0) {
			vms_log(FERRY_LOG_ERROR, "'%s': iterate failed: %s", d->idstr,
				ferry_strerror(ret));
			ferry_writer_set_error(w, ret);
			return ret;
		}
		put_footer(w, d);
		if (ret == 0)
			all_done = false;
	}
	return ferry_writer_error(w) ? ferry_writer_error(w) : (all_done ? 1 : 0);
}

static int save_full(struct ferry_writer *w, struct dev *d, json_t *devices)
{
	json_t *dj = NULL;
	uint64_t start;
	int ret;

	if (d->kind == DEV_VMSD && d->vmsd->needed && !d->vmsd->needed(d->opaque))
		return 0;
	if (devices) {
		dj = json_object();
		json_object_set_new(dj, "name", json_string(d->idstr));
		json_object_set_new(dj, "instance_id", json_integer(d->instance_id));
	}
	put_section_header(w, FERRY_VM_SECTION_FULL, d,
			   d->kind == DEV_VMSD ? d->vmsd->version_id : d->legacy->version_id);
	start = ferry_writer_offset(w);
	if (d->kind == DEV_VMSD) {
		ret = vms_save(w, d->vmsd, d->opaque, dj);
	} else {
		ret = d->legacy->save(w, d->opaque);
		if (ret < 0)
			ferry_writer_set_error(w, ret);
		if (dj && !ret) {
			uint64_t size = ferry_writer_offset(w) - start;
			json_t *fields = json_array();

			json_object_set_new(dj, "size", json_integer((json_int_t)size));
			json_array_append_new(fields, json_field("data", "buffer", size));
			json_object_set_new(dj, "fields", fields);
		}
	}
	if (ret < 0) {
		vms_log(FERRY_LOG_ERROR, "device '%s' instance %" PRIu32 ": save failed: %s",
			d->idstr, d->instance_id, ferry_strerror(ret));
		json_decref(dj);
		return ret;
	}
	put_footer(w, d);
	if (dj)
		json_array_append_new(devices, dj);
	return ferry_writer_error(w);
}

static int put_vmdesc(struct ferry_writer *w, const struct ferry_stream_config *cfg,
		      json_t *devices)
{
	json_t *root = json_object(), *conf = json_object();
	struct ferry_writer *scratch;
	char *text;
	size_t len;
	int ret;

	/* The configuration's description needs its bytes' sizes: render it aside. */
	ret = ferry_writer_create_mem(4096, &scratch);
	if (ret < 0)
		goto out;
	ret = put_configuration(scratch, cfg, conf);
	ferry_writer_destroy(scratch);
	if (ret < 0)
		goto out;
	json_object_set_new(root, "configuration", conf);
	conf = NULL;
	json_object_set_new(root, "page_size",
			    json_integer(cfg->page_size ? cfg->page_size : 4096));
	json_object_set(root, "devices", devices);
	text = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
	if (!text) {
		ret = -ENOMEM;
		goto out;
	}
	len = strlen(text);
	ferry_put_u8(w, FERRY_VM_VMDESCRIPTION);
	ferry_put_be32(w, (uint32_t)len);
	ferry_put_buffer(w, text, len);
	free(text);
	ret = ferry_writer_error(w);
out:
	json_decref(conf);
	json_decref(root);
	return ret;
}

int ferry_save_complete(struct ferry_writer *w, struct ferry_devices *devs,
			const struct ferry_stream_config *cfg)
{
	json_t *devices = cfg->send_vmdesc ? json_array() : NULL;
	int ret = 0;

	/* The vmdesc lists FULL sections in stream order: the early ones first. */
	if (devices && devs->early && json_array_extend(devices, devs->early) < 0)
		ret = -ENOMEM;

	for (size_t k = 0; k < devs->n && !ret; k++) {
		struct dev *d = &devs->devs[devs->order[k]];

		if (d->kind != DEV_ITER)
			continue;
		put_section_header(w, FERRY_VM_SECTION_END, d, 0);
		ret = d->iter->complete(w, d->opaque);
		if (ret < 0) {
			vms_log(FERRY_LOG_ERROR, "'%s': complete failed: %s", d->idstr,
				ferry_strerror(ret));
			ferry_writer_set_error(w, ret);
			break;
		}
		put_footer(w, d);
		ret = ferry_writer_error(w);
	}
	for (size_t k = 0; k < devs->n && !ret; k++) {
		struct dev *d = &devs->devs[devs->order[k]];

		if (d->kind != DEV_ITER && !is_early(d))
			ret = save_full(w, d, devices);
	}
	if (!ret) {
		ferry_put_u8(w, FERRY_VM_EOF);
		ret = ferry_writer_error(w);
	}
	if (!ret && devices)
		ret = put_vmdesc(w, cfg, devices);
	json_decref(devices);
	return ret;
}

int ferry_save_snapshot(struct ferry_writer *w, struct ferry_devices *devs,
			const struct ferry_stream_config *cfg)
{
	int ret = ferry_save_begin(w, cfg);

	if (!ret)
		ret = ferry_save_setup(w, devs);
	while (!ret) {
		ret = ferry_save_iterate(w, devs);
		if (ret == 1) {
			ret = 0;
			break;
		}
	}
	if (!ret)
		ret = ferry_save_complete(w, devs, cfg);
	return ret;
}

/* ---- load ------------------------------------------------------------------------------ */

static int load_configuration(struct ferry_reader *r, const struct ferry_load_config *cfg)
{
	char machine[256];
	uint32_t len;
	bool caps_seen = false;

	len = ferry_get_be32(r);
	if (ferry_reader_error(r))
		return ferry_reader_error(r);
	if (len > 255)
		return ferry_reader_fail(r, FERRY_ELIMIT,
					 "machine name of %" PRIu32 " bytes, at most 255 accepted",
					 len);
	if (ferry_get_buffer(r, machine, len) < 0)
		return ferry_reader_error(r);
	machine[len] = '\0';
	if (memchr(machine, '\0', len))
		return ferry_reader_fail(r, FERRY_EBADSTREAM, "machine name contains a NUL byte");
	if (cfg->machine && strcmp(machine, cfg->machine) != 0)
		return ferry_reader_fail(r, FERRY_EMISMATCH,
					 "machine type '%s' differs from this side's '%s'", machine,
					 cfg->machine);

	while (ferry_peek_u8(r) == FERRY_VM_SUBSECTION) {
		char name[256];
		uint32_t version;

		ferry_get_u8(r);
		ferry_get_cstr(r, name);
		version = ferry_get_be32(r);
		if (ferry_reader_error(r))
			return ferry_reader_error(r);
		if (strncmp(name, "configuration/", 14) != 0)
			return ferry_reader_fail(r, FERRY_ENOSUBSECTION,
						 "subsection '%s' inside the configuration", name);
		if (version != 1)
			return ferry_reader_fail(r, FERRY_EVERSION,
						 "subsection '%s' version %" PRIu32 ", expected 1",
						 name, version);
		if (strcmp(name, "configuration/target-page-bits") == 0) {
			uint32_t bits = ferry_get_be32(r);

			if (!ferry_reader_error(r) && bits != 12)
				return ferry_reader_fail(r, FERRY_EMISMATCH,
							 "target page bits %" PRIu32
							 " differ from this side's 12",
							 bits);
		} else if (strcmp(name, "configuration/capabilities") == 0) {
			uint32_t count = ferry_get_be32(r);

			caps_seen = true;
			if (!ferry_reader_error(r) && count != cfg->ncaps)
				return ferry_reader_fail(r, FERRY_EMISMATCH,
							 "%" PRIu32
							 " validated capabilities in the "
							 "stream, %zu on this side",
							 count, cfg->ncaps);
			for (uint32_t i = 0; i < count && !ferry_reader_error(r); i++) {
				char cap[256];
				bool found = false;

				if (ferry_get_cstr(r, cap) < 0)
					break;
				for (size_t j = 0; j < cfg->ncaps; j++)
					found |= strcmp(cfg->capabilities[j], cap) == 0;
				if (!found)
					return ferry_reader_fail(
					    r, FERRY_EMISMATCH,
					    "capability '%s' is on in the stream, off here", cap);
			}
		} else if (strcmp(name, "configuration/uuid") == 0) {
			uint8_t uuid[16];

			if (ferry_get_buffer(r, uuid, sizeof(uuid)) < 0)
				break;
			if (cfg->uuid && memcmp(uuid, cfg->uuid, sizeof(uuid)) != 0)
				return ferry_reader_fail(
				    r, FERRY_EMISMATCH,
				    "the stream's UUID differs from this side's");
		} else {
			return ferry_reader_fail(r, FERRY_ENOSUBSECTION,
						 "unknown configuration subsection '%s'", name);
		}
		if (ferry_reader_error(r))
			return ferry_reader_error(r);
	}
	if (!caps_seen && cfg->ncaps > 0)
		return ferry_reader_fail(r, FERRY_EMISMATCH,
					 "this side validates %zu capabilities, the stream none",
					 cfg->ncaps);
	return ferry_reader_error(r);
}

static int check_footer(struct ferry_reader *r, uint32_t section_id)
{
	uint8_t marker = ferry_get_u8(r);
	uint32_t id;

	if (ferry_reader_error(r))
		return ferry_reader_error(r);
	if (marker != FERRY_VM_SECTION_FOOTER)
		return ferry_reader_fail(r, FERRY_EFOOTER,
					 "expected section footer 0x7e, found 0x%02x "
					 "(the payload is longer or shorter than this side reads)",
					 marker);
	id = ferry_get_be32(r);
	if (!ferry_reader_error(r) && id != section_id)
		return ferry_reader_fail(r, FERRY_EFOOTER,
					 "footer names section %" PRIu32 ", expected %" PRIu32, id,
					 section_id);
	return ferry_reader_error(r);
}

static struct dev *find_started(struct ferry_devices *d, uint32_t section_id)
{
	for (size_t i = 0; i < d->n; i++)
		if (d->devs[i].kind == DEV_ITER && d->devs[i].started &&
		    d->devs[i].load_id == section_id)
			return &d->devs[i];
	return NULL;
}

static int load_start_full(struct ferry_reader *r, struct ferry_devices *devs, uint8_t type)
{
	uint32_t section_id, instance, version;
	char idstr[256];
	struct dev *d;
	int ret = 0;

	section_id = ferry_get_be32(r);
	ferry_get_cstr(r, idstr);
	instance = ferry_get_be32(r);
	version = ferry_get_be32(r);
	if (ferry_reader_error(r))
		return ferry_reader_error(r);
	d = find_dev(devs, idstr, instance);
	if (!d)
		return ferry_reader_fail(r, FERRY_ENOSECTION,
					 "section %" PRIu32 " '%s' instance %" PRIu32
					 ": no such device on this side",
					 section_id, idstr, instance);
	if ((type == FERRY_VM_SECTION_START) != (d->kind == DEV_ITER)) {
		ret = ferry_reader_fail(r, FERRY_EBADSTREAM, "%s section for a %s device",
					type == FERRY_VM_SECTION_START ? "START" : "FULL",
					d->kind == DEV_ITER ? "iterative" : "non-iterative");
		goto ctx;
	}
	if (version > INT32_MAX) {
		ret = ferry_reader_fail(r, FERRY_EVERSION, "version %" PRIu32 " out of range",
					version);
		goto ctx;
	}
	switch (d->kind) {
	case DEV_VMSD:
		ret = vms_load(r, d->vmsd, d->opaque, (int)version);
		break;
	case DEV_LEGACY:
		if ((int)version > d->legacy->version_id) {
			ret = ferry_reader_fail(r, FERRY_EVERSION,
						"version %" PRIu32 " is newer than this side's %d",
						version, d->legacy->version_id);
			break;
		}
		ret = d->legacy->load(r, d->opaque, (int)version);
		if (ret < 0)
			ret = ferry_reader_fail(r, ret, "load failed: %s", ferry_strerror(ret));
		break;
	case DEV_ITER:
		if (d->started) {
			ret = ferry_reader_fail(r, FERRY_EBADSTREAM, "started twice");
			break;
		}
		if ((int)version > d->iter->version_id) {
			ret = ferry_reader_fail(r, FERRY_EVERSION,
						"version %" PRIu32 " is newer than this side's %d",
						version, d->iter->version_id);
			break;
		}
		/* Another device's section id may collide with ours: ids are the sender's. */
		if (find_started(devs, section_id)) {
			ret =
			    ferry_reader_fail(r, FERRY_EBADSTREAM,
					      "section id %" PRIu32 " already in use", section_id);
			break;
		}
		d->started = true;
		d->load_id = section_id;
		d->load_version = (int)version;
		ret = d->iter->load(r, d->opaque, (int)version, FERRY_VM_SECTION_START);
		if (ret < 0)
			ret = ferry_reader_fail(r, ret, "load failed: %s", ferry_strerror(ret));
		break;
	}
	if (!ret) {
		/* FULL sections keep the sender's id only for the footer check. */
		ret = check_footer(r, section_id);
		d->loaded = true;
	}
ctx:
	if (ret)
		ferry_reader_context(r, "section '%s' instance %" PRIu32, idstr, instance);
	return ret;
}

static int load_part_end(struct ferry_reader *r, struct ferry_devices *devs, uint8_t type)
{
	uint32_t section_id = ferry_get_be32(r);
	struct dev *d;
	int ret;

	if (ferry_reader_error(r))
		return ferry_reader_error(r);
	d = find_started(devs, section_id);
	if (!d)
		return ferry_reader_fail(
		    r, FERRY_ENOSECTION, "%s for section id %" PRIu32 ", which was never started",
		    type == FERRY_VM_SECTION_PART ? "PART" : "END", section_id);
	if (d->ended) {
		ret = ferry_reader_fail(r, FERRY_EBADSTREAM, "section data after its END");
		goto ctx;
	}
	ret = d->iter->load(r, d->opaque, d->load_version, (enum ferry_vm_record)type);
	if (ret < 0)
		ret = ferry_reader_fail(r, ret, "load failed: %s", ferry_strerror(ret));
	if (!ret)
		ret = check_footer(r, section_id);
	if (!ret && type == FERRY_VM_SECTION_END)
		d->ended = true;
ctx:
	if (ret)
		ferry_reader_context(r, "section '%s' instance %" PRIu32 " (%s)", d->idstr,
				     d->instance_id,
				     type == FERRY_VM_SECTION_PART ? "PART" : "END");
	return ret;
}

static const char *command_name(uint16_t cmd)
{
	static const char *const names[] = {
	    "INVALID",
	    "OPEN_RETURN_PATH",
	    "PING",
	    "POSTCOPY_ADVISE",
	    "POSTCOPY_LISTEN",
	    "POSTCOPY_RUN",
	    "POSTCOPY_RAM_DISCARD",
	    "PACKAGED",
	    "ENABLE_COLO",
	    "POSTCOPY_RESUME",
	    "RECV_BITMAP",
	    "SWITCHOVER_START",
	};

	return cmd < sizeof(names) / sizeof(names[0]) ? names[cmd] : "unknown";
}

/* The fixed payload length of each command, or -1 when it varies. */
static int command_len(uint16_t cmd)
{
	switch (cmd) {
	case FERRY_CMD_OPEN_RETURN_PATH:
	case FERRY_CMD_POSTCOPY_LISTEN:
	case FERRY_CMD_POSTCOPY_RUN:
	case FERRY_CMD_ENABLE_COLO:
	case FERRY_CMD_POSTCOPY_RESUME:
	case FERRY_CMD_SWITCHOVER_START:
		return 0;
	case FERRY_CMD_PING:
	case FERRY_CMD_PACKAGED:
		return 4;
	default:
		return -1;
	}
}

static int load_command(struct ferry_reader *r, const struct ferry_load_config *cfg, uint8_t *buf)
{
	uint16_t cmd = ferry_get_be16(r);
	uint16_t len = ferry_get_be16(r);
	int want, ret;

	if (ferry_reader_error(r))
		return ferry_reader_error(r);
	if (cmd == 0 || cmd > FERRY_CMD_SWITCHOVER_START)
		return ferry_reader_fail(r, FERRY_EBADSTREAM, "unknown command %u", cmd);
	want = command_len(cmd);
	if (cmd == FERRY_CMD_POSTCOPY_ADVISE && len != 0 && len != 16)
		want = 16;
	if (want >= 0 && len != want)
		return ferry_reader_fail(r, FERRY_EBADSTREAM,
					 "command %s with %u payload bytes, expected %d",
					 command_name(cmd), len, want);
	if (ferry_get_buffer(r, buf, len) < 0)
		return ferry_reader_error(r);
	if (cmd == FERRY_CMD_PACKAGED || cmd == FERRY_CMD_POSTCOPY_LISTEN ||
	    cmd == FERRY_CMD_POSTCOPY_RUN)
		return ferry_reader_fail(r, FERRY_EBADSTREAM,
					 "command %s: postcopy is not supported",
					 command_name(cmd));
	if (cfg->command) {
		ret = cfg->command(cfg->opaque, cmd, buf, len);
		if (ret < 0)
			return ferry_reader_fail(r, ret, "command %s refused: %s",
						 command_name(cmd), ferry_strerror(ret));
		return 0;
	}
	if (cmd == FERRY_CMD_OPEN_RETURN_PATH || cmd == FERRY_CMD_PING ||
	    cmd == FERRY_CMD_SWITCHOVER_START)
		return 0;
	return ferry_reader_fail(r, FERRY_EBADSTREAM, "command %s is not supported here",
				 command_name(cmd));
}

static int load_vmdesc(struct ferry_reader *r, const struct ferry_load_config *cfg)
{
	uint8_t type;
	uint32_t len;
	char *text;
	int peek;

	if (cfg->vmdesc_mode == FERRY_VMDESC_NONE)
		return 0;
	peek = ferry_peek_u8(r);
	if (peek == FERRY_ETRUNCATED && cfg->vmdesc_mode == FERRY_VMDESC_OPTIONAL)
		return 0;
	type = ferry_get_u8(r);
	if (ferry_reader_error(r))
		return ferry_reader_error(r);
	if (type != FERRY_VM_VMDESCRIPTION)
		return ferry_reader_fail(
		    r, FERRY_EBADSTREAM,
		    "expected the vm description (0x06) after EOF, found 0x%02x", type);
	len = ferry_get_be32(r);
	if (ferry_reader_error(r))
		return ferry_reader_error(r);
	if (len > FERRY_VMDESC_MAX_LEN)
		return ferry_reader_fail(r, FERRY_ELIMIT,
					 "vm description of %" PRIu32 " bytes, at most %u accepted",
					 len, FERRY_VMDESC_MAX_LEN);
	if (!cfg->vmdesc)
		return ferry_reader_skip(r, len);
	text = malloc((size_t)len + 1);
	if (!text)
		return ferry_reader_fail(r, -ENOMEM, "no memory for the vm description");
	if (ferry_get_buffer(r, text, len) < 0) {
		free(text);
		return ferry_reader_error(r);
	}
	text[len] = '\0';
	*cfg->vmdesc = text;
	return 0;
}

int ferry_load(struct ferry_reader *r, struct ferry_devices *devs,
	       const struct ferry_load_config *cfg)
{
	static const struct ferry_load_config defaults;
	uint8_t *cmdbuf = NULL;
	uint32_t magic, version;
	int ret = 0;

	if (!cfg)
		cfg = &defaults;
	if (cfg->vmdesc)
		*cfg->vmdesc = NULL;
	for (size_t i = 0; i < devs->n; i++) {
		devs->devs[i].started = devs->devs[i].ended = devs->devs[i].loaded = false;
	}

	magic = ferry_get_be32(r);
	if (!ferry_reader_error(r) && magic != FERRY_VM_FILE_MAGIC) {
		/* 0x16 0x03: a TLS handshake record, from a source that runs TLS. */
		ret = ferry_reader_fail(
		    r, FERRY_EBADMAGIC,
		    "expected magic 0x5145564d ('QEVM'), found 0x%08" PRIx32 "%s", magic,
		    (magic >> 16) == 0x1603
			? ": the peer starts a TLS handshake; this side does not "
			  "run TLS (give it the same TLS options)"
			: "");
		goto out;
	}
	version = ferry_get_be32(r);
	if (!ferry_reader_error(r) && version != FERRY_VM_FILE_VERSION) {
		ret = ferry_reader_fail(r, FERRY_EVERSION,
					version == 2 ? "stream version 2 is obsolete, expected 3"
						     : "stream version %" PRIu32 ", expected 3",
					version);
		goto out;
	}
	if (!ferry_reader_error(r) && ferry_get_u8(r) != FERRY_VM_CONFIGURATION &&
	    !ferry_reader_error(r)) {
		ret =
		    ferry_reader_fail(r, FERRY_EBADSTREAM,
				      "expected the configuration section (0x07) after the header");
		goto out;
	}
	ret = ferry_reader_error(r);
	if (!ret) {
		ret = load_configuration(r, cfg);
		if (ret)
			ferry_reader_context(r, "configuration");
	}
	cmdbuf = malloc(FERRY_COMMAND_MAX_LEN);
	if (!cmdbuf && !ret)
		ret = ferry_reader_fail(r, -ENOMEM, "no memory");

	while (!ret) {
		uint8_t type = ferry_get_u8(r);

		ret = ferry_reader_error(r);
		if (ret) {
			ferry_reader_context(r, "expected a section or EOF");
			break;
		}
		switch (type) {
		case FERRY_VM_SECTION_START:
		case FERRY_VM_SECTION_FULL:
			ret = load_start_full(r, devs, type);
			break;
		case FERRY_VM_SECTION_PART:
		case FERRY_VM_SECTION_END:
			ret = load_part_end(r, devs, type);
			break;
		case FERRY_VM_COMMAND:
			ret = load_command(r, cfg, cmdbuf);
			break;
		case FERRY_VM_EOF:
			goto eof;
		default:
			ret = ferry_reader_fail(r, FERRY_EBADSTREAM, "unknown section type 0x%02x",
						type);
			break;
		}
	}
	goto out;
eof:
	for (size_t i = 0; i < devs->n; i++) {
		struct dev *d = &devs->devs[i];

		if (d->kind == DEV_ITER && d->started && !d->ended) {
			ret = ferry_reader_fail(r, FERRY_EBADSTREAM,
						"EOF before the END of section '%s'", d->idstr);
			goto out;
		}
	}
	ret = load_vmdesc(r, cfg);
out:
	free(cmdbuf);
	for (size_t i = 0; i < devs->n; i++)
		if (devs->devs[i].kind == DEV_ITER && devs->devs[i].iter->cleanup)
			devs->devs[i].iter->cleanup(devs->devs[i].opaque);
	if (ret && cfg->vmdesc && *cfg->vmdesc) {
		free(*cfg->vmdesc);
		*cfg->vmdesc = NULL;
	}
	if (ret)
		vms_log(FERRY_LOG_ERROR, "load failed: %s", ferry_reader_errmsg(r));
	return ret;
}
